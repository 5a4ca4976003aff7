"""Shared fixtures: a real local Spark session with Delta, and per-test MLflow and lakehouse."""

import os
from pathlib import Path

import pytest

from eval_pipeline.resources import SparkResource, build_resources, delta_jar_paths

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


@pytest.fixture
def environ(tmp_path) -> dict[str, str]:
    """Environment for build_resources that keeps all state inside the test's temp folder."""
    return {
        "EVAL_PIPELINE_HOME": str(tmp_path / "home"),
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
