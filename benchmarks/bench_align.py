"""Benchmark of the faces stage (not a test: prints numbers).

    .venv/bin/python benchmarks/bench_align.py [--data ../shared/data] [--limit N] [--workers 2]

Prints: detection rate and photos/s over ds-kaggle with a cold cache (both cores), the cache speed-up of a second
run over the same photos, the detection rate on utk-kids, and the time to align one 12-megapixel photo
(the astronaut upscaled to 4000×3000, in memory and from a JPEG file). Aims: ≥ 30 photos/s, ≤ 0.5 s per 12 MP,
≥ 20× cache speed-up, detection ≥ 99 % (ds-kaggle) and ≥ 99.5 % (utk-kids). Data parts are skipped with a
message when the development data are absent.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def _photos(folder: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if limit and len(files) > limit:
        step = len(files) / limit  # spread the sample over the sub-folders (down/ and healthy/)
        files = [files[int(i * step)] for i in range(limit)]
    return files


def _report(name: str, res, n: int) -> None:  # type: ignore[no-untyped-def]
    ok = len(res.aligned)
    print(f"{name}: detected {ok}/{n} = {100 * ok / max(n, 1):.2f} %  in {res.seconds:.1f} s "
          f"= {n / res.seconds:.1f} photos/s")
    flags = Counter(f for s in res.aligned["flags"] for f in str(s).split(";") if f)
    if flags:
        print("  flags: " + ", ".join(f"{k} {v}" for k, v in flags.most_common()))
    for _, row in res.failures.iterrows():
        print(f"  failed: {Path(row['image']).name}: {row['problem'][:100]}")


def bench_data(data: Path, limit: int | None, workers: int) -> None:
    from gsscreen.faces import AlignConfig, align_cohort

    ds = data / "ds-kaggle"
    if not ds.is_dir():
        print(f"skip: development data not found at {ds}")
        return
    photos = _photos(ds, limit)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = AlignConfig(workers=workers)
        first = align_cohort(photos, Path(tmp) / "run1", cfg, progress=False)  # cold cache: full work
        _report(f"ds-kaggle ({workers} workers, cold cache)", first, len(photos))
        second = align_cohort(photos, Path(tmp) / "run2", cfg, progress=False)
        print(f"cache: second run {second.seconds:.2f} s vs first {first.seconds:.1f} s "
              f"= {first.seconds / second.seconds:.0f}× faster ({second.n_cached}/{len(photos)} from the cache)")
        utk = data / "utk-kids"
        if utk.is_dir():
            kids = _photos(utk, limit)
            res = align_cohort(kids, Path(tmp) / "utk", AlignConfig(workers=workers, cache=False), progress=False)
            _report(f"utk-kids ({workers} workers, no cache)", res, len(kids))
        else:
            print(f"skip: {utk} not found")


def bench_12mp() -> None:
    import cv2
    from PIL import Image

    from gsscreen.examples import example_image
    from gsscreen.faces import AlignConfig, align_face, load_image_scaled

    big = cv2.resize(example_image("astronaut"), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    cfg = AlignConfig()
    align_face(big, cfg)  # warm-up: loads the networks
    times = []
    for _ in range(3):
        t = time.perf_counter()
        align_face(big, cfg)
        times.append(time.perf_counter() - t)
    print(f"12 MP (4000×3000) in memory: align_face {statistics.median(times):.3f} s (median of 3)")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "big.jpg"
        Image.fromarray(big).save(p, quality=90)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            img, _factor = load_image_scaled(p, cfg.load_max_side, cfg.max_pixels)
            align_face(img, cfg)
            times.append(time.perf_counter() - t)
        print(f"12 MP JPEG file: decode (≤{cfg.load_max_side} px) + align {statistics.median(times):.3f} s "
              "(median of 3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="development data folder")
    ap.add_argument("--limit", type=int, default=None, help="use at most N photos per data set")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    # A private cache, so the "cold" run really is cold and the user's cache is untouched.
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GSSCREEN_CACHE"] = cache
        bench_12mp()
        bench_data(args.data, args.limit, args.workers)


if __name__ == "__main__":
    main()
