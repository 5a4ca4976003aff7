"""Gold on a Spark standalone cluster gives the same item results as local mode.

The cluster is one master and one worker started from the installed pyspark on 127.0.0.1. The
cluster run goes through the command line in a subprocess, because a Python process can have
only one SparkContext and the test session's local one is already running.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pyspark
import pytest
import requests

from eval_pipeline.core.demo_models import EXPLAINER_MODEL, DemoModelSpec
from eval_pipeline.core.registry import register_demo_models
from eval_pipeline.ingestion.assets import benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.lakehouse import read_rows
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import packaged_benchmark_path
from eval_pipeline.results.assets import evaluation_summary, item_results
from eval_pipeline_tests.conftest import jars_dir

pytestmark = pytest.mark.slow

# Fuzzy lookup runs rapidfuzz on the executors, and the dropped outputs give empty_output rows.
MODEL_SPEC = DemoModelSpec(
    EXPLAINER_MODEL,
    "Glossary of 85% of the terms, fuzzy lookup, 5% empty answers",
    "glossary",
    glossary_share=0.85,
    fuzzy=True,
    empty_answer_share=0.05,
)
COMPARED_COLUMNS = ["output", "error_code", "exact_match", "passed"]
STARTUP_TIMEOUT_S = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spark_class_command(main_class: str, *args: str) -> list[str]:
    spark_home = Path(pyspark.__file__).parent
    return [str(spark_home / "bin" / "spark-class"), main_class, *args]


def stop_process_group(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


class StandaloneCluster:
    """A Spark standalone master and one worker with one core, bound to 127.0.0.1."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.master_port = free_port()
        self.master_ui_port = free_port()
        self.work_dir = folder / "work"
        self.processes: list[subprocess.Popen] = []

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def state(self) -> dict:
        response = requests.get(f"http://127.0.0.1:{self.master_ui_port}/json/", timeout=5)
        response.raise_for_status()
        return response.json()

    def finished_apps(self) -> list[dict]:
        """Return the completed applications once no application is active any more."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            state = self.state()
            # The master moves an application to completed when its driver disconnects.
            if not state["activeapps"] and state["completedapps"]:
                return state["completedapps"]
            time.sleep(1)
        raise TimeoutError(f"No finished application after {STARTUP_TIMEOUT_S} s: {state}")

    def _start(self, name: str, command: list[str]) -> None:
        env = {
            **os.environ,
            "SPARK_HOME": str(Path(pyspark.__file__).parent),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_DAEMON_MEMORY": "256m",
        }
        log = (self.folder / f"{name}.log").open("w")
        self.processes.append(
            subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )

    def start(self) -> None:
        self._start(
            "master",
            spark_class_command(
                "org.apache.spark.deploy.master.Master",
                "--host", "127.0.0.1",
                "--port", str(self.master_port),
                "--webui-port", str(self.master_ui_port),
            ),
        )  # fmt: skip
        self._start(
            "worker",
            spark_class_command(
                "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1",
                "--port", str(free_port()),
                "--webui-port", str(free_port()),
                "--cores", "1",
                "--memory", "1g",
                "--work-dir", str(self.work_dir),
                self.master_url,
            ),
        )  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.state()["aliveworkers"] == 1:
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        logs = {path.name: path.read_text()[-2000:] for path in self.folder.glob("*.log")}
        raise TimeoutError(f"Spark cluster not ready after {STARTUP_TIMEOUT_S} s: {logs}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process_group(process)


@pytest.fixture
def cluster(tmp_path):
    folder = tmp_path / "cluster"
    folder.mkdir()
    standalone = StandaloneCluster(folder)
    try:
        standalone.start()
        yield standalone
    finally:
        standalone.stop()


@pytest.fixture
def benchmark_subset(tmp_path) -> Path:
    """Every eighth item of the packaged benchmark: 29 items from SV, PE and MX."""
    lines = Path(packaged_benchmark_path()).read_text(encoding="utf-8").splitlines()
    path = tmp_path / "subset.jsonl"
    path.write_text("\n".join(lines[::8]) + "\n", encoding="utf-8")
    return path


def item_rows(spark, lakehouse_root: Path, partition_key: str):
    path = f"{lakehouse_root}/gold/item_results"
    frame = read_rows(spark, path, {"partition_key": partition_key}).toPandas()
    return frame.set_index(["item_id", "noise_level"]).sort_index()


def test_cluster_results_match_local_mode(
    cluster, make_resources, environ, instance, benchmark_subset, permissive_policy, tmp_path
):
    local_lakehouse = tmp_path / "local-lakehouse"
    resources = make_resources(
        EVAL_PIPELINE_DATASET_FILES=str(benchmark_subset),
        EVAL_PIPELINE_POLICY=str(permissive_policy),
        EVAL_PIPELINE_LAKEHOUSE=str(local_lakehouse),
    )
    settings = resources["mlflow"].settings
    items = resources["dataset"].ingest().accepted.to_dict("records")
    [ref] = register_demo_models(settings, items, specs=[MODEL_SPEC])

    instance.add_dynamic_partitions(model_versions_partitions.name, [ref.partition_key])
    upstream = dg.materialize(
        [benchmark_bronze, evaluation_items], resources=resources, instance=instance
    )
    assert upstream.success
    local = dg.materialize(
        [item_results, evaluation_summary],
        resources=resources,
        instance=instance,
        partition_key=ref.partition_key,
    )
    assert local.success

    cluster_lakehouse = tmp_path / "cluster-lakehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EVAL_PIPELINE_"))}
    env.update(
        {
            **environ,
            "DAGSTER_HOME": str(tmp_path / "cluster-dagster"),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "EVAL_PIPELINE_LAKEHOUSE": str(cluster_lakehouse),
            "EVAL_PIPELINE_DATASET_FILES": str(benchmark_subset),
            "EVAL_PIPELINE_POLICY": str(permissive_policy),
            "EVAL_PIPELINE_JARS_DIR": jars_dir(),
            "EVAL_PIPELINE_SPARK_MASTER": cluster.master_url,
            "EVAL_PIPELINE_SPARK_DRIVER_HOST": "127.0.0.1",
            "EVAL_PIPELINE_SPARK_DRIVER_MEMORY": "1g",
            "EVAL_PIPELINE_SPARK_EXECUTOR_MEMORY": "768m",
            "EVAL_PIPELINE_SPARK_CORES_MAX": "1",
        }
    )
    command = [sys.executable, "-m", "eval_pipeline.cli", "evaluate", "--model", ref.name]
    command += ["--version", ref.version, "--json"]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    [report] = json.loads(completed.stdout)
    assert report["partition_key"] == ref.partition_key

    # The master lists one finished application, and its only executor ran the tasks.
    apps = cluster.finished_apps()
    assert [app["name"] for app in apps] == ["eval_pipeline"]
    assert apps[0]["cores"] == 1
    app_dir = cluster.work_dir / apps[0]["id"]
    assert [path.name for path in app_dir.iterdir()] == ["0"]
    executor_log = (app_dir / "0" / "stderr").read_text()
    assert executor_log.count("Running task") > 0
    assert "PythonRunner" in executor_log

    spark = resources["spark"].get_session()
    local_rows = item_rows(spark, local_lakehouse, ref.partition_key)
    cluster_rows = item_rows(spark, cluster_lakehouse, ref.partition_key)
    assert len(local_rows) == 29 * 4
    assert cluster_rows.index.tolist() == local_rows.index.tolist()
    for column in COMPARED_COLUMNS:
        differing = local_rows[column].compare(cluster_rows[column])
        assert differing.empty, f"{column} differs between local and cluster:\n{differing}"
    assert local_rows["passed"].sum() > 0
    assert (~local_rows["passed"]).sum() > 0
    assert (local_rows["error_code"] == "empty_output").sum() > 0
