# The two commands the README starts with; both set up .venv first.
.PHONY: setup demo test lint bench mutate

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/gsscreen demo -o runs/demo

test: setup
	.venv/bin/ruff check src tests benchmarks scripts
	.venv/bin/python -m pytest -q --cov --cov-report=term

lint: setup
	.venv/bin/ruff check src tests benchmarks scripts

bench: setup
	.venv/bin/python benchmarks/run_all.py

# Mutation testing of the modules that decide results (slow: minutes per module; not part of make test).
mutate: setup
	.venv/bin/python scripts/mutate.py
