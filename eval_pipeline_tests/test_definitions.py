import dagster as dg

from eval_pipeline.definitions import defs
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import build_resources

EXPECTED_ASSETS = {
    dg.AssetKey(["bronze", "benchmark_samples"]),
    dg.AssetKey(["bronze", "benchmark_quarantine"]),
    dg.AssetKey(["silver", "evaluation_items"]),
    dg.AssetKey(["gold", "item_results"]),
    dg.AssetKey(["gold", "eval_summary"]),
    dg.AssetKey(["gold", "robustness_gaps"]),
    dg.AssetKey(["gold", "gate_decisions"]),
}


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_every_asset_is_defined():
    graph = defs.resolve_asset_graph()
    assert set(graph.get_all_asset_keys()) >= EXPECTED_ASSETS


def test_gold_is_partitioned_by_model_version():
    graph = defs.resolve_asset_graph()
    for key in EXPECTED_ASSETS:
        partitions = graph.get(key).partitions_def
        if key.path[0] == "gold":
            assert partitions == model_versions_partitions, key
        else:
            assert partitions is None, key


def test_layers_are_chained():
    graph = defs.resolve_asset_graph()
    silver = dg.AssetKey(["silver", "evaluation_items"])
    assert dg.AssetKey(["bronze", "benchmark_samples"]) in graph.get(silver).parent_keys
    assert silver in graph.get(dg.AssetKey(["gold", "item_results"])).parent_keys


def test_jobs_defined():
    names = {job.name for job in defs.resolve_all_job_defs()}
    assert {"benchmark_refresh_job", "model_evaluation_job", "promotion_job"} <= names


def test_jobs_resolve():
    for name in ("benchmark_refresh_job", "model_evaluation_job", "promotion_job"):
        assert defs.resolve_job_def(name).name == name


def test_automation_is_defined():
    repository = defs.get_repository_def()
    sensors = {sensor.name: sensor for sensor in repository.sensor_defs}
    schedules = {schedule.name: schedule for schedule in repository.schedule_defs}
    assert set(sensors) >= {
        "model_registry_sensor",
        "benchmark_dataset_sensor",
        "evaluate_champions_after_refresh",
        "promote_after_evaluation",
        "promote_after_failed_evaluation",
    }
    assert sensors["model_registry_sensor"].default_status == dg.DefaultSensorStatus.RUNNING
    nightly = schedules["nightly_champion_regression"]
    assert nightly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert nightly.execution_timezone == "UTC"
    daily = schedules["daily_monitoring_job_schedule"]
    assert daily.default_status == dg.DefaultScheduleStatus.STOPPED


def test_evaluation_runs_are_queued_one_at_a_time():
    for name in ("benchmark_refresh_job", "model_evaluation_job", "daily_monitoring_job"):
        assert defs.resolve_job_def(name).tags["eval_pipeline/engine"] == "spark"


def test_evaluation_job_runs_gate_checks():
    job = defs.resolve_job_def("model_evaluation_job")
    keys = job.asset_layer.asset_graph.asset_check_keys
    names = {key.name for key in keys}
    assert {"gate_region_minimum", "gate_non_regression", "gate_error_rate"} <= names


def test_every_asset_has_description():
    graph = defs.resolve_asset_graph()
    for key in EXPECTED_ASSETS:
        assert graph.get(key).description, key


def test_resources_default_under_home(tmp_path):
    resources = build_resources({"EVAL_PIPELINE_HOME": str(tmp_path)})
    assert resources["lakehouse"].root == str(tmp_path / "lakehouse")
    assert resources["mlflow"].tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert resources["spark"].jars_dir == str(tmp_path / "jars")
    assert resources["spark"].master == "local[2]"
    assert resources["dataset"].files[0].endswith("regional_es.jsonl")


def test_resources_follow_environment(tmp_path):
    resources = build_resources(
        {
            "EVAL_PIPELINE_HOME": str(tmp_path),
            "EVAL_PIPELINE_LAKEHOUSE": "s3a://bucket/lake",
            "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000",
            "EVAL_PIPELINE_SPARK_MASTER": "spark://127.0.0.1:7077",
            "EVAL_PIPELINE_DATASET_NAME": "chapin",
            "EVAL_PIPELINE_DATASET_FILES": "a.jsonl,b.csv",
            "EVAL_PIPELINE_DATASET_DEFAULTS": "task_type=define_term",
            "EVAL_PIPELINE_DATASET_REGIONS": "gt,sv",
        }
    )
    assert resources["lakehouse"].table_path("gold", "x") == "s3a://bucket/lake/gold/x"
    assert resources["mlflow"].settings.registry_uri == "http://127.0.0.1:5000"
    assert resources["spark"].master == "spark://127.0.0.1:7077"
    assert resources["dataset"].files == ["a.jsonl", "b.csv"]
    assert resources["dataset"].field_defaults == {"task_type": "define_term"}
    assert resources["dataset"].allowed_regions == ["GT", "SV"]
