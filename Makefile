# pyroplug: every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint bench soak clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml examples/plugins/pyroplug-cbor/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	$(PY) -m pip install -q -e examples/plugins/pyroplug-cbor
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo/demo.py

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

soak: $(STAMP)
	$(PY) -m pytest -q -m soak -o addopts='' $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check pyroplug tests benchmarks examples
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
