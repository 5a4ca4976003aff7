# Everything installs into ./.venv and keeps its state under ./var (EVAL_PIPELINE_HOME).
SHELL := /bin/bash
PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
export EVAL_PIPELINE_HOME ?= $(CURDIR)/var
export DAGSTER_HOME ?= $(EVAL_PIPELINE_HOME)/dagster
# MLflow 3 and Dagster send usage telemetry unless told not to; the pipeline runs offline.
export MLFLOW_DISABLE_TELEMETRY ?= true
export DAGSTER_DISABLE_TELEMETRY ?= true
MLFLOW_DB := $(EVAL_PIPELINE_HOME)/mlflow/mlflow.db
DAGSTER_PORT ?= 3000
MLFLOW_PORT ?= 5000
DASHBOARD_PORT ?= 8050

.PHONY: setup system-packages demo monitoring-demo dashboard test test-fast lint ui mlflow-ui \
    benchmark clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv

# Installs the locked dependency tree, the package itself, and the Delta jars via Maven.
setup: $(BIN)/python
	$(BIN)/uv pip install --python $(BIN)/python --quiet -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --quiet --no-deps -e .
	mkdir -p $(DAGSTER_HOME) $(EVAL_PIPELINE_HOME)/mlflow
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/eval-pipeline fetch-jars
	$(BIN)/eval-pipeline init

demo: setup
	$(BIN)/eval-pipeline demo

# A week of synthetic traffic whose inputs drift from day 5, monitored day by day.
monitoring-demo: setup
	$(BIN)/eval-pipeline monitoring-demo

dashboard: setup
	$(BIN)/eval-pipeline dashboard --port $(DASHBOARD_PORT)

# Chromium and PostgreSQL are started by the slow browser and production-stack tests.
system-packages:
	bash scripts/install-system-packages.sh

test: setup system-packages
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

ui: setup
	$(BIN)/dagster dev -h 127.0.0.1 -p $(DAGSTER_PORT) -w workspace.yaml

mlflow-ui: setup
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --host 127.0.0.1 --port $(MLFLOW_PORT) \
		--backend-store-uri sqlite:///$(MLFLOW_DB) \
		--default-artifact-root file://$(EVAL_PIPELINE_HOME)/mlflow/artifacts

benchmark: setup
	$(BIN)/python benchmarks/partition_throughput.py

# Removes the Dagster, MLflow and Delta state; keeps .venv and the downloaded jars.
clean:
	rm -rf $(EVAL_PIPELINE_HOME)/dagster $(EVAL_PIPELINE_HOME)/mlflow $(EVAL_PIPELINE_HOME)/lakehouse
