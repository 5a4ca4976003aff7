"""Daily monitoring over five days of synthetic traffic whose inputs drift from day 4."""

from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.monitoring import CHECK_INPUT_DRIFT, CHECK_LATENCY
from eval_pipeline.core.traffic import (
    INVALID_ROW_KINDS,
    TrafficScenario,
    generate_traffic,
    write_traffic_files,
)
from eval_pipeline.ingestion.assets import benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.lakehouse import read_rows
from eval_pipeline.monitoring.assets import benchmark_features, inference_bronze, request_features
from eval_pipeline.monitoring.gold import live_accuracy, monitoring_gold
from eval_pipeline.monitoring.report import governance_dashboard
from eval_pipeline.resources import build_resources, packaged_benchmark_path
from eval_pipeline_tests.conftest import jars_dir

pytestmark = pytest.mark.slow

SCENARIO = TrafficScenario(
    start_date=date(2025, 3, 1),
    days=5,
    requests_per_day=400,
    drift_start_day=4,
    latency_regression_day=5,
)
DAILY = [inference_bronze, request_features, monitoring_gold, live_accuracy]


def table(resources, layer, name, day=None):
    session = resources["spark"].get_session()
    path = resources["lakehouse"].table_path(layer, name)
    rows = read_rows(session, path, {"request_date": day} if day else None)
    return rows.toPandas()


@pytest.fixture(scope="module")
def monitored(spark_resource, tmp_path_factory):
    """Resources, traffic and the materialization result of each day, monitored in order."""
    home = tmp_path_factory.mktemp("monitoring")
    resources = build_resources(
        {"EVAL_PIPELINE_HOME": str(home), "EVAL_PIPELINE_JARS_DIR": jars_dir()}
    )
    resources["spark"] = spark_resource
    benchmark = ingest_files("regional_es", [packaged_benchmark_path()]).accepted
    traffic = generate_traffic(SCENARIO, benchmark)
    write_traffic_files(traffic, resources["monitoring"].traffic_dir, add_invalid_rows=True)
    (home / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        reference = dg.materialize(
            [benchmark_bronze, evaluation_items, benchmark_features],
            resources=resources,
            instance=instance,
        )
        assert reference.success
        results = {}
        for index in range(1, SCENARIO.days + 1):
            day = SCENARIO.day(index).isoformat()
            results[index] = dg.materialize(
                DAILY, resources=resources, instance=instance, partition_key=day
            )
            assert results[index].success, day
        yield resources, traffic, results, instance


def failed_checks(result) -> dict[str, str]:
    return {
        evaluation.check_name: evaluation.severity.value
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    }


def test_drift_flagged_from_day_four(monitored):
    resources, _, results, _ = monitored
    alerts = table(resources, "gold", "monitoring_alerts")
    flagged = sorted(alerts["request_date"].unique())
    assert flagged == [SCENARIO.day(4).isoformat(), SCENARIO.day(5).isoformat()]
    for index in range(1, 4):
        assert failed_checks(results[index]) == {}, index
    assert failed_checks(results[4])[CHECK_INPUT_DRIFT] == "ERROR"


def test_latency_regression_warns(monitored):
    _, _, results, _ = monitored
    assert CHECK_LATENCY not in failed_checks(results[4])
    assert failed_checks(results[5])[CHECK_LATENCY] == "WARN"


def test_alert_rows_match_checks(monitored):
    resources, _, results, _ = monitored
    alerts = table(resources, "gold", "monitoring_alerts", SCENARIO.day(4).isoformat())
    assert set(alerts["check_name"]) == set(failed_checks(results[4]))
    assert alerts["alert_id"].is_unique
    drift = alerts[alerts["check_name"] == CHECK_INPUT_DRIFT]
    assert (drift["observed"] > drift["threshold"]).all()
    assert set(drift["region"]) == {"ALL"}


def test_bronze_and_quarantine_counts(monitored):
    resources, _, _, _ = monitored
    day = SCENARIO.day(3).isoformat()
    assert len(table(resources, "bronze", "inference_requests", day)) == 400
    quarantine = table(resources, "bronze", "inference_quarantine", day)
    assert len(quarantine) == len(INVALID_ROW_KINDS) + 1
    reasons = set(quarantine["reason"].str.split(",").explode())
    assert reasons == {*INVALID_ROW_KINDS, "malformed_record"}


def test_latency_percentiles_match_traffic(monitored):
    resources, traffic, _, _ = monitored
    day = SCENARIO.day(5).isoformat()
    metrics = table(resources, "gold", "traffic_metrics", day).set_index("region")
    logged = traffic[traffic["timestamp"].str.startswith(day) & (traffic["status"] == "ok")]
    latency = logged["latency_ms"].to_numpy()
    assert metrics.loc["ALL", "requests"] == 400
    for q in (50, 95, 99):
        assert metrics.loc["ALL", f"latency_p{q}_ms"] == pytest.approx(np.percentile(latency, q))
    assert metrics.loc["ALL", "traffic_share"] == 1.0
    regional = metrics.drop(index="ALL")
    assert regional["requests"].sum() == 400
    assert regional["traffic_share"].sum() == pytest.approx(1.0)


def test_live_accuracy_without_evaluation(monitored):
    resources, _, _, _ = monitored
    live = table(resources, "gold", "live_accuracy", SCENARIO.day(1).isoformat())
    assert len(live) == 1
    assert np.isnan(live["offline_pass_rate"].iloc[0])
    assert live["labelled"].iloc[0] > 0
    assert live["labelled_pass_rate"].iloc[0] > 0.8


def test_rerun_replaces_day(monitored):
    resources, _, _, instance = monitored
    day = SCENARIO.day(2).isoformat()
    before = len(table(resources, "bronze", "inference_requests"))
    result = dg.materialize(
        [inference_bronze], resources=resources, instance=instance, partition_key=day
    )
    assert result.success
    assert len(table(resources, "bronze", "inference_requests")) == before
    assert len(table(resources, "bronze", "inference_requests", day)) == 400


def test_dashboard_asset_renders(monitored):
    resources, _, _, instance = monitored
    result = dg.materialize([governance_dashboard], resources=resources, instance=instance)
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    page = Path(resources["monitoring"].dashboard_dir) / "index.html"
    assert metadata["path"].value == str(page)
    assert metadata["drift_plot"].value.startswith("![drift](data:image/png;base64,")
    html = page.read_text(encoding="utf-8")
    assert SCENARIO.day(4).isoformat() in html
    assert "input_drift_within_threshold" in html


def test_embedding_drift_recorded(monitored):
    resources, _, _, _ = monitored
    drift = table(resources, "gold", "input_drift", SCENARIO.day(2).isoformat())
    embedding = drift[drift["feature"] == "embedding"]
    assert set(embedding["reference"]) == {"benchmark", "window"}
    assert set(embedding["region"]) == {"ALL"}
    assert embedding["embedding_distance"].between(0.0, 0.025).all()
