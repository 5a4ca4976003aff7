"""The local system as users run it: dagster-daemon and the webserver on 127.0.0.1.

A version registered through MLflow is evaluated by the sensor-triggered run and promoted or
blocked without any other action. The tests read the runs through the webserver's GraphQL API
and open the UI in headless Chromium.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from eval_pipeline.automation.webserver import DagsterWebserverClient
from eval_pipeline.core.demo_models import DEMO_MODEL_SPECS
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.promotion import OUTCOME_TAG, REASONS_TAG, alias_version
from eval_pipeline.core.registry import register_demo_models
from eval_pipeline.resources import build_resources
from eval_pipeline_tests.conftest import REPO_ROOT, jars_dir

pytestmark = pytest.mark.slow

STRONG_SPEC, WEAK_SPEC = DEMO_MODEL_SPECS[1], DEMO_MODEL_SPECS[0]
MODEL = STRONG_SPEC.registered_name
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalSystem:
    """A webserver and a daemon started for one test module, stopped with their children."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []
        dagster_home = root / "dagster"
        dagster_home.mkdir(parents=True)
        shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "EVAL_"))},
            "DAGSTER_HOME": str(dagster_home),
            "EVAL_PIPELINE_HOME": str(root / "home"),
            "EVAL_PIPELINE_JARS_DIR": jars_dir(),
            "EVAL_PIPELINE_POLICY": str(REPO_ROOT / "gate_policy.yaml"),
            "EVAL_PIPELINE_WATCHED_MODELS": MODEL,
            "EVAL_PIPELINE_SENSOR_INTERVAL": "5",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DAGSTER_DISABLE_TELEMETRY": "true",
        }
        self.resources = build_resources(self.env)
        self.client = DagsterWebserverClient(self.url)

    def _start(self, name: str, command: list[str]) -> None:
        log = (self.root / f"{name}.log").open("w")
        # A new session gives each server its own process group, so stopping the group also
        # stops the code servers and run workers it started.
        self.processes.append(
            subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def start(self) -> None:
        # As `make setup` does, create the MLflow and Dagster SQLite schemas first, because the
        # webserver, the daemon and this process would otherwise create them at the same moment.
        bin_dir = Path(sys.executable).parent
        subprocess.run(
            [str(bin_dir / "eval-pipeline"), "init"],
            cwd=REPO_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        workspace = str(REPO_ROOT / "workspace.yaml")
        self._start(
            "webserver",
            [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(self.port),
             "-w", workspace],
        )  # fmt: skip
        self._start("daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace])
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/server_info", timeout=5).status_code == 200:
                    self.client.find_job("model_evaluation_job")
                    return
            except Exception:
                pass
            self._check_alive()
            time.sleep(2)
        raise TimeoutError(f"The webserver did not start within 300 s:\n{self.log_tails()}")

    def log_tails(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text()[-3000:]}"
            for path in sorted(self.root.glob("*.log"))
        )

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{process.args[0]} exited with {process.returncode}:\n{self.log_tails()}"
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        for process in self.processes:
            # Run workers are in the same group and may outlive their parent briefly.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    def wait_for_run(self, job_name: str, partition_key: str, timeout: float = 600) -> dict:
        """Return the first finished run of `job_name` for a partition, read through GraphQL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.client.runs(job_name):
                finished = run["status"] in ("SUCCESS", "FAILURE", "CANCELED")
                if run["tags"].get("dagster/partition") == partition_key and finished:
                    return run
            self._check_alive()
            time.sleep(3)
        runs = self.client.runs()
        raise TimeoutError(
            f"No finished {job_name} run for {partition_key} within {timeout:.0f} s; "
            f"runs: {[(r['jobName'], r['status']) for r in runs]}\n{self.log_tails()}"
        )


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    local = LocalSystem(tmp_path_factory.mktemp("local-system"))
    try:
        local.start()
        yield local
    finally:
        local.stop()


def register(system: LocalSystem, spec) -> ModelVersionRef:
    settings = system.resources["mlflow"].settings
    items = system.resources["dataset"].ingest().accepted.to_dict("records")
    (ref,) = register_demo_models(settings, items, specs=[spec])
    return ref


def check_results(system: LocalSystem, run_id: str) -> dict[str, str]:
    query = """
    query Checks($runId: ID!) {
      runOrError(runId: $runId) {
        ... on Run {
          assetCheckSelection { name }
          stepStats { stepKey status }
        }
      }
      assetCheckExecutions: assetNodes(assetKeys: [{path: ["gold", "eval_summary"]}]) {
        assetChecksOrError {
          ... on AssetChecks {
            checks { name executionForLatestMaterialization { runId status } }
          }
        }
      }
    }
    """
    data = system.client.execute(query, {"runId": run_id})
    checks = data["assetCheckExecutions"][0]["assetChecksOrError"]["checks"]
    return {
        check["name"]: check["executionForLatestMaterialization"]["status"]
        for check in checks
        if check["executionForLatestMaterialization"]
        and check["executionForLatestMaterialization"]["runId"] == run_id
    }


def test_registered_version_is_evaluated_and_promoted(system):
    ref = register(system, STRONG_SPEC)

    evaluation = system.wait_for_run("model_evaluation_job", ref.partition_key)
    promotion = system.wait_for_run("promotion_job", ref.partition_key)

    assert evaluation["status"] == "SUCCESS"
    assert evaluation["tags"]["eval_pipeline/trigger"] == "registry"
    assert promotion["status"] == "SUCCESS"
    assert promotion["tags"]["eval_pipeline/evaluation_run_id"] == evaluation["runId"]
    checks = check_results(system, evaluation["runId"])
    assert len(checks) == 6
    assert set(checks.values()) == {"SUCCEEDED"}
    settings = system.resources["mlflow"].settings
    assert alias_version(settings, MODEL, "champion") == ref.version


def test_weak_version_is_blocked(system):
    ref = register(system, WEAK_SPEC)

    evaluation = system.wait_for_run("model_evaluation_job", ref.partition_key)
    promotion = system.wait_for_run("promotion_job", ref.partition_key)

    assert evaluation["status"] == "FAILURE"
    assert promotion["status"] == "SUCCESS"
    assert "FAILED" in check_results(system, evaluation["runId"]).values()
    settings = system.resources["mlflow"].settings
    tags = settings.client().get_model_version(MODEL, ref.version).tags
    assert tags[OUTCOME_TAG] == "blocked"
    assert "region_minimum" in tags[REASONS_TAG]
    assert alias_version(settings, MODEL, "champion") != ref.version


def test_command_line_backfill_queues_runs(system):
    command = [
        str(Path(sys.executable).parent / "eval-pipeline"),
        "backfill", "--model", MODEL, "--versions", "1", "--webserver", system.url,
        "--wait", "--timeout", "600",
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=system.env, capture_output=True, text=True, timeout=900
    )

    assert completed.returncode == 0, completed.stderr
    assert "queued 1 evaluation run(s)" in completed.stdout
    assert "SUCCESS" in completed.stdout
    runs = [
        run
        for run in system.client.runs("model_evaluation_job")
        if run["tags"].get("eval_pipeline/trigger") == "backfill"
    ]
    assert len(runs) == 1
    assert runs[0]["tags"].get("dagster/backfill")


def test_backfill_rejects_unregistered_versions(system):
    command = [
        str(Path(sys.executable).parent / "eval-pipeline"),
        "backfill", "--model", MODEL, "--versions", "1-9", "--webserver", system.url,
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO_ROOT, env=system.env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 2
    assert "are not registered" in completed.stderr


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_ui_renders_asset_graph_and_partitions(system, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    shots = tmp_path_factory.mktemp("screenshots")
    keys = [ModelVersionRef(MODEL, v).partition_key for v in ("1", "2")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(
                f"{system.url}/locations/eval_pipeline/asset-groups/gold",
                wait_until="networkidle",
            )
            # A fresh instance greets the first visitor with a newsletter dialog over the graph.
            skip = page.get_by_role("button", name="Skip")
            if skip.count():
                skip.click()
            for asset in ("item_results", "eval_summary", "robustness_gaps", "gate_decisions"):
                page.get_by_text(asset, exact=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "asset-graph.png"))

            page.goto(
                f"{system.url}/assets/gold/item_results?view=partitions",
                wait_until="networkidle",
            )
            for key in keys:
                page.get_by_text(key).first.wait_for(timeout=60_000)
            page.screenshot(path=str(shots / "partitions.png"))
        finally:
            browser.close()
    assert (shots / "asset-graph.png").stat().st_size > 10_000
    assert (shots / "partitions.png").stat().st_size > 10_000
