# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint notebooks book serve-book lab

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

book: setup  # the notebooks with their committed outputs (nothing runs) as a static site, built offline
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build -f docs/book/mkdocs.yml
	@echo "book: open build/book/index.html, or serve it with: make serve-book"

serve-book: book
	$(PY) -m http.server --bind 127.0.0.1 --directory build/book 8000

lab: setup  # JupyterLab on notebooks/ with this venv's kernel; jupytext pairs each NN_name.py with NN_name.ipynb
	@$(PY) -c "import jupyterlab" 2>/dev/null || $(PY) -m pip install --quiet --disable-pip-version-check -e ".[lab]"
	PATH="$(abspath $(VENV))/bin:$$PATH" JUPYTER_PREFER_ENV_PATH=1 $(VENV)/bin/jupyter lab notebooks/ \
		$(if $(filter 0,$(shell id -u)),--allow-root)  # as root (a container, CI) Jupyter refuses without it
