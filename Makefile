# Everyday targets. `make test` is the README's test command; CI runs .ci/run.
PY ?= .venv/bin/python

.PHONY: install test slow lint types golden bench demo

install:
	python3 -m venv .venv && $(PY) -m pip install -q -c constraints.txt -e '.[dev]'

test:
	$(PY) -m pytest -q -n 2

slow:
	$(PY) -m pytest -q -n 2 -m slow

lint:
	$(PY) -m ruff check mlspec tests bench

types:
	$(PY) -m mypy

golden:
	MLSPEC_UPDATE_GOLDEN=1 $(PY) -m pytest -q tests -k golden

bench:
	$(PY) bench/run_all.py

demo:
	$(PY) -m mlspec.cli demo churn demo && cd demo && ../$(PY) -m mlspec.cli run churn.mlspec
