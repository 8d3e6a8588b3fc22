"""How much does P(GS) move when the same photo is read again? The borderline margin of the decision rule.

    .venv/bin/python benchmarks/bench_call_stability.py --holdout HOLDOUT_PREDICTIONS.csv [--n 40]
                                                        [--out runs/bench-call-stability] [--from-csv]

A call is only worth making when it survives what a second reading of the same photo changes: the face is found
again (other MTCNN pyramid, other landmarks a pixel or two away), cropped again, scored again. Photos: ``--n`` of the
shipped demo model's *held-out* photos (``scripts/train_demo_model.py`` writes ``holdout_predictions.csv``) whose
held-out P(GS) lies in [0.02, 0.98] — the photos where a call can move at all — a seeded sample that leaves out the
photos ``bench_rotation.py`` tests on. Each is screened as it is, mirrored, and turned 90° and 270° as a pixel array
(the orientation search turns it back and re-detects the face). For every second reading whose face is usable the
difference of P(GS) on the logit scale from the first reading is recorded.

Two readings give opposite confident calls only when one is above ``logit(t) + m`` and the other below
``logit(t) − m``, so they differ by at least ``2 m``; the margin printed is ``m = q99(|Δ logit|) / 2`` over the
*re-readings* (the turned copies: the same pixels, the face found and cropped again): fewer than 1 % of them differ
that much. The mirror image is reported beside it but not used: it is another photo rather than another reading of
the same one (the model is not left-right symmetric, so P(GS) moves more), and a margin wide enough for it would
leave many ordinary photos without a call. ``BORDERLINE_LOGIT`` in ``gsscreen.decision`` holds the value (the
export records it in the pack); this script prints it and changes no code. ``--from-csv`` re-summarises an earlier
run's ``stability.csv``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def _logit(p: float) -> float:
    q = min(max(float(p), 1e-6), 1 - 1e-6)
    return float(np.log(q / (1 - q)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--holdout", type=Path, required=True, help="holdout_predictions.csv of the demo model's run")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-call-stability")
    ap.add_argument("--from-csv", action="store_true", help="summarise OUT/stability.csv again")
    args = ap.parse_args()
    if args.from_csv:
        import pandas as pd

        summarise(pd.read_csv(args.out / "stability.csv"))
        return 0
    if not (args.data / "ds-kaggle").is_dir() or not args.holdout.is_file():
        print(f"skipped: {args.data}/ds-kaggle or {args.holdout} not found")
        return 0
    import pandas as pd
    from bench_rotation import sample_photos

    from gsscreen.faces.io import load_image_scaled
    from gsscreen.faces.quality import INCONCLUSIVE
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path

    t0 = time.perf_counter()
    held = pd.read_csv(args.holdout)
    held = held[held["p_gs"].between(0.02, 0.98)]
    skip = {p.name for p in sample_photos(args.data)}
    held = held[~held["image"].map(lambda s: Path(s).name).isin(skip)]
    pick = held.sample(min(args.n, len(held)), random_state=args.seed)
    model = load_model_pack(demo_model_path())
    views = {"mirror": lambda a: a[:, ::-1], "turn 90": lambda a: np.rot90(a, 1), "turn 270": lambda a: np.rot90(a, 3)}
    rows = []
    for path in pick["image"]:
        img, factor = load_image_scaled(Path(path), model.decode_max_side)
        first = model.screen(img, heatmap=False, scale=factor)
        if first.outcome == INCONCLUSIVE or first.p_gs is None:
            continue
        for name, fn in views.items():
            r = model.screen(np.ascontiguousarray(fn(img)), heatmap=False, scale=factor)
            if r.outcome == INCONCLUSIVE or r.p_gs is None:
                continue
            rows.append({"photo": Path(path).name, "view": name, "p_first": first.p_gs, "p_view": r.p_gs,
                         "d_logit": _logit(r.p_gs) - _logit(first.p_gs)})
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "stability.csv", index=False)
    print(f"model {model.model_id}; {df['photo'].nunique()} usable photos of {len(pick)}")
    summarise(df)
    print(f"({time.perf_counter() - t0:.0f} s; rows in {args.out}/stability.csv)")
    return 0


def summarise(df) -> float:  # type: ignore[no-untyped-def]
    """Print the table of ``|Δ logit|`` per second reading and return the margin (re-readings only)."""
    print(f"{len(df)} reading pairs\n")
    print("| second reading | pairs | median abs Δ logit | q95 | q99 | max |")
    print("|---|---|---|---|---|---|")
    reread = df[df["view"].str.startswith("turn")]
    for name, g in [*df.groupby("view"), ("re-readings (turns)", reread)]:
        b = g["d_logit"].abs()
        print(f"| {name} | {len(g)} | {b.median():.3f} | {b.quantile(0.95):.3f} | {b.quantile(0.99):.3f} | "
              f"{b.max():.3f} |")
    m = float(reread["d_logit"].abs().quantile(0.99)) / 2
    print(f"\nmargin m = q99 / 2 over the re-readings = {m:.3f} on the logit scale")
    return m


if __name__ == "__main__":
    sys.exit(main())
