"""Dagster resources: the Spark session, Delta table locations, MLflow and the benchmark source.

Every location has an embedded default under one project-local home folder (`./var`, or
`EVAL_PIPELINE_HOME`) and can be moved with an environment variable, so the same definitions
run on a laptop with no services and against shared servers.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from functools import cached_property
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_pyspark import LazyPySparkResource
from pydantic import Field, PrivateAttr

from eval_pipeline.core.ingest import (
    SPANISH_SPEAKING_REGIONS,
    SUPPORTED_SUFFIXES,
    BenchmarkSourceError,
    IngestionResult,
    current_dataset_version,
    ingest_files,
)
from eval_pipeline.core.monitoring_policy import LoadedMonitoringPolicy, load_monitoring_policy
from eval_pipeline.core.noise import DEFAULT_NOISE_SPECS, NoiseSpec
from eval_pipeline.core.policy import LoadedPolicy, load_policy
from eval_pipeline.core.prompts import PromptTemplate, get_template
from eval_pipeline.core.registry import MlflowSettings

SETUP_COMMAND = "make setup"
SCALA_BINARY_VERSION = "2.13"


class DeltaJarsMissingError(RuntimeError):
    """Raised when the Delta Lake jars for the installed delta-spark are not on disk."""


def project_home() -> Path:
    """Return the folder that contains the embedded Dagster, MLflow and Delta state."""
    return Path(os.environ.get("EVAL_PIPELINE_HOME", "var")).expanduser().resolve()


def delta_jar_names() -> list[str]:
    """Return the jar file names that match the installed delta-spark Python package."""
    version = importlib.metadata.version("delta-spark")
    return [f"delta-spark_{SCALA_BINARY_VERSION}-{version}.jar", f"delta-storage-{version}.jar"]


def delta_jar_paths(jars_dir: str | Path) -> list[Path]:
    """Return the Delta jars in `jars_dir`, or raise naming the missing files and the fix."""
    folder = Path(jars_dir).expanduser().resolve()
    paths = [folder / name for name in delta_jar_names()]
    missing = [path.name for path in paths if not path.is_file()]
    if missing:
        raise DeltaJarsMissingError(
            f"Delta Lake jars {missing} are missing from {folder}. Run `{SETUP_COMMAND}` (or "
            f"`eval-pipeline fetch-jars --jars-dir {folder}`) to download them with Maven; Spark "
            "is pointed at these local files and downloads nothing itself."
        )
    return paths


class SparkConnectUnavailableError(RuntimeError):
    """Raised when a Spark Connect address is configured but its client packages are missing."""


# MLflow reads credentials for an authenticated tracking server from these variables. They are
# copied from the driver's environment to the executors when the session starts, so they never
# appear in the resource configuration that the Dagster UI shows. Spark's UI redacts the values
# of the password and token variables (its default spark.redaction.regex matches them).
MLFLOW_CREDENTIAL_VARIABLES = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


class SparkResource(dg.ConfigurableResource):
    """A Spark session with Delta Lake: local mode, a cluster by master URL, or Spark Connect.

    With `master` (default `local[2]`) this process is the Spark driver. The Delta jars come
    from `jars_dir`, filled by the setup step, so starting a session never resolves packages
    over the network, and the driver ships them to a cluster's executors. With `remote` (a
    `sc://host:port` address) the session is a Spark Connect client, and the server must
    already have Delta Lake and this package installed.
    """

    master: str = "local[2]"
    remote: str = ""
    """Spark Connect address such as `sc://spark-connect:15002`, used instead of `master`."""
    jars_dir: str
    app_name: str = "eval_pipeline"
    driver_memory: str = "2g"
    driver_host: str = ""
    """Address the executors use to reach the driver (127.0.0.1 in local mode when empty)."""
    executor_memory: str = ""
    """Heap of each executor, such as `2g`. Empty keeps the cluster's default."""
    executor_cores: int = 0
    """Cores of each executor. 0 keeps the cluster's default."""
    cores_max: int = 0
    """Cores a run may take from a standalone cluster. 0 takes every core it is offered."""
    python_executable: str = ""
    """Interpreter of the executors' Python workers. Empty uses this process's interpreter."""
    executor_env: dict[str, str] = Field(default_factory=dict)
    """Environment variables set on every executor and its Python workers."""
    shuffle_partitions: int = 4
    ui_enabled: bool = False
    extra_config: dict[str, str] = Field(default_factory=dict)

    _session: Any = PrivateAttr(default=None)

    @property
    def is_local(self) -> bool:
        return not self.remote and self.master.startswith("local")

    def runtime_config(self) -> dict[str, str]:
        """Return the SQL settings that a session can change after it starts."""
        return {
            "spark.sql.shuffle.partitions": str(self.shuffle_partitions),
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        }

    def executor_environment(self) -> dict[str, str]:
        """Return `executor_env` plus the MLflow credentials set in this process."""
        credentials = {
            name: os.environ[name] for name in MLFLOW_CREDENTIAL_VARIABLES if name in os.environ
        }
        return {**credentials, **self.executor_env}

    def spark_config(self) -> dict[str, str]:
        """Return the configuration of a session whose driver runs in this process."""
        jars = ",".join(str(path) for path in delta_jar_paths(self.jars_dir))
        config = {
            "spark.master": self.master,
            "spark.app.name": self.app_name,
            "spark.jars": jars,
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            "spark.driver.memory": self.driver_memory,
            **self.runtime_config(),
            "spark.ui.enabled": str(self.ui_enabled).lower(),
            "spark.ui.showConsoleProgress": "false",
        }
        if self.is_local:
            # Local mode binds the driver to loopback only; Spark's default is every interface.
            config["spark.driver.bindAddress"] = "127.0.0.1"
            config["spark.driver.host"] = "127.0.0.1"
        if self.driver_host:
            # Spark binds the driver to spark.driver.host unless spark.driver.bindAddress is set.
            config["spark.driver.host"] = self.driver_host
        if self.executor_memory:
            config["spark.executor.memory"] = self.executor_memory
        if self.executor_cores:
            config["spark.executor.cores"] = str(self.executor_cores)
        if self.cores_max:
            config["spark.cores.max"] = str(self.cores_max)
        for name, value in self.executor_environment().items():
            config[f"spark.executorEnv.{name}"] = value
        return {**config, **self.extra_config}

    def get_session(self):
        """Return the process-wide session, creating it on first use (about 6 s locally)."""
        if self._session is None:
            self._session = self._connect() if self.remote else self._start_driver()
        return self._session

    def _start_driver(self):
        # Without SPARK_LOCAL_IP, Spark resolves this host's address itself and, when the host
        # name maps to loopback, picks the first non-loopback interface instead.
        if self.is_local:
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        elif self.driver_host:
            os.environ.setdefault("SPARK_LOCAL_IP", self.driver_host)
        # PySpark sends the PYSPARK_PYTHON path with every Python function, and executors
        # start their Python workers with it, so on a cluster it must exist on every worker.
        # Without it they run `python3`, which lacks pandas and this package.
        if self.python_executable:
            os.environ["PYSPARK_PYTHON"] = self.python_executable
        else:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        spark = LazyPySparkResource(spark_config=self.spark_config()).spark_session
        spark.sparkContext.setLogLevel("WARN")
        return spark

    def _connect(self):
        from pyspark.sql import SparkSession
        from pyspark.sql.connect.utils import check_dependencies

        try:
            check_dependencies("pyspark.sql.connect.session")
        except ImportError as error:
            raise SparkConnectUnavailableError(
                f"Spark Connect address {self.remote!r} is configured, but the Spark Connect "
                f"client cannot load: {error}. Install grpcio-status and "
                "googleapis-common-protos (they are not in requirements.lock), or unset "
                "EVAL_PIPELINE_SPARK_REMOTE to start a driver in this process."
            ) from error
        builder = SparkSession.builder.remote(self.remote).appName(self.app_name)
        for key, value in self.runtime_config().items():
            builder = builder.config(key, value)
        return builder.getOrCreate()


