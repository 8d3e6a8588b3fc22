"""Run every benchmark in turn and print their figures (`make bench`).

The study benchmark trains five folds on the development data (about 10 minutes on 2 cores); pass ``--skip-study``
to leave it out. Benchmarks that need ``../shared/data`` say so and skip their data parts when it is absent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ("bench_align.py", "bench_models.py", "bench_screen.py", "bench_border.py", "bench_study.py")


def main(argv: list[str]) -> int:
    skip_study = "--skip-study" in argv
    failed = []
    for name in ORDER:
        if skip_study and name == "bench_study.py":
            continue
        print(f"\n===== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / name)])
        if rc != 0:
            failed.append(f"{name} (exit {rc})")
    if failed:
        print("\nfailed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
