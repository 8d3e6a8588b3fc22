"""The default study on the development data: ds-kaggle (Down syndrome vs healthy), utk-kids as external controls.

Prints mean ± SD of every metric for the model and the logistic-regression baseline (frozen FaceNet embeddings,
same splits), each fold's false-positive rate on utk-kids, and the wall time. Re-running the same command resumes
(finished folds are not recomputed), so the wall time of a resumed run is only what was left.

    .venv/bin/python benchmarks/bench_study.py --out runs/bench-dskaggle [--data ../shared/data] [--preset default]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-dskaggle")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--config", type=Path, default=None, help="study config file applied over the preset")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    ds, utk = args.data / "ds-kaggle", args.data / "utk-kids"
    if not ds.is_dir():
        print(f"skipped: development data not found at {ds}")
        return 0

    from gsscreen.cohort import cohort_from_folders, load_cohort, write_cohort_csv
    from gsscreen.training.config import build_config
    from gsscreen.training.study import run_study

    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / "cohort.csv"
    if not csv.is_file():
        write_cohort_csv(cohort_from_folders(ds, gs=("down",), control=("healthy",)), csv)
    overrides = {"external_controls": [str(utk)]} if utk.is_dir() else {}
    cfg = build_config(args.preset, args.config, overrides)
    t0 = time.perf_counter()
    cohort = load_cohort(csv, progress=not args.quiet)
    result = run_study(cohort, args.out / "study", cfg, progress=not args.quiet)
    wall = time.perf_counter() - t0

    m = result.metrics
    print(f"\nds-kaggle study ({cfg.backbone}, preset {args.preset}): {m['n_photos']} photos "
          f"({m['n_gs']} GS, {m['n_control']} control), {m['n_failures']} left out")
    print(result.summary_table().to_string())
    for name, ext in m["model"].get("external", {}).items():
        vals = ", ".join(f"{v:.3f}" for v in ext["values"])
        print(f"false-positive rate on {name} ({ext['n_photos']} photos) per fold: {vals}; "
              f"mean {ext['mean']:.3f} ± {ext['sd']:.3f}")
    for name, ext in m.get("baseline", {}).get("external", {}).items():
        print(f"baseline false-positive rate on {name}: mean {ext['mean']:.3f} ± {ext['sd']:.3f}")
    pooled = m["model"].get("pooled_roc") or {}
    if pooled:
        print(f"pooled AUC {pooled.get('auc'):.4f}; DeLong 95% CI {json.dumps(pooled.get('auc_ci_delong'))}")
    if "model_vs_baseline_delong" in m:
        d = m["model_vs_baseline_delong"]
        print(f"model vs baseline (DeLong): AUC {d['auc1']:.4f} vs {d['auc2']:.4f}, p = {d['p_value']:.3g}")
    print(f"wall time this run: {wall / 60:.1f} min (a resumed run counts only what was left)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
