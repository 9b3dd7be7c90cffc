PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv services lint test test-fast compat docs demo bench dist check-dist clean

all: test

# The development groups of pyproject.toml (PEP 735); `pip install --group` needs pip 25.1+.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/pip install --quiet -e . --group test --group lint --group dist
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/services.sh

lint: venv
	$(BIN)/ruff check airflow_provider_aac tests bench demo scripts docs/conf.py docs/_ext
	$(BIN)/ruff format --check airflow_provider_aac tests bench demo scripts docs/conf.py docs/_ext
	$(BIN)/mypy airflow_provider_aac

test: venv services lint
	$(BIN)/pytest -p no:cacheprovider -n 3 --dist loadgroup

# The edit loop: the core and the adapters that need no server (no PostgreSQL, Redis or
# Airflow process; tests using such fixtures are marked `services` in tests/conftest.py).
# Operators, sensors and triggers are left out: their tests wait for simulated runs.
FAST_TESTS := tests/core tests/tokens tests/hooks tests/links tests/testing/simulator \
	tests/cli/test_token_input.py tests/cli/test_readiness.py tests/test_runs.py tests/transport tests/test_layers.py \
	tests/test_compat.py tests/test_get_provider_info.py tests/test_lineage.py tests/test_metrics.py

test-fast: venv
	$(BIN)/pytest -p no:cacheprovider -q -m "not services" -n 4 $(FAST_TESTS)

compat: services
	bash scripts/compat.sh

docs: venv
	$(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html

demo: venv
	$(BIN)/python demo/run_demo.py

bench: venv services
	$(BIN)/python bench/token_overhead.py

# The sdist and wheel a release uploads, into dist/.
dist: venv
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

# What CI checks of the artifacts: installed (not editable) on the lowest and highest Airflow.
check-dist: venv
	bash scripts/check_dist.sh

clean:
	rm -rf $(VENV) .demo build dist docs/_build *.egg-info
