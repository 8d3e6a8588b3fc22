"""CV AUC on ds-kaggle with and without likely-same-child grouping, for the default head and two unfrozen stages.

Runs four studies on the same photos (the default preset; ``configs/grouping_off.toml``, ``configs/unfreeze2.toml``,
``configs/unfreeze2_grouping_off.toml``) and prints, per study: the pooled out-of-fold AUC with its DeLong CI, the
mean ± SD of the fold AUCs, the clusters used and the leakage audit (test photos with a training neighbour at
cosine >= 0.8 / 0.9). Re-running resumes each study.

``--subset N`` runs on N photos (half Down syndrome, half healthy) chosen to keep the likely-same-child clusters
whole: every photo of a cluster (cosine >= the default threshold) is taken first, the rest drawn at random (seed 0),
so the subset holds the photos where grouping matters. The same subset is used with and without grouping.

utk-kids (when present next to ds-kaggle) is scored as external controls by every fold model: its false-positive
rate is printed with the AUCs. A study with and without grouping caches the same frozen-body features (the cache
spec holds the photos, views and seed, not the splits), so a finished sibling's cache is copied rather than
recomputed; the cache checks its spec and rebuilds when it does not match.

    .venv/bin/python benchmarks/bench_grouping.py --out /tmp/bench-grouping [--subset 600] [--which default,unfreeze2]
        [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "default": None, "default_no_grouping": "grouping_off.toml",
    "unfreeze2": "unfreeze2.toml", "unfreeze2_no_grouping": "unfreeze2_grouping_off.toml",
}
# Studies that differ only in grouping: same photos, same body prefix, same augmented views -> same feature cache.
SIBLING = {"default": "default_no_grouping", "default_no_grouping": "default",
           "unfreeze2": "unfreeze2_no_grouping", "unfreeze2_no_grouping": "unfreeze2"}


def _seed_cache(out: Path, name: str) -> None:
    """Copy a finished sibling study's feature caches into ``out/name`` (only where ``name`` has none yet)."""
    src = out / SIBLING[name] / "cache"
    dst = out / name / "cache"
    if not src.is_dir():
        return
    for folder in sorted(p for p in src.iterdir() if p.is_dir()):
        done = folder / "done.npy"
        if (dst / folder.name).exists() or not done.is_file() or not np.load(done).all():
            continue
        shutil.copytree(folder, dst / folder.name)
        print(f"{name}: feature cache {folder.name} copied from {SIBLING[name]}")


def _subset(table, n: int, seed: int = 0):
    """``n`` rows, half per label, whole likely-same-child clusters first (see the module docstring)."""
    from gsscreen.identity import DEFAULT_IDENTITY_THRESHOLD, likely_same_child

    grouped, _, _ = likely_same_child(table, DEFAULT_IDENTITY_THRESHOLD)
    sizes = grouped["identity_cluster"].map(grouped["identity_cluster"].value_counts())
    rng = np.random.default_rng(seed)
    keep = []
    for label in ("GS", "control"):
        rows = grouped.index[grouped["label"] == label].to_numpy()
        clustered = rows[sizes[rows].to_numpy() >= 2]
        rest = rng.permutation(rows[sizes[rows].to_numpy() < 2])
        keep += [*clustered[: n // 2], *rest[: max(0, n // 2 - len(clustered))]]
    return table.loc[sorted(keep)].reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "bench-grouping")
    ap.add_argument("--subset", type=int, default=0, help="photos to use (0 = all)")
    ap.add_argument("--which", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: the config's)")
    ap.add_argument("--no-external", action="store_true", help="do not score utk-kids as external controls")
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
        table = load_cohort(cohort_from_folders(ds, gs=("down",), control=("healthy",))).ok_table()
        if args.subset:
            table = _subset(table, args.subset)
        write_cohort_csv(table[["image", "label", "syndrome"]], csv)
    overrides = {"threads": args.threads}
    if utk.is_dir() and not args.no_external:
        overrides["external_controls"] = [str(utk)]
    results_path = args.out / "grouping_results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    for name in args.which.split(","):
        conf = CONFIGS[name]
        cfg = build_config("default", REPO / "benchmarks" / "configs" / conf if conf else None, overrides)
        _seed_cache(args.out, name)
        t0 = time.perf_counter()
        res = run_study(load_cohort(csv, progress=False), args.out / name, cfg, progress=not args.quiet)
        m = res.metrics
        pooled = m["model"].get("pooled_roc") or {}
        results[name] = {
            "pooled_auc": pooled.get("auc"), "auc_ci_delong": pooled.get("auc_ci_delong"),
            "fold_auc": m["model"]["summary"]["auc"], "grouping": m.get("grouping"),
            "minutes": round((time.perf_counter() - t0) / 60, 1), "n_photos": m["n_photos"],
            "n_failures": m["n_failures"],
            "external_fpr": {k: {"mean": e["mean"], "sd": e["sd"], "values": e["values"], "n_photos": e["n_photos"]}
                             for k, e in m["model"].get("external", {}).items()},
        }
        g = m.get("grouping") or {}
        audit = (g.get("leakage_audit") or {}).get("thresholds", {})
        print(f"{name}: {m['n_photos']} photos, pooled AUC {pooled.get('auc', float('nan')):.4f} "
              f"(DeLong 95% CI {pooled.get('auc_ci_delong')}), fold AUC {m['model']['summary']['auc']['mean']:.4f} "
              f"± {m['model']['summary']['auc']['sd']:.4f}; grouping used: {g.get('used')} "
              f"({g.get('n_clusters')} clusters, {g.get('n_photos_in_clusters')} photos); leakage "
              + ", ".join(f">= {t}: {a['n']} ({a['share']:.1%})" for t, a in audit.items())
              + "".join(f"; FPR {k} {e['mean']:.3f} ± {e['sd']:.3f}" for k, e in results[name]["external_fpr"].items())
              + f"; {results[name]['minutes']} min")
        # After every study, so a later failure keeps the finished ones.
        results_path.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