class LakehouseResource(dg.ConfigurableResource):
    """Root folder (or object-store URI) of the Bronze, Silver and Gold Delta tables."""

    root: str

    def table_path(self, layer: str, table: str) -> str:
        return f"{self.root.rstrip('/')}/{layer}/{table}"


class MlflowResource(dg.ConfigurableResource):
    """MLflow tracking server and model registry used for evaluation runs.

    dagster-mlflow's `mlflow_tracking` resource opens one MLflow run per Dagster run and is a
    legacy function-style resource. Here one MLflow run belongs to one evaluation (model version
    x dataset version) that several assets and later re-materializations add to, so this
    resource keeps the URIs and the assets open that run by its evaluation key.
    """

    tracking_uri: str
    registry_uri: str = ""
    experiment_name: str = "eval_pipeline"
    artifact_location: str

    @cached_property
    def settings(self) -> MlflowSettings:
        return MlflowSettings(
            tracking_uri=self.tracking_uri,
            registry_uri=self.registry_uri or self.tracking_uri,
            experiment_name=self.experiment_name,
            artifact_location=self.artifact_location,
        )


class BenchmarkDatasetResource(dg.ConfigurableResource):
    """The benchmark files to ingest and how their rows become evaluation items."""

    name: str = "regional_es"
    files: list[str] = Field(default_factory=list)
    landing_dir: str = ""
    """Folder whose CSV, JSONL and Parquet files form the dataset; used instead of `files`."""
    allowed_regions: list[str] = Field(default_factory=lambda: list(SPANISH_SPEAKING_REGIONS))
    field_defaults: dict[str, str] = Field(default_factory=dict)
    prompt_template: str = "define_term@1"
    noise_seed: int = 0

    def validate_name(self) -> None:
        """Raise unless the name fits MLflow tag keys and Delta partition paths."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(
                f"Invalid dataset name {self.name!r}: expected letters, digits, '_', '.' or '-' "
                "(starting with a letter or digit); set EVAL_PIPELINE_DATASET_NAME accordingly."
            )

    def source_files(self) -> list[str]:
        """Return the benchmark files: every supported file in `landing_dir`, else `files`."""
        if not self.landing_dir:
            return list(self.files)
        folder = Path(self.landing_dir).expanduser()
        if not folder.is_dir():
            raise BenchmarkSourceError(
                f"Benchmark landing folder {str(folder)!r} does not exist; create it and put "
                "CSV, JSONL or Parquet benchmark files in it, or unset EVAL_PIPELINE_DATASET_DIR."
            )
        files = sorted(
            str(path)
            for path in folder.iterdir()
            if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES
        )
        if not files:
            raise BenchmarkSourceError(
                f"Benchmark landing folder {str(folder)!r} contains no files ending in "
                f"{sorted(SUPPORTED_SUFFIXES)}; add the benchmark files there."
            )
        return files

    def ingest(self) -> IngestionResult:
        self.validate_name()
        return ingest_files(
            self.name,
            self.source_files(),
            allowed_regions=self.allowed_regions,
            field_defaults=self.field_defaults,
        )

    def current_version(self) -> str:
        """Return the content hash that Bronze records for the configured files."""
        self.validate_name()
        return current_dataset_version(
            self.source_files(), self.allowed_regions, self.field_defaults
        )

    @property
    def template(self) -> PromptTemplate:
        return get_template(self.prompt_template)

    @property
    def noise_specs(self) -> tuple[NoiseSpec, ...]:
        return DEFAULT_NOISE_SPECS


class GatePolicyResource(dg.ConfigurableResource):
    """The YAML gate policy that decides whether a model version may be promoted."""

    path: str = "gate_policy.yaml"

    def load(self) -> LoadedPolicy:
        return load_policy(self.path)


class PromotionResource(dg.ConfigurableResource):
    """Registry aliases that a passing version receives, and whether production needs approval."""

    challenger_alias: str = "challenger"
    champion_alias: str = "champion"
    require_approval: bool = False


class MonitoringResource(dg.ConfigurableResource):
    """Where production request logs land, the monitoring policy, and the dashboard folder."""

    traffic_dir: str
    """Landing folder of request logs, one `<YYYY-MM-DD>` sub-folder per request date."""
    trace_experiment: str = ""
    """MLflow experiment whose traces the served model logs; empty reads no traces."""
    policy_path: str = "monitoring_policy.yaml"
    dashboard_dir: str

    def load_policy(self) -> LoadedMonitoringPolicy:
        return load_monitoring_policy(self.policy_path)


class AutomationResource(dg.ConfigurableResource):
    """The registered models that the registry sensor and the nightly schedule watch.

    With neither a list nor a tag, every registered model is watched.
    """

    watched_models: list[str] = Field(default_factory=list)
    watch_tag: str = ""
    """A `key=value` registered-model tag; models carrying it are watched too."""

    def tag_filter(self) -> tuple[str, str] | None:
        """Return the watch tag as (key, value), or None when no tag is configured."""
        if not self.watch_tag:
            return None
        key, separator, value = self.watch_tag.partition("=")
        if not separator or not key.strip():
            raise ValueError(
                f"Invalid watch tag {self.watch_tag!r} in EVAL_PIPELINE_WATCH_TAG: expected "
                "key=value, for example 'eval_pipeline.watch=true'."
            )
        return key.strip(), value.strip()


def _automation_resource(env: dict[str, str]) -> AutomationResource:
    automation = AutomationResource(
        watched_models=_split_list(env.get("EVAL_PIPELINE_WATCHED_MODELS", "")),
        watch_tag=env.get("EVAL_PIPELINE_WATCH_TAG", ""),
    )
    # A malformed tag fails the code location load, not only each sensor tick.
    automation.tag_filter()
    return automation


def sensor_interval_seconds(environ: dict[str, str] | None = None) -> int:
    """Return the sensors' minimum interval between ticks (EVAL_PIPELINE_SENSOR_INTERVAL)."""
    env = dict(os.environ if environ is None else environ)
    seconds = _parse_int(env, "EVAL_PIPELINE_SENSOR_INTERVAL", "30")
    if seconds < 1:
        raise ValueError(
            f"Invalid EVAL_PIPELINE_SENSOR_INTERVAL {seconds}: expected at least 1 second."
        )
    return seconds


