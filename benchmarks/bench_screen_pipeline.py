"""Folder screening at archive speed: the pipeline against its own bound and against the old one-photo-at-a-time
path, all measured in one run (the machine is shared, so only ratios within a run mean much).

Measured, each as a fresh subprocess with a fresh face cache, on the same ``--n`` ds-kaggle photos (half Down
syndrome, half controls; symlinked into ``--out``):

- ``align``: ``gsscreen align FOLDER`` (2 workers), start-up included;
- ``forward``: the model pack's batched forward (batch ``--batch``, mirror view included, on the runtime and
  threads screening uses: ONNX Runtime when available) on the aligned crops, model loading excluded;
- ``screen``: ``gsscreen screen FOLDER --no-heatmap`` (this checkout), start-up included;
- ``old``: the same command from ``--old-src`` (the code before the pipeline; e.g. ``git archive 884fee0 src``);
- the same two with heatmaps, on ``--n-heatmap`` photos (half of each class; default: the same ``--n``), alternating
  ``--repeat`` times (the median is reported); ``--old-model`` gives the old code a pack of its own (the shipped
  pack's format is newer than it reads), e.g. the same kind of model as ``--model`` for a like-for-like ratio.
  A smaller ``--n-heatmap`` (e.g. 100) is quicker but weighs the start-up (importing torch, loading the pack,
  starting the workers: about 4 s, more than the old path's) far more than an archive run does.

Goals: ``(align + forward) / screen ≥ 0.8`` without heatmaps; ``old / screen ≥ 2`` with heatmaps.

    .venv/bin/python benchmarks/bench_screen_pipeline.py --data ../shared/data --n 600 \\
        --old-src /work/artifacts/speed/old/src --out /work/artifacts/speed/bench   # ~25 min with heatmaps
    .venv/bin/python benchmarks/bench_screen_pipeline.py --heatmap-only --n 600 --old-src OLD/src  # ~20 min
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_SRC = Path(__file__).resolve().parents[1] / "src"

_FORWARD = r"""
import json, sys, time
from pathlib import Path
import numpy as np, torch
from PIL import Image
from gsscreen.modelpack import load_model_pack
from gsscreen.screening import demo_model_path
pack, crops, batch = sys.argv[1], sorted(Path(sys.argv[2]).glob("*.png")), int(sys.argv[3])
from gsscreen.screening_pipeline import model_threads
m = load_model_pack(pack if pack != "-" else demo_model_path())
torch.set_num_threads(model_threads(2))  # as the pipeline runs it (the runtime too)
m.use_onnx(True, threads=torch.get_num_threads())
xs = np.stack([m.model_input(np.asarray(Image.open(c).convert("RGB"))) for c in crops])
m.predict_tensor(torch.from_numpy(xs[:2]).permute(0, 3, 1, 2).float() / 255)  # warm the allocator
t = time.perf_counter()
for i in range(0, len(xs), batch):
    m.predict_tensor(torch.from_numpy(xs[i:i + batch]).permute(0, 3, 1, 2).float() / 255)
