"""Does a second detector tell an upright face from a turned one? The limits of the HOG orientation check.

    .venv/bin/python benchmarks/bench_orientation_check.py --aligned ALIGNED_DIR [--n 1500]

MTCNN can read an upside-down face as an upright one with a confident score and plausible landmarks. The orientation
search (:mod:`gsscreen.faces.orientation`) therefore asks dlib's HOG frontal-face detector, trained on upright faces
only, to score the face levelled by the reading's landmarks and the same view turned 90°, 180° and 270°; a reading
is rejected when a turn scores at least ``HOG_MIN`` and ``HOG_MARGIN`` above the view as read.

Crops: ``--n`` aligned crops of a ``gsscreen align`` folder (``landmarks.csv`` + ``crops/``; the crops are the
levelled view at the default geometry, so their landmarks are the template's), a seeded sample. For a grid of margins
it prints the share of these (upright) crops the check would reject — the price on upright photos — and the share
it would catch if each crop were upside down (its 180° view read as upright), and lists the rejected crops to look
at: a rejected "upright" crop may be one the aligner turned wrongly.

It then scores the same crops with HOG scanning from its pyramid's level 0 (every scale, as before
``HOG_FIRST_LEVEL``) and compares, in one run: the share of views whose score is unchanged, the crops rejected and
caught (read as they are and read turned by 90°, 180° and 270°), and the detector's time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aligned", type=Path, required=True, help="an aligned folder (landmarks.csv, crops/)")
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args()
    if not (args.aligned / "landmarks.csv").is_file():
        print(f"skipped: {args.aligned}/landmarks.csv not found")
        return 0
    import pandas as pd
    from PIL import Image

    import gsscreen.faces.orientation as orientation
    from gsscreen.faces.align import AlignConfig, template
    from gsscreen.faces.orientation import HOG_MARGIN, HOG_MIN, hog_turn_scores

    t0 = time.perf_counter()
    df = pd.read_csv(args.aligned / "landmarks.csv")
    df = df.sample(min(args.n, len(df)), random_state=args.seed)
    lm = template(AlignConfig())
    crops = [np.asarray(Image.open(args.aligned / c).convert("RGB")) for c in df["crop"]]
    t = time.perf_counter()
    s = np.array([hog_turn_scores(c, lm) for c in crops])
    t_first = time.perf_counter() - t
    up, other = s[:, 0], s[:, 1:].max(axis=1)
    # Read upside down, the 180° view becomes the view "as read" and the upright one a turn of it.
    down_read, down_other = s[:, 2], np.maximum(s[:, 0], np.maximum(s[:, 1], s[:, 3]))
    print(f"{len(df)} aligned crops from {args.aligned}; HOG score as read: median {np.median(up):.2f}, "
          f"best turn: median {np.median(other):.2f}, q99 {np.quantile(other, 0.99):.2f}\n")
    print("| margin | min score | upright crops rejected | upside-down views caught |")
    print("|---|---|---|---|")
    for margin in (0.3, 0.5, 0.7, 1.0):
        for lo in (-0.5, 0.0):
            rej = (other >= lo) & (other - up >= margin)
            caught = (down_other >= lo) & (down_other - down_read >= margin)
            mark = " (chosen)" if (margin, lo) == (HOG_MARGIN, HOG_MIN) else ""
            print(f"| {margin}{mark} | {lo} | {rej.mean():.4f} ({int(rej.sum())}) | {caught.mean():.3f} |")
    rej = (other >= HOG_MIN) & (other - up >= HOG_MARGIN)
    print("\nrejected at the chosen limits (look at them): "
          + (", ".join(f"{c} {np.round(v, 2).tolist()}" for c, v in zip(df["crop"][rej], s[rej], strict=True))
             or "none"))
    first = orientation.HOG_FIRST_LEVEL
    orientation.HOG_FIRST_LEVEL = 0
    try:
        t = time.perf_counter()
        s0 = np.array([hog_turn_scores(c, lm) for c in crops])
        t_all = time.perf_counter() - t
    finally:
        orientation.HOG_FIRST_LEVEL = first
    print(f"\nHOG from pyramid level {first} (used) against level 0, the same {len(crops)} crops:")
    same = np.isclose(s, s0, atol=1e-6)
    print(f"- unchanged score: {same[:, 0].mean():.1%} of views as read, {same[:, 1:].mean():.1%} of turned views")
    print("| scanned from | upright rejected | caught, read turned by 90° | 180° | 270° |")
    print("|---|---|---|---|---|")
    for name, sc in ((f"level {first}", s), ("level 0", s0)):
        cells = []
        for j in range(4):  # read turned by j·90°: view j is the one "as read", the others its turns
            rest = np.delete(sc, j, axis=1).max(axis=1)
            cells.append(int(((rest >= HOG_MIN) & (rest - sc[:, j] >= HOG_MARGIN)).sum()))
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    print(f"- detector time: {t_first:.1f} s against {t_all:.1f} s ({t_first / t_all:.2f}x)")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
