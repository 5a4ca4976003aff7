import importlib.util

import pytest

from eval_pipeline.resources import (
    DeltaJarsMissingError,
    SparkConnectUnavailableError,
    SparkResource,
    build_resources,
    delta_jar_names,
)


def test_missing_jars_error_names_setup_command(tmp_path):
    resource = SparkResource(jars_dir=str(tmp_path))
    with pytest.raises(DeltaJarsMissingError, match="make setup") as error:
        resource.spark_config()
    for name in delta_jar_names():
        assert name in str(error.value)
    assert str(tmp_path) in str(error.value)


def test_jar_names_match_delta_version():
    import importlib.metadata

    version = importlib.metadata.version("delta-spark")
    assert delta_jar_names() == [f"delta-spark_2.13-{version}.jar", f"delta-storage-{version}.jar"]


def test_local_spark_binds_loopback(tmp_path):
    for name in delta_jar_names():
        (tmp_path / name).write_bytes(b"")
    config = SparkResource(jars_dir=str(tmp_path)).spark_config()
    assert config["spark.driver.bindAddress"] == "127.0.0.1"
    assert config["spark.ui.enabled"] == "false"
    assert config["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert all(path.startswith(str(tmp_path)) for path in config["spark.jars"].split(","))


def test_cluster_master_keeps_default_bind(tmp_path):
    for name in delta_jar_names():
        (tmp_path / name).write_bytes(b"")
    resource = SparkResource(jars_dir=str(tmp_path), master="spark://127.0.0.1:7077")
    assert "spark.driver.bindAddress" not in resource.spark_config()


def fake_jars(folder):
    for name in delta_jar_names():
        (folder / name).write_bytes(b"")
    return str(folder)


def test_cluster_settings_reach_spark_config(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "token-from-driver")
    resource = SparkResource(
        jars_dir=fake_jars(tmp_path),
        master="spark://127.0.0.1:7077",
        driver_host="10.0.0.5",
        executor_memory="4g",
        executor_cores=2,
        cores_max=8,
        executor_env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    )
    config = resource.spark_config()
    assert config["spark.driver.host"] == "10.0.0.5"
    assert "spark.driver.bindAddress" not in config
    assert config["spark.executor.memory"] == "4g"
    assert config["spark.executor.cores"] == "2"
    assert config["spark.cores.max"] == "8"
    assert config["spark.executorEnv.MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert config["spark.executorEnv.MLFLOW_TRACKING_TOKEN"] == "token-from-driver"


def test_unset_executor_settings_keep_cluster_defaults(tmp_path):
    config = SparkResource(jars_dir=fake_jars(tmp_path), master="spark://h:7077").spark_config()
    for key in ("spark.executor.memory", "spark.executor.cores", "spark.cores.max"):
        assert key not in config


def test_build_resources_reads_spark_variables(tmp_path):
    spark = build_resources(
        {
            "EVAL_PIPELINE_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "EVAL_PIPELINE_SPARK_MASTER": "spark://spark-master:7077",
            "EVAL_PIPELINE_SPARK_DRIVER_HOST": "code-server",
            "EVAL_PIPELINE_SPARK_EXECUTOR_MEMORY": "3g",
            "EVAL_PIPELINE_SPARK_EXECUTOR_CORES": "2",
            "EVAL_PIPELINE_SPARK_CORES_MAX": "6",
            "EVAL_PIPELINE_SPARK_PYTHON": "/opt/venv/bin/python",
        }
    )["spark"]
    assert spark.master == "spark://spark-master:7077"
    assert spark.driver_host == "code-server"
    assert (spark.executor_memory, spark.executor_cores, spark.cores_max) == ("3g", 2, 6)
    assert spark.python_executable == "/opt/venv/bin/python"
    assert spark.executor_env == {
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "MLFLOW_REGISTRY_URI": "http://mlflow:5000",
    }


def test_empty_master_means_local_mode(tmp_path):
    # docker-compose.yml passes the variable through empty when .env leaves it unset.
    environ = {"EVAL_PIPELINE_HOME": str(tmp_path), "EVAL_PIPELINE_SPARK_MASTER": ""}
    spark = build_resources(environ)["spark"]
    assert spark.master == "local[2]"
    assert spark.is_local


def test_master_and_remote_together_rejected(tmp_path):
    environ = {
        "EVAL_PIPELINE_HOME": str(tmp_path),
        "EVAL_PIPELINE_SPARK_MASTER": "spark://a:7077",
        "EVAL_PIPELINE_SPARK_REMOTE": "sc://b:15002",
    }
    with pytest.raises(ValueError, match="not both"):
        build_resources(environ)


def test_negative_core_count_rejected(tmp_path):
    environ = {"EVAL_PIPELINE_HOME": str(tmp_path), "EVAL_PIPELINE_SPARK_CORES_MAX": "-1"}
    with pytest.raises(ValueError, match="EVAL_PIPELINE_SPARK_CORES_MAX -1"):
        build_resources(environ)


def test_spark_connect_sets_only_runtime_settings(tmp_path):
    resource = SparkResource(jars_dir=str(tmp_path), remote="sc://127.0.0.1:15002")
    assert not resource.is_local
    assert all(key.startswith("spark.sql.") for key in resource.runtime_config())


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def test_spark_connect_names_missing_client_packages(tmp_path):
    if installed("grpc_status") and installed("google.rpc"):
        pytest.skip("the Spark Connect client packages are installed, so none is missing")
    # Port 1 on loopback: the check must fail before any connection attempt.
    resource = SparkResource(jars_dir=str(tmp_path), remote="sc://127.0.0.1:1")
    with pytest.raises(SparkConnectUnavailableError, match="grpcio-status"):
        resource.get_session()


def test_malformed_watch_tag_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="Invalid watch tag 'novalue'"):
        build_resources({"EVAL_PIPELINE_HOME": str(tmp_path), "EVAL_PIPELINE_WATCH_TAG": "novalue"})
