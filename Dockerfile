# Image of the eval_pipeline code location. docker-compose.yml also runs the MLflow server, the
# Dagster webserver and the Dagster daemon from it, because they need the same locked packages.
FROM python:3.11-slim-bookworm

# Java 17 runs Spark; Spark's launch scripts call `ps` from procps.
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DAGSTER_DISABLE_TELEMETRY=true

WORKDIR /opt/eval_pipeline
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && pip install --no-cache-dir uv \
    && uv pip install --no-cache -r requirements.lock

COPY pyproject.toml README.md ./
COPY eval_pipeline ./eval_pipeline
RUN uv pip install --no-cache --no-deps .
# Policy files are read relative to the working folder (EVAL_PIPELINE_POLICY and the like).
COPY *_policy.yaml ./

# Maven downloads the Delta jars that match the installed delta-spark, then goes away again.
ENV EVAL_PIPELINE_JARS_DIR=/opt/eval_pipeline/jars
RUN apt-get update \
    && apt-get install -y --no-install-recommends maven \
    && eval-pipeline fetch-jars \
    && apt-get purge -y --auto-remove maven \
    && rm -rf /var/lib/apt/lists/* /root/.m2

# The named volumes of docker-compose.yml are mounted on these folders and take their owner.
RUN useradd --create-home --uid 1000 eval \
    && mkdir -p /var/lib/eval_pipeline/lakehouse /var/lib/mlflow/artifacts /opt/dagster/home/storage \
    && chown -R eval /var/lib/eval_pipeline /var/lib/mlflow /opt/dagster/home
COPY deploy/dagster.yaml /opt/dagster/home/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/workspace.yaml

# Spark's Python workers run PYSPARK_PYTHON; an external cluster's workers need this path too.
ENV DAGSTER_HOME=/opt/dagster/home \
    EVAL_PIPELINE_HOME=/var/lib/eval_pipeline \
    PYSPARK_PYTHON=/opt/venv/bin/python
USER eval
