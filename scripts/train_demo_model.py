"""Train, export and measure the shipped demo model (``src/gsscreen/assets/demo_model.gss``).

Development data only (``../shared/data``), never copied into the repository:

1. ds-kaggle (Down syndrome vs healthy) is split, subject- and near-duplicate-grouped, into five subsets; subset 0
   (20%) is held out. utk-kids (healthy children from another source) is split in two halves: one half joins the
   training cohort as extra controls (so the model cannot learn "stock photo = healthy"), the other is held out.
2. ``gsscreen study`` (default preset: frozen FaceNet, cached features, the paper's head, CE + triplet, RMSProp,
   5-fold CV) runs on the training cohort; the five fold models are exported as an ensemble with the threshold
   chosen on out-of-fold validation predictions.
3. The exported pack screens every held-out photo through the same API the CLI and the web app use, and the
   script prints AUC, accuracy, sensitivity, specificity on held-out ds-kaggle and the false-positive rate on
   held-out utk-kids; the numbers are written to ``OUT/holdout_metrics.json``.

    .venv/bin/python scripts/train_demo_model.py --out runs/demo-model [--pack src/gsscreen/assets/demo_model.gss]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def build_split(data: Path, out: Path, seed: int) -> tuple[Path, pd.DataFrame]:
    """Write the training cohort CSV; return it and the held-out table (image, label, set)."""
    from gsscreen.cohort import cohort_from_folders, find_images, load_cohort, write_cohort_csv
    from gsscreen.training.splits import assign_subsets

    ds = load_cohort(cohort_from_folders(data / "ds-kaggle", gs=("down",), control=("healthy",)))
    ds_ok = assign_subsets(ds.ok_table(), n_folds=5, seed=seed)
    held_ds = ds_ok[ds_ok["subset"] == 0]
    train_ds = ds_ok[ds_ok["subset"] != 0]
    utk = [str(p) for p in find_images(data / "utk-kids")]
    order = np.random.default_rng(seed).permutation(len(utk))
    utk_train = [utk[i] for i in order[: len(utk) // 2]]
    utk_held = [utk[i] for i in order[len(utk) // 2 :]]
    cols = ["image", "label", "syndrome", "subject_id"]
    train = pd.concat(
        [train_ds[cols].assign(source="ds-kaggle"),
         pd.DataFrame({"image": utk_train, "label": "control", "syndrome": "", "subject_id": None, "source": "utk"})],
        ignore_index=True,
    )
    csv = out / "train_cohort.csv"
    write_cohort_csv(train, csv)
    held = pd.concat(
        [held_ds[["image", "label"]].assign(set="ds-kaggle"),
         pd.DataFrame({"image": utk_held, "label": "control", "set": "utk-kids"})],
        ignore_index=True,
    )
    held.to_csv(out / "holdout.csv", index=False)
    return csv, held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "demo-model")
    ap.add_argument("--pack", type=Path, default=REPO / "src" / "gsscreen" / "assets" / "demo_model.gss")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not (args.data / "ds-kaggle").is_dir():
        print(f"skipped: development data not found at {args.data}")
        return 0

    from gsscreen.cohort import load_cohort
    from gsscreen.evaluation.metrics import binary_metrics
    from gsscreen.evaluation.roc import auc_ci_delong
    from gsscreen.modelpack import ExportConfig, export_model_pack, load_model_pack
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    csv, held = build_split(args.data, args.out, args.seed)
    result = run_study(load_cohort(csv), args.out / "study", build_config("default", None, {"seed": args.seed}))
    print(result.summary_table().to_string())
    t_train = time.perf_counter() - t0

    args.pack.parent.mkdir(parents=True, exist_ok=True)
    export_model_pack(
        args.out / "study", args.pack,
        ExportConfig(folds="all", demo=True, name="gsscreen-demo-down-syndrome",
                     description="Down syndrome vs healthy (web-collected photos); a demonstration"),
    )
    model = load_model_pack(args.pack)
    t1 = time.perf_counter()
    rows = []
    for img, label, subset in zip(held["image"], held["label"], held["set"], strict=True):
        r = model.screen_file(img, heatmap=False)
        rows.append({"image": img, "label": label, "set": subset, "p_gs": r.p_gs, "problem": r.problem})
    t_screen = time.perf_counter() - t1
    scored = pd.DataFrame(rows)
    scored.to_csv(args.out / "holdout_predictions.csv", index=False)

    ok = scored[scored["p_gs"].notna()]
    ds = ok[ok["set"] == "ds-kaggle"]
    y = ds["label"].eq("GS").to_numpy(int)
    p = ds["p_gs"].to_numpy(float)
    m = binary_metrics(y, p, model.threshold)
    ci = auc_ci_delong(y, p)
    utk = ok[ok["set"] == "utk-kids"]
    fpr_utk = float((utk["p_gs"] >= model.threshold).mean())
    out = {
        "threshold": model.threshold,
        "ds_kaggle_holdout": {k: m[k] for k in ("accuracy", "recall", "specificity", "precision", "f1", "auc",
                                                 "tp", "fp", "tn", "fn")},
        "ds_kaggle_holdout_auc_ci_delong": [ci.lo, ci.hi],
        "ds_kaggle_holdout_n": len(ds),
        "utk_holdout_false_positive_rate": fpr_utk,
        "utk_holdout_n": len(utk),
        "no_face": int(scored["p_gs"].isna().sum()),
        "train_wall_min": t_train / 60,
        "screen_s_per_photo": t_screen / max(len(scored), 1),
        "pack_bytes": args.pack.stat().st_size,
    }
    (args.out / "holdout_metrics.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
