# The two commands a new user needs (README.md): `make serve` and `make test`.
# Both create the virtual environment .venv under the repo on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: serve test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

serve: $(VENV)/.installed
	$(VENV)/bin/otel-audit serve $(ARGS)

test: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy otel_audit backend sealer
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/bench_ingest.py $(ARGS)
