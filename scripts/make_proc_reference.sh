#!/usr/bin/env bash
# Regenerate tests/data/proc_reference.json from R's pROC (needs Rscript + pROC; see scripts/make_proc_reference.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v Rscript >/dev/null; then
  echo "Rscript not found: install R and pROC (Debian: apt-get install r-base-core r-cran-proc)" >&2
  exit 1
fi
PY="${PYTHON:-.venv/bin/python}"
exec "$PY" scripts/make_proc_reference.py "$@"