def packaged_benchmark_path() -> str:
    return str(package_files.files("eval_pipeline") / "datasets" / "regional_es.jsonl")


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_int(env: dict[str, str], name: str, default: str) -> int:
    value = env.get(name, default)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"Invalid integer {value!r} in {name}: expected a whole number.") from None


def _parse_pairs(value: str) -> dict[str, str]:
    pairs = {}
    for part in _split_list(value):
        key, separator, item = part.partition("=")
        if not separator or not key.strip():
            raise ValueError(
                f"Invalid field default {part!r} in EVAL_PIPELINE_DATASET_DEFAULTS: expected "
                "comma-separated key=value pairs such as 'task_type=define_term'."
            )
        pairs[key.strip()] = item.strip()
    return pairs


def _parse_bool(value: str) -> bool:
    normalized = value.strip().lower()
    if normalized in ("1", "true", "yes", "on"):
        return True
    if normalized in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(
        f"Invalid boolean {value!r} in EVAL_PIPELINE_REQUIRE_APPROVAL: expected true or false."
    )


def _parse_count(env: dict[str, str], name: str) -> int:
    count = _parse_int(env, name, "0")
    if count < 0:
        raise ValueError(f"Invalid {name} {count}: expected 0 (the cluster's default) or more.")
    return count


