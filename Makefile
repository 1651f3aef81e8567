# summ-assets: two commands on a fresh machine.
#   make demo   the whole graph, end to end, offline (demo profile, CPU, ~15 min first run)
#   make test   lint + format check + the whole test suite (tiny profile; what CI runs)
#   make test-fast  lint + format check + the unit tests (not marked slow; about 3 min): the edit loop
#   make eval-full  after make demo: every model on every example (the evaluation_report_full asset)
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_PROGRESS_BARS := 1
export TRANSFORMERS_VERBOSITY := error
export TOKENIZERS_PARALLELISM := false
export PYTHONUNBUFFERED := 1

.PHONY: demo eval-full test test-fast ui refresh report setup lint bench clean-instance

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster_home/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster_home/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: setup
	/usr/bin/time -v $(BIN)/summ-assets demo 2> >(tee .demo-time.log | grep -E "Elapsed|Maximum resident" >&2)

# every test example scored (the README headline); reuses the demo's models and cached generations
eval-full: setup
	/usr/bin/time -v $(BIN)/summ-assets eval-full 2> >(tee .eval-full-time.log | grep -E "Elapsed|Maximum resident" >&2)

refresh: setup
	$(BIN)/summ-assets refresh

report: setup
	$(BIN)/summ-assets report

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

test: setup lint
	$(BIN)/python -m pytest -q

test-fast: setup lint
	$(BIN)/python -m pytest -q -m "not slow"

# the tests not marked slow (no model training, no Dagster materialization, no server)

ui: setup
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

bench: setup
	for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean-instance:
	rm -rf $(DAGSTER_HOME) artifacts
