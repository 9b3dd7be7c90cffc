PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all venv services lint test compat docs demo bench clean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/services.sh

lint: venv
	$(BIN)/ruff check airflow_provider_aac tests bench example_dags demo docs/conf.py docs/_ext
	$(BIN)/ruff format --check airflow_provider_aac tests bench example_dags demo docs/conf.py docs/_ext
	$(BIN)/mypy airflow_provider_aac

test: venv services lint
	$(BIN)/pytest -p no:cacheprovider

compat: services
	bash scripts/compat.sh

docs: venv
	$(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html

demo: venv
	$(BIN)/python demo/run_demo.py

bench: venv services
	$(BIN)/python bench/token_overhead.py

clean:
	rm -rf $(VENV) .demo build docs/_build *.egg-info