def spark_resource_from_env(env: dict[str, str], home: Path, tracking_uri: str) -> SparkResource:
    """Return the Spark resource configured by the EVAL_PIPELINE_SPARK_* variables."""
    master = env.get("EVAL_PIPELINE_SPARK_MASTER", "")
    remote = env.get("EVAL_PIPELINE_SPARK_REMOTE", "")
    if master and remote:
        raise ValueError(
            f"Both EVAL_PIPELINE_SPARK_MASTER ({master!r}) and EVAL_PIPELINE_SPARK_REMOTE "
            f"({remote!r}) are set; set the master URL to run the driver here, or the Spark "
            "Connect address to use a remote driver, not both."
        )
    registry_uri = env.get("MLFLOW_REGISTRY_URI", "") or tracking_uri
    return SparkResource(
        master=master or "local[2]",
        remote=remote,
        jars_dir=env.get("EVAL_PIPELINE_JARS_DIR", str(home / "jars")),
        driver_memory=env.get("EVAL_PIPELINE_SPARK_DRIVER_MEMORY", "2g"),
        driver_host=env.get("EVAL_PIPELINE_SPARK_DRIVER_HOST", ""),
        executor_memory=env.get("EVAL_PIPELINE_SPARK_EXECUTOR_MEMORY", ""),
        executor_cores=_parse_count(env, "EVAL_PIPELINE_SPARK_EXECUTOR_CORES"),
        cores_max=_parse_count(env, "EVAL_PIPELINE_SPARK_CORES_MAX"),
        python_executable=env.get("EVAL_PIPELINE_SPARK_PYTHON", ""),
        # The inference closure carries both URIs already; the variables also reach model code
        # that calls MLflow itself on an executor.
        executor_env={"MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": registry_uri},
    )


