"""The production topology: docker-compose.yml, deploy/ and scripts/production_stack.py.

The fast tests check that the compose file is well formed and that the script starts the same
commands, ports and environment variables. The slow test starts the stack without Docker and
runs a registry-to-promotion cycle through it.
"""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval_pipeline.jobs import ENGINE_TAG, SPARK_ENGINE
from eval_pipeline_tests.conftest import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SCRIPT = REPO_ROOT / "scripts" / "production_stack.py"
CONTAINER_WORKSPACE = "/opt/dagster/workspace.yaml"
COMPOSE_SERVICES = {"postgres", "mlflow", "code-server", "webserver", "daemon"}


def load_script():
    spec = importlib.util.spec_from_file_location("production_stack", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up in sys.modules while the class body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stack = load_script()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture
def local_state(tmp_path):
    """A stack state with distinct made-up ports; nothing is started."""
    state = stack.StackState(
        folder=str(tmp_path), postgres_folder=str(tmp_path / "pg"), postgres_password="secret"
    )
    state.ports = {"postgres": 15432, "mlflow": 15000, "code-server": 14000, "webserver": 13000}
    return state


def compose_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_compose_has_every_service(compose):
    assert set(compose["services"]) == COMPOSE_SERVICES
    assert {service.name for service in stack.SERVICES} == COMPOSE_SERVICES - {"postgres"}


def test_compose_publishes_only_webserver_on_loopback(compose):
    services = compose["services"]
    published = {name: spec["ports"] for name, spec in services.items() if "ports" in spec}
    assert list(published) == ["webserver"]
    for mapping in published["webserver"]:
        assert mapping.startswith("127.0.0.1:"), mapping
        assert mapping.rsplit(":", 1)[1] == "3000"


def test_compose_postgres_has_health_check(compose):
    postgres = compose["services"]["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD")
    for name in ("mlflow", "code-server", "webserver", "daemon"):
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name


def test_compose_commands_match_script(compose):
    for service in stack.SERVICES:
        expected = service.argv("0.0.0.0", service.compose_port, CONTAINER_WORKSPACE)
        assert compose["services"][service.name]["command"] == expected, service.name


def test_compose_environment_matches_script(compose, local_state):
    for service in stack.SERVICES:
        compose_names = set(compose["services"][service.name]["environment"])
        script_names = set(stack.service_environment(service.name, local_state, caller={}))
        assert compose_names == script_names, service.name


def test_compose_ports_match_script(compose):
    ports = {service.name: service.compose_port for service in stack.SERVICES}
    code_server = compose["services"]["code-server"]["environment"]
    assert code_server["DAGSTER_CODE_SERVER_PORT"] == str(ports["code-server"])
    assert code_server["DAGSTER_POSTGRES_PORT"] == str(stack.POSTGRES_COMPOSE_PORT)
    assert code_server["MLFLOW_TRACKING_URI"] == f"http://mlflow:{ports['mlflow']}"
    mlflow_uri = compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert f"@postgres:{stack.POSTGRES_COMPOSE_PORT}/{stack.MLFLOW_DB}" in mlflow_uri
    assert code_server["DAGSTER_POSTGRES_DB"] == stack.DAGSTER_DB


def test_compose_variables_are_in_env_example():
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text(encoding="utf-8")))
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert used - defined == set()
    ignored = (REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in ignored


def test_compose_config_accepted_by_docker():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker client is not installed, so `docker compose config` cannot run")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True)
    if version.returncode != 0:
        reason = version.stderr.strip().splitlines()[0]
        pytest.skip(f"the docker client has no compose plugin ({reason})")
    completed = subprocess.run(
        [docker, "compose", "--env-file", ".env.example", "config", "--quiet"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 0, completed.stderr


def test_instance_config_reads_script_variables(local_state):
    config = compose_yaml(REPO_ROOT / "deploy" / "dagster.yaml")
    storage = dict(config["storage"]["postgres"]["postgres_db"])
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed.
    assert storage.pop("scheme") == "postgresql+psycopg2"
    names = {value["env"] for value in storage.values()}
    workspace = compose_yaml(REPO_ROOT / "deploy" / "workspace.yaml")
    server = workspace["load_from"][0]["grpc_server"]
    names |= {server["host"]["env"], server["port"]["env"]}
    assert names == set(stack.dagster_instance_environment(local_state))


def test_instance_config_limits_spark_runs():
    config = compose_yaml(REPO_ROOT / "deploy" / "dagster.yaml")
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    [limit] = coordinator["config"]["tag_concurrency_limits"]
    assert limit["key"] == ENGINE_TAG
    assert limit["value"] == SPARK_ENGINE[ENGINE_TAG]
    assert limit["limit"] < coordinator["config"]["max_concurrent_runs"]
    assert config["run_launcher"]["class"] == "DefaultRunLauncher"


def test_top_level_instance_stays_embedded():
    config = compose_yaml(REPO_ROOT / "dagster.yaml")
    assert "storage" not in config
    assert "run_launcher" not in config


def test_dockerfile_copies_existing_files():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-" in dockerfile
    assert "openjdk-17-jre-headless" in dockerfile
    assert "-r requirements.lock" in dockerfile
    assert "eval-pipeline fetch-jars" in dockerfile
    sources = re.findall(r"^COPY (\S+)", dockerfile, flags=re.MULTILINE)
    sources += re.findall(r"^COPY \S+ (\S+) \./$", dockerfile, flags=re.MULTILINE)
    for source in sources:
        assert list(REPO_ROOT.glob(source)), f"Dockerfile copies {source}, which does not exist"
    assert "deploy/dagster.yaml" in sources
    assert "deploy/workspace.yaml" in sources


def run_script(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_stack_cycle_promotes_and_blocks(tmp_path):
    folder = tmp_path / "stack"
    try:
        started = run_script(
            "start", "--state", str(folder), "--watched-models", "regional-explainer",
            timeout=900,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-5000:]
        urls = json.loads(started.stdout)
        assert urls["dagster"].startswith("http://127.0.0.1:")
        pids = json.loads((folder / "stack.json").read_text())["pids"]
        assert set(pids) == {service.name for service in stack.SERVICES}

        cycle = run_script("run-cycle", "--state", str(folder), "--timeout", "1800", timeout=2000)
        assert cycle.returncode == 0, cycle.stderr[-5000:]
        summary = json.loads(cycle.stdout)
    finally:
        cleaned = run_script("clean", "--state", str(folder), timeout=300)
    assert cleaned.returncode == 0, cleaned.stderr[-3000:]
    assert not folder.exists()
    assert [name for name, pid in pids.items() if alive(pid)] == []

    assert summary["outcomes"] == {
        "models:/regional-explainer/1": "blocked",
        "models:/regional-explainer/2": "promoted",
    }
    assert summary["aliases"]["regional-explainer"]["champion"] == "2"
    runs = {(run["job"], run["partition"]): run for run in summary["runs"]}
    refresh = runs[("benchmark_refresh_job", None)]
    assert refresh["status"] == "SUCCESS"
    assert refresh["sensor"] == "benchmark_dataset_sensor"
    for version, status in (("1", "FAILURE"), ("2", "SUCCESS")):
        partition = f"regional-explainer--v{version}"
        evaluation = runs[("model_evaluation_job", partition)]
        assert evaluation["sensor"] == "model_registry_sensor"
        assert evaluation["status"] == status
        promotion = runs[("promotion_job", partition)]
        assert promotion["status"] == "SUCCESS"
        assert promotion["sensor"].startswith("promote_after_")
