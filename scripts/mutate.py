"""Mutation testing of the modules that decide results (``make mutate``), with mutmut from PyPI.

A mutant is one small plausible bug (a flipped comparison, an off-by-one, a dropped argument) in a copy of the code;
the module's tests either fail on it (killed) or pass (survived: a bug the suite would let through). Each target
module is mutated alone, in a scratch copy of the checkout, against the test files that exercise it, so a run of
one module takes minutes rather than the whole suite per mutant.

    .venv/bin/python scripts/mutate.py                      # every target, survivors listed per module
    .venv/bin/python scripts/mutate.py -m evaluation/metrics.py -m training/splits.py
    .venv/bin/python scripts/mutate.py --tests-from REV     # the same code against the tests of a git revision
    .venv/bin/python scripts/mutate.py --show               # also print each survivor's diff

Prints ``module  killed/total  survived  no-tests  timeout`` and the surviving mutants' names, and writes
``mutation.json`` (``--out``). Survivors judged equivalent (the mutant cannot change any result) are listed in
``docs/mutation.md`` with one line each on why.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "src/gsscreen"

#: module (relative to src/gsscreen) -> the test files that exercise it. A target whose file does not exist yet
#: (or whose tests are missing) is skipped with a note, so the list can name modules before they land.
TARGETS: dict[str, list[str]] = {
    "evaluation/metrics.py": ["tests/test_metrics.py"],
    "evaluation/roc.py": ["tests/test_roc.py"],
    "evaluation/readers.py": ["tests/test_readers_stats.py"],
    "evaluation/demographics.py": ["tests/test_demographics.py"],
    "evaluation/calibration.py": ["tests/test_calibration.py"],
    "training/splits.py": ["tests/test_splits.py"],
    "modelpack.py": ["tests/test_modelpack.py"],
    "web/screen_app.py": ["tests/test_screen_app.py", "tests/test_upload_limits.py"],
    "web/security.py": ["tests/test_screen_app.py", "tests/test_security.py"],
    "web/readers_app.py": ["tests/test_readers_app.py"],
    "faces/quality.py": ["tests/test_quality.py"],
}

#: mutmut's exit-code → status table, reduced to what the summary reports.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout",
          24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout", 37: "killed", None: "not checked"}


def _scratch_copy(dest: Path, tests_from: str | None) -> None:
    """src/, tests/ and pyproject.toml of the checkout (tests/ optionally from another git revision)."""
    for name in ("src", "tests"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if tests_from:
        shutil.rmtree(dest / "tests")
        archive = subprocess.run(["git", "-C", str(REPO), "archive", tests_from, "tests"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    text = (REPO / "pyproject.toml").read_text()
    (dest / "pyproject.toml").write_text(re.sub(r"\n\[tool\.mutmut\][^\[]*", "\n", text))


def _configure(dest: Path, module: str, tests: list[str]) -> None:
    section = (
        "\n[tool.mutmut]\n"
        f'source_paths = ["{PACKAGE}"]\n'
        f'only_mutate = ["{PACKAGE}/{module}"]\n'
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}\n"
        'pytest_add_cli_args = ["-q", "-p", "no:cacheprovider"]\n'
    )
    with (dest / "pyproject.toml").open("a") as fh:
        fh.write(section)


def _statuses(dest: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for meta in (dest / "mutants").rglob("*.meta"):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        for key, code in codes.items():
            out[key] = STATUS.get(code, "suspicious")
    return out


def run_target(module: str, tests: list[str], workers: int, tests_from: str | None, show: bool) -> dict:
    """Mutate one module in a scratch copy; returns counts and survivors."""
    with tempfile.TemporaryDirectory(prefix="gsscreen-mutate-") as tmp:
        dest = Path(tmp)
        _scratch_copy(dest, tests_from)
        present = [t for t in tests if (dest / t).is_file()]
        if not (dest / PACKAGE / module).is_file() or not present:
            return {"module": module, "skipped": "module or its tests not present"}
        _configure(dest, module, present)
        env = {**os.environ, "PYTHONPATH": str(dest / "src"), "HYPOTHESIS_PROFILE": "mutate"}
        proc = subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(workers)], cwd=dest,
                              env=env, capture_output=True, text=True)
        statuses = _statuses(dest)
        if not statuses:
            tail = (proc.stdout + proc.stderr)[-2000:]
            return {"module": module, "skipped": f"mutmut did not run (exit {proc.returncode}): {tail}"}
        survivors = sorted(k for k, s in statuses.items() if s == "survived")
        diffs = {}
        if show:
            for key in survivors:
                shown = subprocess.run([sys.executable, "-m", "mutmut", "show", key], cwd=dest, env=env,
                                       capture_output=True, text=True)
                diffs[key] = shown.stdout.strip()
        counts = Counter(statuses.values())
        return {"module": module, "tests": present, "total": len(statuses), "killed": counts["killed"],
                "survived": counts["survived"], "no_tests": counts["no tests"], "timeout": counts["timeout"],
                "other": {k: v for k, v in counts.items() if k not in ("killed", "survived", "no tests", "timeout")},
                "survivors": survivors, "diffs": diffs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--module", action="append", help="module under src/gsscreen (repeatable); default: all")
    ap.add_argument("--tests-from", help="git revision whose tests/ to use (e.g. to measure before a change)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--show", action="store_true", help="print each survivor's diff")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "mutation.json")
    args = ap.parse_args(argv)
    modules = args.module or list(TARGETS)
    unknown = [m for m in modules if m not in TARGETS]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; choose from {list(TARGETS)}")
    results = []
    for module in modules:
        print(f"mutating {module} ...", flush=True)
        res = run_target(module, TARGETS[module], args.workers, args.tests_from, args.show)
        results.append(res)
        if "skipped" in res:
            print(f"  skipped: {res['skipped']}")
            continue
        print(f"  killed {res['killed']}/{res['total']}, survived {res['survived']}, no tests {res['no_tests']}, "
              f"timeout {res['timeout']}")
        for key in res["survivors"]:
            print(f"  survived: {key}")
            if key in res["diffs"]:
                print("    " + res["diffs"][key].replace("\n", "\n    "))
    print("\nmodule                         killed/total  survived  no-tests  timeout  score")
    for r in results:
        if "skipped" in r:
            print(f"{r['module']:<30} skipped")
            continue
        score = r["killed"] / r["total"] if r["total"] else float("nan")
        print(f"{r['module']:<30} {r['killed']:>5}/{r['total']:<6} {r['survived']:>9} {r['no_tests']:>9} "
              f"{r['timeout']:>8}  {score:.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"tests_from": args.tests_from, "results": results}, indent=1))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