def build_resources(environ: dict[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """Return the resources configured from environment variables, with embedded defaults."""
    env = dict(os.environ if environ is None else environ)
    home = Path(env.get("EVAL_PIPELINE_HOME", "var")).expanduser().resolve()
    tracking_uri = env.get("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    dataset_files = _split_list(env.get("EVAL_PIPELINE_DATASET_FILES", ""))
    regions = _split_list(env.get("EVAL_PIPELINE_DATASET_REGIONS", ""))
    return {
        "spark": spark_resource_from_env(env, home, tracking_uri),
        "lakehouse": LakehouseResource(
            root=env.get("EVAL_PIPELINE_LAKEHOUSE", str(home / "lakehouse"))
        ),
        "mlflow": MlflowResource(
            tracking_uri=tracking_uri,
            registry_uri=env.get("MLFLOW_REGISTRY_URI", ""),
            experiment_name=env.get("EVAL_PIPELINE_MLFLOW_EXPERIMENT", "eval_pipeline"),
            artifact_location=env.get(
                "EVAL_PIPELINE_MLFLOW_ARTIFACTS", (home / "mlflow" / "artifacts").as_uri()
            ),
        ),
        "dataset": BenchmarkDatasetResource(
            name=env.get("EVAL_PIPELINE_DATASET_NAME", "regional_es"),
            files=dataset_files or [packaged_benchmark_path()],
            landing_dir=env.get("EVAL_PIPELINE_DATASET_DIR", ""),
            allowed_regions=[r.upper() for r in regions] or list(SPANISH_SPEAKING_REGIONS),
            field_defaults=_parse_pairs(env.get("EVAL_PIPELINE_DATASET_DEFAULTS", "")),
            prompt_template=env.get("EVAL_PIPELINE_PROMPT_TEMPLATE", "define_term@1"),
            noise_seed=_parse_int(env, "EVAL_PIPELINE_NOISE_SEED", "0"),
        ),
        "policy": GatePolicyResource(path=env.get("EVAL_PIPELINE_POLICY", "gate_policy.yaml")),
        "promotion": PromotionResource(
            challenger_alias=env.get("EVAL_PIPELINE_CHALLENGER_ALIAS", "challenger"),
            champion_alias=env.get("EVAL_PIPELINE_CHAMPION_ALIAS", "champion"),
            require_approval=_parse_bool(env.get("EVAL_PIPELINE_REQUIRE_APPROVAL", "false")),
        ),
        "monitoring": MonitoringResource(
            traffic_dir=env.get("EVAL_PIPELINE_TRAFFIC_DIR", str(home / "traffic")),
            trace_experiment=env.get("EVAL_PIPELINE_TRACE_EXPERIMENT", ""),
            policy_path=env.get("EVAL_PIPELINE_MONITORING_POLICY", "monitoring_policy.yaml"),
            dashboard_dir=env.get("EVAL_PIPELINE_DASHBOARD_DIR", str(home / "dashboard")),
        ),
        "automation": _automation_resource(env),
    }
