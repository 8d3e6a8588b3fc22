"""Regenerate ``tests/data/proc_reference.json``: fixed datasets and R pROC's statistics on them.

Needs R with pROC (Debian: ``apt-get install r-base-core r-cran-proc``); the tests only read the JSON, so CI
needs no R. Run from the repository root::

    .venv/bin/python scripts/make_proc_reference.py            # or scripts/make_proc_reference.sh

The datasets are generated deterministically here (numpy seeds), written as CSV (17 significant digits, so R
reads the same doubles), analysed by ``scripts/proc_reference.R`` and collected with pROC's outputs. Bootstrap
resample indices are stored as base64 of uint8 row-major ``(replicates, n)`` arrays (every class has <= 256
members), which keeps the file small.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "proc_reference.json"
R_SCRIPT = REPO / "scripts" / "proc_reference.R"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _shuffle(rng: np.random.Generator, y: np.ndarray, *cols: np.ndarray) -> tuple[np.ndarray, ...]:
    order = rng.permutation(y.size)
    return (y[order], *(c[order] for c in cols))


def make_datasets() -> dict[str, dict[str, object]]:
    """Four small datasets with ties, unbalanced classes and two correlated predictors each."""
    sets: dict[str, dict[str, object]] = {}

    # 1. Balanced, heavy ties: probabilities rounded to one decimal.
    rng = np.random.default_rng(101)
    y = np.repeat([1, 0], [40, 40])
    z = rng.normal(size=y.size) + 1.0 * y
    p1 = np.round(_sigmoid(z), 1)
    p2 = np.round(_sigmoid(0.6 * z + rng.normal(size=y.size)), 1)
    sets["ties_balanced"] = dict(zip(("y", "p1", "p2"), _shuffle(rng, y, p1, p2), strict=True), seed=11)

    # 2. Unbalanced (1 GS : 4 controls), continuous scores, no ties.
    rng = np.random.default_rng(202)
    y = np.repeat([1, 0], [30, 120])
    z = rng.normal(size=y.size) + 1.3 * y
    p1 = _sigmoid(z)
    p2 = _sigmoid(0.5 * z + 0.8 * rng.normal(size=y.size))
    sets["unbalanced_continuous"] = dict(zip(("y", "p1", "p2"), _shuffle(rng, y, p1, p2), strict=True), seed=22)

    # 3. n = 200, more GS than controls, probabilities rounded to 0.01 vs a 10-level reader-like score.
    rng = np.random.default_rng(303)
    y = np.repeat([1, 0], [120, 80])
    z = rng.normal(size=y.size) + 1.6 * y
    p1 = np.round(_sigmoid(z), 2)
    p2 = np.clip(np.round(5.5 + 2.0 * (0.7 * z + 0.7 * rng.normal(size=y.size) - 0.8)), 1, 10)
    sets["probs_vs_reader"] = dict(zip(("y", "p1", "p2"), _shuffle(rng, y, p1, p2), strict=True), seed=33)

    # 4. n = 40, 12 GS, integer 1-5 ratings (ties everywhere).
    rng = np.random.default_rng(404)
    y = np.repeat([1, 0], [12, 28])
    z = rng.normal(size=y.size) + 1.2 * y
    p1 = np.clip(np.round(3 + 1.2 * z - 0.6), 1, 5)
    p2 = np.clip(np.round(3 + 0.8 * z + rng.normal(size=y.size) - 0.5), 1, 5)
    sets["small_ratings"] = dict(zip(("y", "p1", "p2"), _shuffle(rng, y, p1, p2), strict=True), seed=44)
    return sets


def _parse(path: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        key, _, vals = line.partition("\t")
        out[key] = [float(v) for v in vals.split()] if vals.strip() else []
    return out


def _b64_uint8(values: list[float], n_rows: int) -> dict[str, object]:
    a = np.asarray(values, dtype=np.int64).reshape(n_rows, -1)
    if a.min() < 0 or a.max() > 255:
        raise ValueError("resample index does not fit uint8")
    return {"shape": list(a.shape), "uint8_b64": base64.b64encode(a.astype(np.uint8).tobytes()).decode("ascii")}


def _finite_or_none(values: list[float]) -> list[float | None]:
    return [v if math.isfinite(v) else None for v in values]


def main() -> int:
    sets = make_datasets()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = ["name,seed"]
        for name, d in sets.items():
            lines.append(f"{name},{d['seed']}")
            rows = ["y,p1,p2"] + [
                f"{int(a)},{float(b)!r},{float(c)!r}" for a, b, c in zip(d["y"], d["p1"], d["p2"], strict=True)
            ]
            (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
        (folder / "seeds.csv").write_text("\n".join(lines) + "\n")
        run = subprocess.run(["Rscript", str(R_SCRIPT), str(folder)], capture_output=True, text=True, check=False)
        sys.stdout.write(run.stdout)
        if run.returncode != 0:
            sys.stderr.write(run.stderr)
            print(f"{R_SCRIPT}: Rscript failed with exit code {run.returncode}", file=sys.stderr)
            return 1
        version_line = [ln for ln in run.stdout.splitlines() if ln.startswith("pROC ")]
        datasets = {}
        for name, d in sets.items():
            r = _parse(folder / f"{name}.out")
            n_boot = len(r["boot_aucs"])
            r["all_threshold"] = _finite_or_none(r["all_threshold"])  # -Inf / Inf ends become null
            proc: dict[str, object] = {k: v for k, v in r.items() if not k.startswith("boot_idx")}
            proc["boot_idx0"] = _b64_uint8(r["boot_idx0"], n_boot)
            proc["boot_idx1"] = _b64_uint8(r["boot_idx1"], n_boot)
            for k in ("n_controls", "n_cases", "var_delong1", "var_delong2", "auc1", "auc2", "test_z", "test_p"):
                proc[k] = r[k][0]
            datasets[name] = {
                "y": [int(v) for v in d["y"]],
                "p1": [float(v) for v in d["p1"]],
                "p2": [float(v) for v in d["p2"]],
                "seed": d["seed"],
                "proc": proc,
            }
    doc = {
        "about": "pROC reference values for tests/test_roc.py; regenerate with scripts/make_proc_reference.py",
        "versions": version_line[0] if version_line else "unknown",
        "conventions": "direction '<' (controls < cases), levels c(0, 1); ci_delong = (lo, auc, hi); "
        "boot_idx* 0-based positions among roc$controls / roc$cases, one row per replicate",
        "datasets": datasets,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
