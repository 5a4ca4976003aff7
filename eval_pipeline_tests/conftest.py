"""Shared fixtures: a real local Spark session with Delta, and per-test MLflow and lakehouse."""

import json
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

from eval_pipeline.definitions import defs
from eval_pipeline.resources import SparkResource, build_resources, delta_jar_paths

# NOTE: Dagster 1.13 resolves a Definitions object through the state storage of the instance
# entered most recently, and in full test runs an instance closed out of order left a dead one
# behind ("Attempted to resolve undefined DagsterInstance weakref"). Resolving the code
# location once here, before any test instance exists, caches its repository.
defs.get_repository_def()

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def jars_dir() -> str:
    return os.environ.get("EVAL_PIPELINE_JARS_DIR", str(REPO_ROOT / "var" / "jars"))


@pytest.fixture(scope="session")
def spark_resource() -> SparkResource:
    """One Spark session for the whole test run; starting one takes several seconds."""
    delta_jar_paths(jars_dir())
    resource = SparkResource(jars_dir=jars_dir(), shuffle_partitions=2)
    resource.get_session()
    return resource


@pytest.fixture(scope="session")
def empty_mlflow_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store with its schema created; creating one takes a few seconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def environ(tmp_path, empty_mlflow_db) -> dict[str, str]:
    """Environment for build_resources that keeps all state inside the test's temp folder."""
    home = tmp_path / "home"
    (home / "mlflow").mkdir(parents=True)
    shutil.copyfile(empty_mlflow_db, home / "mlflow" / "mlflow.db")
    return {
        "EVAL_PIPELINE_HOME": str(home),
        "EVAL_PIPELINE_JARS_DIR": jars_dir(),
    }


@pytest.fixture
def make_resources(spark_resource, environ):
    """Return resources built from `environ` plus overrides, sharing the session's Spark."""

    def build(**overrides: str):
        resources = build_resources({**environ, **overrides})
        resources["spark"] = spark_resource
        return resources

    return build


SMALL_BENCHMARK = [
    ("sv-1", "SV", "Ese cipote no para de correr.", "cipote", "niño"),
    ("sv-2", "SV", "¿Dónde anda el cipote de tu tía?", "cipote", "niño"),
    ("sv-3", "SV", "¡Qué cipote más inquieto!", "cipote", "niño"),
    ("pe-1", "PE", "Vamos a mi jato después del trabajo.", "jato", "casa"),
    ("pe-2", "PE", "¿Tu jato queda cerca de la plaza?", "jato", "casa"),
    ("pe-3", "PE", "¡Qué bonito está tu jato!", "jato", "casa"),
    ("mx-1", "MX", "No tengo lana para el camión.", "lana", "dinero"),
    ("mx-2", "MX", "¿Cuánta lana ganaste esta semana?", "lana", "dinero"),
]


@pytest.fixture
def small_benchmark(tmp_path) -> Path:
    """A JSONL benchmark of 8 valid items (3 SV, 3 PE, 2 MX) and 3 invalid rows."""
    rows = [
        {
            "item_id": item_id,
            "region": region,
            "text": text,
            "term": term,
            "reference": reference,
            "task_type": "define_term",
        }
        for item_id, region, text, term, reference in SMALL_BENCHMARK
    ]
    invalid = [
        {**rows[0]},  # duplicate item_id
        {**rows[1], "item_id": "xx-1", "region": "XX"},
        {**rows[2], "item_id": "sv-9", "text": ""},
    ]
    path = tmp_path / "benchmark.jsonl"
    lines = [json.dumps(row, ensure_ascii=False) for row in [*rows, *invalid]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def instance(tmp_path):
    """A Dagster instance with SQLite storage in the test's temp folder."""
    folder = tmp_path / "dagster"
    folder.mkdir()
    with dg.instance_for_test(temp_dir=str(folder)) as test_instance:
        yield test_instance


# Gates that every model passes on the 8-item benchmark. Tests of the summaries use them, so
# blocking gate checks do not stop their runs. The gate tests use their own policies.
PERMISSIVE_POLICY = """
defaults:
  bound: point
  insufficient_evidence: report_only
  region_minimum: {min_n: 1, thresholds: {default: 0.0}}
  non_regression: {min_n: 1, margin: 0.99, n_resamples: 100}
  robustness: {tolerance: 1.0, min_n: 1}
  region_gap: {max_gap: 1.0, min_n: 1}
  latency: {p95_ms_max: 600000, min_n: 1}
  error_rate: {max: 1.0, min_n: 1}
"""


@pytest.fixture
def permissive_policy(tmp_path) -> Path:
    path = tmp_path / "permissive_policy.yaml"
    path.write_text(PERMISSIVE_POLICY, encoding="utf-8")
    return path
