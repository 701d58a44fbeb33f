# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint notebooks

setup:
	@VENV=$(VENV) bash scripts/setup.sh

demo: setup
	$(PY) -m parity_tests.demo

test: setup lint
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .

notebooks: setup  # execute every notebooks/NN_*.py source into its paired .ipynb (NB=03 for one)
	$(PY) scripts/notebooks.py $(NB)
