"""Evaluation and deployment gates for LLM model versions on regional Spanish benchmarks."""

import os

# MLflow 3 sends usage telemetry over HTTPS from `import mlflow` unless this is set before the
# import. The pipeline runs offline by default; set MLFLOW_DISABLE_TELEMETRY=false to opt in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
