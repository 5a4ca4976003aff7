"""Run the production topology of docker-compose.yml without Docker, on 127.0.0.1.

    .venv/bin/python scripts/production_stack.py start --state DIR
    .venv/bin/python scripts/production_stack.py run-cycle --state DIR
    .venv/bin/python scripts/production_stack.py stop --state DIR
    .venv/bin/python scripts/production_stack.py clean --state DIR

`start` installs PostgreSQL from Debian's packages when it is missing, creates a cluster, and
starts Postgres, the MLflow tracking server, the eval_pipeline gRPC code server, the Dagster
webserver and the Dagster daemon on free ports of 127.0.0.1. They use deploy/dagster.yaml and
deploy/workspace.yaml, the commands and variable names of docker-compose.yml, and keep their
state and logs in the state folder. `run-cycle` registers two demo model versions through the
MLflow server. It waits until the sensors have evaluated both, the gates have decided and the
promotion job has acted on each decision, then prints a JSON summary. `stop` stops every
process that `start` started, and `clean` also deletes the state folder and the Postgres
cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests

logger = logging.getLogger("production_stack")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY = REPO_ROOT / "deploy"
INSTANCE_CONFIG = DEPLOY / "dagster.yaml"
WORKSPACE = DEPLOY / "workspace.yaml"
CREATE_DATABASES_SQL = DEPLOY / "postgres" / "create-databases.sql"
INSTALL_PACKAGES = REPO_ROOT / "scripts" / "install-system-packages.sh"
STATE_FILE = "stack.json"
HOST = "127.0.0.1"
POSTGRES_USER = "eval_pipeline"
DAGSTER_DB = "dagster"
MLFLOW_DB = "mlflow"
STARTUP_TIMEOUT_S = 240
STOP_TIMEOUT_S = 30
# Variables that would point the services at other stores than the ones started here.
CALLER_PREFIXES = ("MLFLOW_", "EVAL_PIPELINE_", "DAGSTER_")
# Code server settings that pass through from the caller, with docker-compose.yml's defaults,
# so the same stack can, for example, drive a Spark cluster.
PASSTHROUGH_DEFAULTS = {
    "EVAL_PIPELINE_WATCH_TAG": "",
    "EVAL_PIPELINE_NIGHTLY_CRON": "0 2 * * *",
    "EVAL_PIPELINE_SPARK_MASTER": "",
    "EVAL_PIPELINE_SPARK_DRIVER_HOST": "",
    "EVAL_PIPELINE_SPARK_DRIVER_MEMORY": "2g",
    "EVAL_PIPELINE_SPARK_EXECUTOR_MEMORY": "",
    "EVAL_PIPELINE_SPARK_CORES_MAX": "0",
}


class StackError(RuntimeError):
    """Raised when a service of the stack fails to start or the cycle does not finish."""


@dataclass(frozen=True)
class Service:
    """One process of the stack, named as its service in docker-compose.yml."""

    name: str
    command: tuple[str, ...]
    """Arguments with `{host}`, `{port}` and `{workspace}` placeholders."""
    compose_port: int | None
    """Port inside the compose network. This script picks a free port instead."""

    def argv(self, host: str, port: int | None, workspace: str) -> list[str]:
        return [part.format(host=host, port=port, workspace=workspace) for part in self.command]


SERVICES = (
    Service(
        "mlflow",
        ("mlflow", "server", "--serve-artifacts", "--workers", "2", "--host", "{host}",
         "--port", "{port}"),
        5000,
    ),
    Service(
        "code-server",
        ("dagster", "api", "grpc", "-m", "eval_pipeline.definitions", "-h", "{host}",
         "-p", "{port}"),
        4000,
    ),
    Service(
        "webserver",
        ("dagster-webserver", "-h", "{host}", "-p", "{port}", "-w", "{workspace}"),
        3000,
    ),
    Service("daemon", ("dagster-daemon", "run", "-w", "{workspace}"), None),
)  # fmt: skip
POSTGRES_COMPOSE_PORT = 5432


@dataclass
class StackState:
    """Ports, secrets, folders and process ids of one stack, kept in `<state>/stack.json`."""

    folder: str
    postgres_folder: str
    postgres_password: str
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    watched_models: str = ""
    sensor_interval: int = 5
    postgres_user: str = POSTGRES_USER

    @property
    def path(self) -> Path:
        return Path(self.folder)

    def url(self, service: str) -> str:
        return f"http://{HOST}:{self.ports[service]}"

    def save(self) -> None:
        target = self.path / STATE_FILE
        target.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        # The file contains the Postgres password.
        target.chmod(0o600)

    @classmethod
    def load(cls, folder: Path) -> StackState:
        path = folder / STATE_FILE
        if not path.is_file():
            raise StackError(f"No stack state in {folder}: run `start --state {folder}` first.")
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def dagster_instance_environment(state: StackState) -> dict[str, str]:
    """Return the variables that deploy/dagster.yaml and deploy/workspace.yaml read."""
    return {
        "DAGSTER_POSTGRES_HOST": HOST,
        "DAGSTER_POSTGRES_PORT": str(state.ports["postgres"]),
        "DAGSTER_POSTGRES_USER": state.postgres_user,
        "DAGSTER_POSTGRES_PASSWORD": state.postgres_password,
        "DAGSTER_POSTGRES_DB": DAGSTER_DB,
        "DAGSTER_CODE_SERVER_HOST": HOST,
        "DAGSTER_CODE_SERVER_PORT": str(state.ports["code-server"]),
    }


def service_environment(
    name: str, state: StackState, caller: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the variables that docker-compose.yml sets for service `name`, with local values."""
    caller = os.environ if caller is None else caller
    if name == "mlflow":
        database = f"{HOST}:{state.ports['postgres']}/{MLFLOW_DB}"
        return {
            "MLFLOW_BACKEND_STORE_URI": (
                f"postgresql+psycopg2://{state.postgres_user}:{state.postgres_password}@{database}"
            ),
            "MLFLOW_ARTIFACTS_DESTINATION": str(state.path / "mlflow-artifacts"),
            "MLFLOW_SERVER_ALLOWED_HOSTS": f"{HOST},{HOST}:*,localhost,localhost:*",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    if name == "code-server":
        return {
            **dagster_instance_environment(state),
            "MLFLOW_TRACKING_URI": state.url("mlflow"),
            "EVAL_PIPELINE_MLFLOW_ARTIFACTS": "mlflow-artifacts:/",
            "EVAL_PIPELINE_LAKEHOUSE": str(state.path / "lakehouse"),
            "EVAL_PIPELINE_WATCHED_MODELS": state.watched_models,
            "EVAL_PIPELINE_SENSOR_INTERVAL": str(state.sensor_interval),
            **{name: caller.get(name, default) for name, default in PASSTHROUGH_DEFAULTS.items()},
        }
    if name in ("webserver", "daemon"):
        return dagster_instance_environment(state)
    raise ValueError(f"Unknown service {name!r}: expected one of {[s.name for s in SERVICES]}.")


def process_environment(name: str, state: StackState) -> dict[str, str]:
    """Return the whole environment of a service process.

    The Dockerfile sets DAGSTER_HOME, EVAL_PIPELINE_HOME and the jars folder in the image. Here
    they point into the state folder and at the jars that `make setup` downloaded.
    """
    caller = {k: v for k, v in os.environ.items() if not k.startswith(CALLER_PREFIXES)}
    jars = os.environ.get("EVAL_PIPELINE_JARS_DIR", str(REPO_ROOT / "var" / "jars"))
    return {
        **caller,
        "DAGSTER_HOME": str(state.path / "dagster-home"),
        "DAGSTER_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "EVAL_PIPELINE_HOME": str(state.path / "home"),
        "EVAL_PIPELINE_JARS_DIR": jars,
        **service_environment(name, state),
    }


def free_ports(count: int) -> list[int]:
    """Return `count` distinct ports of 127.0.0.1 that were free a moment ago."""
    probes = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind((HOST, 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def wait_until(check: Callable[[], bool], what: str, process=None, log: Path | None = None):
    """Poll `check` until it returns True, or raise StackError on timeout or a dead process."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(
                f"{what} exited with code {process.returncode} while starting. "
                f"Its log {log} ends with:\n{tail(log)}"
            )
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(1)
    raise StackError(f"{what} timed out after {STARTUP_TIMEOUT_S} s. Its log {log}:\n{tail(log)}")


def tail(path: Path | None, characters: int = 3000) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    return path.read_text(encoding="utf-8", errors="replace")[-characters:]


# PostgreSQL


def postgres_bin_dir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3])
    )
    return candidates[-1].parent if candidates else None


def ensure_postgres_installed() -> Path:
    """Return the folder of the PostgreSQL server programs, installing them when missing."""
    found = postgres_bin_dir()
    if found is not None:
        return found
    logger.info("PostgreSQL server programs not found; installing the Debian package")
    subprocess.run(["bash", str(INSTALL_PACKAGES), "postgresql"], check=True)
    found = postgres_bin_dir()
    if found is None:
        raise StackError(
            "PostgreSQL is still missing from /usr/lib/postgresql/*/bin after installing it; "
            "install Debian's postgresql package and run `start` again."
        )
    return found


def postgres_runner() -> list[str]:
    """Return the command prefix that runs PostgreSQL programs as a user other than root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError(
            "PostgreSQL cannot run as root, and the `postgres` user is missing. Install "
            "Debian's postgresql package (it creates the user) or run this script as another "
            "user."
        ) from None
    return ["runuser", "-u", "postgres", "--"]


def postgres_folder(state_folder: Path, runner: list[str]) -> Path:
    """Return a folder for the cluster that the user running PostgreSQL can write."""
    folder = state_folder / "postgres"
    folder.mkdir(parents=True, exist_ok=True)
    if not runner:
        return folder
    shutil.chown(folder, "postgres", "postgres")
    if subprocess.run([*runner, "test", "-w", str(folder)]).returncode == 0:
        return folder
    # As root, a state folder below a private parent (pytest's temp folders are mode 700) is
    # out of the postgres user's reach, so the cluster goes to a folder of its own.
    folder.rmdir()
    outside = Path(tempfile.mkdtemp(prefix="eval-pipeline-postgres-"))
    shutil.chown(outside, "postgres", "postgres")
    return outside


def init_postgres(state: StackState, bin_dir: Path, runner: list[str]) -> None:
    folder = Path(state.postgres_folder)
    if (folder / "data" / "PG_VERSION").is_file():
        return
    password_file = folder / "password"
    password_file.write_text(state.postgres_password + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    if runner:
        shutil.chown(password_file, "postgres", "postgres")
    command = [
        *runner, str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", state.postgres_user,
        "--pwfile", str(password_file), "--auth", "scram-sha-256", "--encoding", "UTF8",
        "--no-locale",
    ]  # fmt: skip
    try:
        completed = subprocess.run(command, capture_output=True, text=True)
    finally:
        password_file.unlink()
    if completed.returncode != 0:
        raise StackError(f"initdb failed (exit code {completed.returncode}):\n{completed.stderr}")


def start_postgres(state: StackState, bin_dir: Path, runner: list[str]) -> None:
    folder = Path(state.postgres_folder)
    # TCP on loopback only, and no Unix socket, whose default folder may not exist.
    options = f"-c listen_addresses={HOST} -c port={state.ports['postgres']} "
    options += "-c unix_socket_directories=''"
    command = [
        *runner, str(bin_dir / "pg_ctl"), "-D", str(folder / "data"),
        "-l", str(folder / "postgres.log"), "-w", "-t", "120", "-o", options, "start",
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise StackError(
            f"pg_ctl start failed (exit code {completed.returncode}): {completed.stderr}\n"
            f"{tail(folder / 'postgres.log')}"
        )
    logger.info("Started PostgreSQL on %s:%d", HOST, state.ports["postgres"])


def create_databases(state: StackState) -> None:
    """Run deploy/postgres/create-databases.sql, skipping databases that already exist."""
    import psycopg2
    import psycopg2.errors

    connection = psycopg2.connect(
        host=HOST,
        port=state.ports["postgres"],
        user=state.postgres_user,
        password=state.postgres_password,
        dbname="postgres",
    )
    connection.autocommit = True
    lines = CREATE_DATABASES_SQL.read_text(encoding="utf-8").splitlines()
    script = "\n".join(line for line in lines if not line.lstrip().startswith("--"))
    try:
        with connection.cursor() as cursor:
            for statement in filter(None, (part.strip() for part in script.split(";"))):
                try:
                    cursor.execute(statement)
                except psycopg2.errors.DuplicateDatabase:
                    logger.info("Database exists already: %s", statement)
    finally:
        connection.close()


def stop_postgres(state: StackState) -> None:
    data = Path(state.postgres_folder) / "data"
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (data / "postmaster.pid").is_file():
        return
    command = [*postgres_runner(), str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast"]
    completed = subprocess.run([*command, "-w", "stop"], capture_output=True, text=True)
    if completed.returncode != 0:
        logger.error(
            "pg_ctl stop failed (exit code %d): %s", completed.returncode, completed.stderr
        )
    else:
        logger.info("Stopped PostgreSQL")


# Services


def executable(name: str) -> str:
    """Return the program from this interpreter's environment, so the venv's packages run."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else name


def start_service(service: Service, state: StackState) -> subprocess.Popen:
    port = state.ports.get(service.name)
    argv = service.argv(HOST, port, str(WORKSPACE))
    argv[0] = executable(argv[0])
    log_path = state.path / "logs" / f"{service.name}.log"
    with log_path.open("ab") as log:
        # A session of its own makes the service and its children (run workers, Spark
        # drivers) one process group that `stop` can signal at once.
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=process_environment(service.name, state),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state.pids[service.name] = process.pid
    state.save()
    logger.info("Started %s (pid %d, port %s, log %s)", service.name, process.pid, port, log_path)
    return process


def graphql(state: StackState, query: str) -> dict:
    response = requests.post(f"{state.url('webserver')}/graphql", json={"query": query}, timeout=30)
    response.raise_for_status()
    payload = response.json()
    if payload.get("errors"):
        raise StackError(f"GraphQL query failed: {payload['errors']}")
    return payload["data"]


DAEMON_HEALTH_QUERY = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


def daemons_healthy(state: StackState) -> bool:
    statuses = graphql(state, DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]
    required = [s for s in statuses["allDaemonStatuses"] if s["required"]]
    return bool(required) and all(s["healthy"] for s in required)


def readiness_check(service: Service, state: StackState) -> Callable[[], bool]:
    if service.name == "mlflow":
        return lambda: requests.get(f"{state.url('mlflow')}/health", timeout=5).ok
    if service.name == "code-server":
        command = [executable("dagster"), "api", "grpc-health-check", "-h", HOST]
        command += ["-p", str(state.ports["code-server"])]
        return lambda: subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    if service.name == "webserver":
        return lambda: requests.get(f"{state.url('webserver')}/server_info", timeout=5).ok
    return lambda: daemons_healthy(state)


def start(folder: Path, watched_models: str, sensor_interval: int) -> StackState:
    """Start Postgres and every service of SERVICES, and stop all of them when one fails."""
    folder = folder.resolve()
    if (folder / STATE_FILE).is_file():
        state = StackState.load(folder)
        if any(pid_alive(pid) for pid in state.pids.values()):
            raise StackError(f"The stack in {folder} is running; run `stop` first.")
        state.watched_models, state.sensor_interval = watched_models, sensor_interval
    else:
        folder.mkdir(parents=True, exist_ok=True)
        state = StackState(
            folder=str(folder),
            postgres_folder="",
            postgres_password=secrets.token_hex(16),
            watched_models=watched_models,
            sensor_interval=sensor_interval,
        )
    for sub in ("logs", "dagster-home", "home", "lakehouse", "mlflow-artifacts"):
        (folder / sub).mkdir(exist_ok=True)
    shutil.copyfile(INSTANCE_CONFIG, folder / "dagster-home" / "dagster.yaml")
    names = ["postgres", *(s.name for s in SERVICES if s.compose_port is not None)]
    state.ports = dict(zip(names, free_ports(len(names)), strict=True))

    bin_dir = ensure_postgres_installed()
    runner = postgres_runner()
    if not state.postgres_folder:
        state.postgres_folder = str(postgres_folder(folder, runner))
    state.save()
    try:
        init_postgres(state, bin_dir, runner)
        start_postgres(state, bin_dir, runner)
        create_databases(state)
        for service in SERVICES:
            process = start_service(service, state)
            log = folder / "logs" / f"{service.name}.log"
            wait_until(readiness_check(service, state), service.name, process, log)
            logger.info("%s is ready", service.name)
    except BaseException:
        stop(state)
        raise
    return state


# Stopping


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def descendants(pid: int) -> list[int]:
    """Return the ids of every process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces; the parent id follows it.
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def signal_quietly(pid: int, signum: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def stop_process_tree(name: str, pid: int) -> None:
    """Stop a service's process group and any descendant that left it, SIGKILL after a wait."""
    tree = [pid, *descendants(pid)]
    signal_quietly(pid, signal.SIGTERM, group=True)
    for member in tree[1:]:
        signal_quietly(member, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and any(pid_alive(member) for member in tree):
        reap(tree)
        time.sleep(0.5)
    survivors = [member for member in tree if pid_alive(member)]
    if survivors:
        logger.warning("%s still running after SIGTERM; sending SIGKILL to %s", name, survivors)
        signal_quietly(pid, signal.SIGKILL, group=True)
        for member in survivors:
            signal_quietly(member, signal.SIGKILL)
        reap(tree)
    logger.info("Stopped %s (pid %d)", name, pid)


def reap(pids: list[int]) -> None:
    """Collect exit statuses of our own children, so they do not linger as zombies."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def stop(state: StackState) -> None:
    """Stop the services in reverse start order, then Postgres."""
    for service in reversed(SERVICES):
        pid = state.pids.pop(service.name, None)
        if pid is not None and pid_alive(pid):
            stop_process_tree(service.name, pid)
    state.save()
    if state.postgres_folder:
        stop_postgres(state)


def clean(folder: Path) -> None:
    folder = folder.resolve()
    if (folder / STATE_FILE).is_file():
        state = StackState.load(folder)
        stop(state)
        if state.postgres_folder and Path(state.postgres_folder).exists():
            shutil.rmtree(state.postgres_folder)
    if folder.exists():
        shutil.rmtree(folder)
    logger.info("Removed %s", folder)


# The cycle


RUNS_QUERY = """
{ runsOrError(limit: 200) { ... on Runs { results {
    runId jobName status startTime endTime tags { key value } } } } }
"""
FINISHED_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")


def dagster_runs(state: StackState) -> list[dict]:
    runs = []
    results = graphql(state, RUNS_QUERY)["runsOrError"]["results"]
    # A queued run has no start time yet.
    for run in sorted(results, key=lambda run: run["startTime"] or float("inf")):
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        duration = None
        if run["startTime"] and run["endTime"]:
            duration = round(run["endTime"] - run["startTime"], 1)
        runs.append(
            {
                "job": run["jobName"],
                "status": run["status"],
                "partition": tags.get("dagster/partition"),
                "sensor": tags.get("dagster/sensor_name"),
                "trigger": tags.get("eval_pipeline/trigger"),
                "duration_s": duration,
                "run_id": run["runId"],
            }
        )
    return runs


def run_cycle(state: StackState, timeout_s: int) -> dict:
    """Register demo versions, then wait until promotion has acted on each one's decision."""
    from eval_pipeline.core.demo_models import DEMO_MODEL_SPECS
    from eval_pipeline.core.promotion import OUTCOME_TAG
    from eval_pipeline.core.registry import MlflowSettings, register_demo_models
    from eval_pipeline.resources import build_resources

    started = time.monotonic()
    settings = MlflowSettings(
        tracking_uri=state.url("mlflow"),
        registry_uri=state.url("mlflow"),
        experiment_name="eval_pipeline",
        artifact_location="mlflow-artifacts:/",
    )
    # The glossary models are built from the benchmark that the code server evaluates.
    dataset = build_resources({"EVAL_PIPELINE_HOME": str(state.path / "home")})["dataset"]
    items = dataset.ingest().accepted.to_dict("records")
    # The weak first and the strong second version of the demo model.
    specs = [spec for spec in DEMO_MODEL_SPECS if spec.kind == "glossary"][:2]
    # MLflow prints links to the logged runs on stdout, which carries only the JSON summary.
    with contextlib.redirect_stdout(sys.stderr):
        refs = register_demo_models(settings, items, specs=specs)
    registered = ", ".join(ref.uri for ref in refs)
    logger.info("Registered %s through %s", registered, settings.tracking_uri)

    client = settings.client()
    outcomes: dict[str, str | None] = {}
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        outcomes = {
            ref.uri: client.get_model_version(ref.name, ref.version).tags.get(OUTCOME_TAG)
            for ref in refs
        }
        runs = dagster_runs(state)
        active = [run for run in runs if run["status"] not in FINISHED_STATUSES]
        if all(outcomes.values()) and not active:
            break
        logger.info(
            "Waiting: outcomes %s; runs %s",
            outcomes,
            [f"{run['job']}[{run['partition']}]={run['status']}" for run in runs],
        )
        time.sleep(10)
    else:
        raise StackError(
            f"The cycle did not finish within {timeout_s} s: outcomes {outcomes}; Dagster runs "
            f"{json.dumps(dagster_runs(state), indent=2)}. The logs are in {state.path / 'logs'} "
            "and the run logs in the Dagster UI at " + state.url("webserver")
        )

    aliases = {}
    for name in sorted({ref.name for ref in refs}):
        aliases[name] = dict(client.get_registered_model(name).aliases)
    return {
        "duration_s": round(time.monotonic() - started, 1),
        "outcomes": outcomes,
        "aliases": aliases,
        "runs": dagster_runs(state),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "run-cycle", "stop", "clean"])
    parser.add_argument("--state", type=Path, required=True, help="folder of the stack's state")
    parser.add_argument(
        "--watched-models",
        default="",
        help="comma-separated models the registry sensor watches (default: every model)",
    )
    parser.add_argument(
        "--sensor-interval", type=int, default=5, help="seconds between sensor ticks (start)"
    )
    parser.add_argument(
        "--timeout", type=int, default=1800, help="seconds run-cycle waits for the outcomes"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "start":
            state = start(args.state, args.watched_models, args.sensor_interval)
            print(json.dumps({"dagster": state.url("webserver"), "mlflow": state.url("mlflow")}))
        elif args.command == "run-cycle":
            summary = run_cycle(StackState.load(args.state.resolve()), args.timeout)
            print(json.dumps(summary, indent=2))
        elif args.command == "stop":
            stop(StackState.load(args.state.resolve()))
        else:
            clean(args.state)
    except StackError as error:
        logger.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
