# The two commands the README starts with; both set up .venv first.
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/gsscreen demo -o runs/demo

test: setup
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check src tests benchmarks scripts

bench: setup
	.venv/bin/python benchmarks/run_all.py
