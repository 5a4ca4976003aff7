import pytest

from eval_pipeline.resources import DeltaJarsMissingError, SparkResource, delta_jar_names


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