print(json.dumps({"seconds": time.perf_counter() - t, "n": len(xs)}))
"""


def _run(cmd: list[str], src: Path, cache: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(src), "GSSCREEN_CACHE": str(cache)}
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t


def photo_folder(data: Path, n: int, out: Path) -> Path:
    """``n`` ds-kaggle photos (half of each class, in name order) as symlinks in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for cls in ("down", "healthy"):
        files = sorted((data / "ds-kaggle" / cls).glob("*.jpg"), key=lambda p: (len(p.name), p.name))[: n // 2]
        for f in files:
            link = out / f"{cls}_{f.name}"
            if not link.exists():
                link.symlink_to(f)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO_SRC.parents[1] / "shared" / "data")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--model", default=None, help="model pack (default: the shipped demo model)")
    ap.add_argument("--old-src", type=Path, default=None, help="src/ of the code before the pipeline")
    ap.add_argument("--old-model", default=None, help="model pack for the old code (default: its own demo model; "
                    "the shipped pack's format is newer than the old code reads)")
    ap.add_argument("--no-heatmap-only", action="store_true", help="skip the heatmap comparison")
    ap.add_argument("--heatmap-only", action="store_true", help="only the heatmap comparison (no align, forward or "
                    "no-heatmap screening)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each heatmap screening (median taken)")
    ap.add_argument("--n-heatmap", type=int, default=None,
                    help="photos of the heatmap comparison (default: --n; the old path takes ~0.2 s a photo)")
    ap.add_argument("--old-no-heatmap", action="store_true", help="also time the old path without heatmaps")
    ap.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="bench_pipeline_")))
    args = ap.parse_args()

    py = sys.executable
    load0 = os.getloadavg()
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    folder = photo_folder(args.data, args.n, args.out / "photos")
    model = ["--model", args.model] if args.model else []
    res: dict[str, float] = {}

    def fresh(name: str) -> Path:
        d = args.out / name
        shutil.rmtree(d, ignore_errors=True)
        return d

    if not args.heatmap_only:
        cache = fresh("cache")
        res["align"] = _run([py, "-m", "gsscreen", "align", str(folder), "-o", str(fresh("align")), "-q"], REPO_SRC,
                            cache)
        r = subprocess.run([py, "-c", _FORWARD, args.model or "-", str(args.out / "align" / "crops"),
                            str(args.batch)], env={**os.environ, "PYTHONPATH": str(REPO_SRC)}, capture_output=True,
                           text=True, check=True)
        res["forward"] = json.loads(r.stdout.strip().splitlines()[-1])["seconds"]
        print(f"  align: {res['align']:.1f} s, forward: {res['forward']:.1f} s (load {os.getloadavg()[0]:.2f})",
              flush=True)
    warm = args.out / "cache_screen"
    _run([py, "-m", "gsscreen", "screen", str(next(folder.iterdir())), *model, "-o", str(fresh("first")),
          "--no-heatmap"], REPO_SRC, warm)  # the one-time export of the ONNX body into the cache
    args.n_heatmap = args.n_heatmap or args.n
    hm_folder = photo_folder(args.data, args.n_heatmap, args.out / f"photos_hm{args.n_heatmap}")
    runs = [] if args.heatmap_only else [("screen", REPO_SRC, ["--no-heatmap"], folder)]
    if args.old_src and args.old_no_heatmap:
        runs.append(("old", args.old_src, ["--no-heatmap"], folder))
    if not args.no_heatmap_only:
        for _ in range(args.repeat):  # new and old alternate, so a busy spell of the machine hits both
            runs.append(("screen_heatmap", REPO_SRC, [], hm_folder))
            if args.old_src:
                runs.append(("old_heatmap", args.old_src, [], hm_folder))
    times: dict[str, list[float]] = {}
    for name, src, extra, photos in runs:
        # screening keeps no face cache; its cache holds the one-time ONNX export (made before timing, below)
        this = (["--model", args.old_model] if args.old_model else []) if name.startswith("old") else model
        times.setdefault(name, []).append(_run([py, "-m", "gsscreen", "screen", str(photos), *this, "-o",
                                                str(fresh(name)), *extra], src, warm))
        print(f"  {name}: {times[name][-1]:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    res.update({k: statistics.median(v) for k, v in times.items()})  # the median of the repeats
    n, nh = args.n, args.n_heatmap
    bound = res.get("align", 0.0) + res.get("forward", 0.0)
    load1 = os.getloadavg()
    print(f"{n} ds-kaggle photos, batch {args.batch}; load average at start {load0[0]:.2f}, at the end "
          f"{load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} (1/5/15 min)")
    for k, v in res.items():
        m = nh if "heatmap" in k else n
        print(f"  {k:<16} {v:8.1f} s  {m / v:6.1f} photos/s ({m} photos)")
    if "screen" in res:
        print(f"screen (no heatmap) vs its bound (align + forward = {bound:.1f} s): {bound / res['screen']:.0%} "
              "(goal >= 80%)")
    if "old" in res:
        print(f"speed-up without heatmaps: {res['old'] / res['screen']:.2f}x (old {res['old']:.1f} s)")
    if "old_heatmap" in res:
        print(f"speed-up with heatmaps: {res['old_heatmap'] / res['screen_heatmap']:.2f}x (goal >= 2x)")
    (args.out / "result.json").write_text(json.dumps({"n": n, "n_heatmap": nh, "batch": args.batch, "load_start": load0,
                                                     "load_end": load1, **res, "runs": times}, indent=2))


if __name__ == "__main__":
    main()
