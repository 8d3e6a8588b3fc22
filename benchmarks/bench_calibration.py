"""Calibration before/after on held-out photos: a small real-data study, exported with calibration.

Trains a 5-fold study on a class-balanced subset of ds-kaggle (development data, ``../shared/data``; skipped when
absent) with the ``quick`` preset (tiny backbone from scratch, no alignment; cheap enough for a 2-core machine),
exports it with ``gsscreen export`` (which fits the calibration map on the pooled out-of-fold validation
predictions) and prints the model card's numbers: the map chosen and its cross-validated log loss, Brier score and
calibration intercept/slope on the pooled *test* predictions before and after, and the operating points. The
reliability diagram is the pack's ``reliability.png``. The numbers describe a weak model (the point is the
machinery and the measurement); run ``gsscreen export`` on a real study for its own.

    .venv/bin/python benchmarks/bench_calibration.py --out /tmp/bench_cal [--n 800 --epochs 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=800, help="photos in the subset (half Down syndrome, half healthy)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not (args.data / "ds-kaggle").is_dir():
        print(f"skipped: development data not found at {args.data}")
        return 0

    from gsscreen.cohort import cohort_from_folders, load_cohort, write_cohort_csv
    from gsscreen.modelpack import ExportConfig, export_model_pack, read_model_pack
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_cohort(cohort_from_folders(args.data / "ds-kaggle", gs=("down",), control=("healthy",))).ok_table()
    rng = np.random.default_rng(args.seed)
    sub = pd.concat([g.iloc[rng.permutation(len(g))[: args.n // 2]] for _, g in ds.groupby("label")],
                    ignore_index=True)
    csv = args.out / "cohort.csv"
    write_cohort_csv(sub[[c for c in ("image", "label", "syndrome", "subject_id") if c in sub]], csv)
    cfg = build_config("quick", None, {"seed": args.seed, "train": {"epochs": args.epochs, "patience": 3}})
    run_study(load_cohort(csv), args.out / "study", cfg)
    pack = export_model_pack(args.out / "study", str(args.out / "pack") + "/", ExportConfig(name="bench-calibration"))
    info = read_model_pack(pack).info
    cal, ops = info["calibration"], info["operating_points"]
    ho = cal["heldout"]
    summary = {
        "map": cal["map"]["method"], "selection": cal["selection"],
        "heldout_n": ho["n"],
        **{f"{when}_{k}": ho[when][k] for when in ("before", "after")
           for k in ("brier", "intercept", "intercept_ci", "slope", "slope_ci")},
        "operating_points": ops, "default": info["default_operating_point"],
        "reliability_png": str(Path(pack) / "reliability.png"),
    }
    (args.out / "calibration_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
