"""Where should the calibration map sit in the ensemble? Measured on the demo model's held-out photos.

    .venv/bin/python benchmarks/bench_ensemble_calibration.py --run RUN_DIR [--model PACK]

The pack's map is fitted on pooled out-of-fold validation predictions, each made by *one* fold model. Screening has
the fold models' P(GS) for a photo; the map can be applied to their mean (packs before ``calibration.applied_to``)
or to each fold's P(GS) and the calibrated values averaged (``applied_to = "each fold model"``). A mean of five
fold outputs is a less extreme number than any one of them (one fold at 0.08 and four at 0.00 average to 0.017),
which the map then reads as if one model had said it.

``RUN_DIR``: the ``scripts/train_demo_model.py`` output folder (``holdout.csv``: photos no fold model saw;
``clusters.csv``: their aligned crops). Each held-out crop is scored by the pack's fold models
(``ScreeningModel.predict_tensor``); the script prints, for the raw ensemble mean, the map on the mean and the mean of
the mapped folds: log loss and Brier score (ds-kaggle held-out, GS vs healthy, and all held-out photos with the
UTKFace children as controls), calibration intercept/slope on ds-kaggle, the mean P(GS) of the UTKFace children,
sensitivity/specificity at the pack's threshold, and the two embedded example portraits' P(GS).
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
    ap.add_argument("--run", type=Path, required=True, help="train_demo_model.py output folder")
    ap.add_argument("--model", type=Path, default=None, help="model pack (default: the shipped demo model)")
    args = ap.parse_args()
    if not (args.run / "holdout.csv").is_file() or not (args.run / "clusters.csv").is_file():
        print(f"skipped: {args.run}/holdout.csv or clusters.csv not found")
        return 0
    import pandas as pd

    from gsscreen.evaluation.calibration import brier_score, calibration_intercept_slope, log_loss
    from gsscreen.evaluation.metrics import binary_metrics
    from gsscreen.examples import EXAMPLE_NAMES, example_path
    from gsscreen.modelpack import load_model_pack
    from gsscreen.screening import demo_model_path
    from gsscreen.training.data import load_crops

    t0 = time.perf_counter()
    model = load_model_pack(args.model or demo_model_path())
    cal = model.decision.calibrator
    if cal is None:
        print("skipped: this pack has no calibration map")
        return 0
    held = pd.read_csv(args.run / "holdout.csv")
    crop_of = dict(zip(*[pd.read_csv(args.run / "clusters.csv")[c] for c in ("image", "crop")], strict=True))
    held = held[held["image"].map(lambda i: isinstance(crop_of.get(i), str) and Path(crop_of[i]).is_file())]
    folds = []
    paths = [crop_of[i] for i in held["image"]]
    for start in range(0, len(paths), 32):
        c, ok, fail = load_crops(paths[start:start + 32], model.input_size)
        if fail:
            print(f"cannot read crops: {fail[:3]}")
            return 1
        folds.append(model.predict_tensor(c[: len(ok)].float().div(255.0)))
    fp = np.concatenate(folds)  # (n, K)
    y = held["label"].eq("GS").to_numpy(int)
    kag = held["set"].eq("ds-kaggle").to_numpy()
    ways = {"raw ensemble mean": fp.mean(1), "map of the mean (before)": cal.predict(fp.mean(1)),
            "mean of mapped folds (now)": cal.predict(fp.reshape(-1)).reshape(fp.shape).mean(1)}
    t = model.decision.operating_point.threshold
    print(f"model {model.model_id}; map {cal.to_dict()}; {len(held)} held-out photos ({int(kag.sum())} ds-kaggle, "
          f"{int(y.sum())} GS); threshold {t:.3f}\n")
    print("| P(GS) | log loss kaggle | Brier kaggle | log loss all | Brier all | intercept / slope kaggle "
          "| mean P UTK | sens / spec kaggle |")
    print("|---|---|---|---|---|---|---|---|")
    for name, p in ways.items():
        fit = calibration_intercept_slope(y[kag], p[kag])
        m = binary_metrics(y[kag], p[kag], t)
        print(f"| {name} | {log_loss(y[kag], p[kag]):.4f} | {brier_score(y[kag], p[kag]):.4f} | "
              f"{log_loss(y, p):.4f} | {brier_score(y, p):.4f} | {fit.intercept:.2f} / {fit.slope:.2f} | "
              f"{p[~kag].mean():.4f} | {m['recall']:.3f} / {m['specificity']:.3f} |")
    print()
    for name in EXAMPLE_NAMES:
        r = model.screen_file(example_path(name), heatmap=False)
        f = np.asarray(r.fold_p_gs)
        print(f"{name}: folds {np.round(f, 4).tolist()}, raw mean {f.mean():.4f}, map of the mean "
              f"{float(cal.predict([f.mean()])[0]):.4f}, mean of mapped folds {float(cal.predict(f).mean()):.4f}")
    print(f"\n({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
