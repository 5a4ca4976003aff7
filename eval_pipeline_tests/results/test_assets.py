import math

import dagster as dg
import pandas as pd
import pytest
from mlflow.artifacts import download_artifacts

from eval_pipeline.core.demo_models import ConstantModel, FaultyModel
from eval_pipeline.core.registry import PARTITION_KEY_TAG, register_pyfunc_model
from eval_pipeline.core.stats import wilson_interval
from eval_pipeline.ingestion.assets import benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.lakehouse import read_rows
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.results.assets import (
    EVAL_SUMMARY,
    ITEM_RESULTS,
    evaluation_summary,
    item_results,
)

pytestmark = pytest.mark.slow

MODEL_NAME = "team.explainer v2 ñandú"
GOLD = [item_results, evaluation_summary]


@pytest.fixture
def resources(make_resources, small_benchmark, permissive_policy):
    return make_resources(
        EVAL_PIPELINE_DATASET_FILES=str(small_benchmark),
        EVAL_PIPELINE_POLICY=str(permissive_policy),
    )


@pytest.fixture
def prepared(resources, instance):
    """Bronze and Silver materialized for the small benchmark."""
    result = dg.materialize(
        [benchmark_bronze, evaluation_items], resources=resources, instance=instance
    )
    assert result.success
    return resources


def register(resources, instance, model, name=MODEL_NAME):
    ref = register_pyfunc_model(resources["mlflow"].settings, name, model)
    instance.add_dynamic_partitions(model_versions_partitions.name, [ref.partition_key])
    return ref


def evaluate(resources, instance, ref):
    return dg.materialize(
        GOLD,
        resources=resources,
        instance=instance,
        partition_key=ref.partition_key,
        # A model whose every item fails has no latency to judge, so its gates fail the run.
        # These tests check the rows; the gate checks have their own tests.
        raise_on_error=False,
    )


def gold_rows(resources, table, ref):
    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("gold", table)
    return read_rows(spark, path, {"partition_key": ref.partition_key}).toPandas()


def slice_row(summary, slice_name, region="ALL", noise_level="ALL"):
    rows = summary[
        (summary["slice"] == slice_name)
        & (summary["region"] == region)
        & (summary["noise_level"] == noise_level)
    ]
    assert len(rows) == 1, f"expected one {slice_name} row for {region}/{noise_level}"
    return rows.iloc[0]


def test_two_versions_match_hand_computed_summary(prepared, instance):
    first = register(prepared, instance, ConstantModel("niño"))
    second = register(prepared, instance, ConstantModel("casa"))
    assert (first.version, second.version) == ("1", "2")
    assert evaluate(prepared, instance, first).success
    assert evaluate(prepared, instance, second).success

    # "niño" is right for the 3 SV items only, at every noise level: 3 of 8 items per level.
    summary = gold_rows(prepared, "eval_summary", first)
    assert slice_row(summary, "cell", "SV", "ocr")["pass_rate"] == 1.0
    assert slice_row(summary, "cell", "SV", "ocr")["n"] == 3
    assert slice_row(summary, "cell", "PE", "clean")["pass_rate"] == 0.0
    assert slice_row(summary, "region", "SV")["n"] == 12
    assert slice_row(summary, "noise_level", noise_level="typo")["passes"] == 3
    overall = slice_row(summary, "overall")
    assert overall["n"] == 32
    assert overall["passes"] == 12
    assert overall["pass_rate"] == pytest.approx(0.375)
    low, high = wilson_interval(12, 32)
    assert overall["ci_low"] == pytest.approx(low)
    assert overall["ci_high"] == pytest.approx(high)
    assert (low, high) == pytest.approx((0.2293, 0.5475), abs=1e-4)
    assert overall["error_rate"] == 0.0

    # "casa" is right for the 3 PE items only.
    second_summary = gold_rows(prepared, "eval_summary", second)
    assert slice_row(second_summary, "region", "PE")["pass_rate"] == 1.0
    assert slice_row(second_summary, "region", "SV")["pass_rate"] == 0.0
    assert slice_row(second_summary, "overall")["passes"] == 12

    gaps = gold_rows(prepared, "robustness_gaps", first).set_index("region")
    assert gaps.loc["SV", "gap"] == 0.0
    assert gaps.loc["ALL", "clean_pass_rate"] == pytest.approx(3 / 8)


def test_item_results_carry_identity(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    evaluate(prepared, instance, ref)
    items = gold_rows(prepared, "item_results", ref)
    assert len(items) == 32
    assert set(items["model_name"]) == {MODEL_NAME}
    assert set(items["model_version"]) == {"1"}
    assert items["output"].eq("niño").all()
    assert items["error_code"].isna().all()
    assert items["latency_ms"].ge(0).all()
    assert items["exact_match"][items["region"] == "SV"].all()
    assert items["semantic_similarity"].between(-1, 1).all()


def test_rematerialization_replaces_partition(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    other = register(prepared, instance, ConstantModel("casa"), name="other-model")
    evaluate(prepared, instance, ref)
    evaluate(prepared, instance, other)
    first = instance.get_latest_materialization_event(ITEM_RESULTS).asset_materialization
    evaluate(prepared, instance, ref)
    second = instance.get_latest_materialization_event(ITEM_RESULTS).asset_materialization

    assert len(gold_rows(prepared, "item_results", ref)) == 32
    assert len(gold_rows(prepared, "item_results", other)) == 32
    assert len(gold_rows(prepared, "eval_summary", ref)) == len(
        gold_rows(prepared, "eval_summary", other)
    )
    first_version = first.metadata["delta_table_version"].value
    assert second.metadata["delta_table_version"].value > first_version
    assert second.partition == ref.partition_key


def test_failing_model_becomes_error_rows(prepared, instance):
    failures = {"SV": "raise", "PE": "none", "MX": "number"}
    ref = register(prepared, instance, FaultyModel(failures), name="faulty")
    evaluate(prepared, instance, ref)

    items = gold_rows(prepared, "item_results", ref)
    codes = items.groupby("region")["error_code"].agg(lambda codes: set(codes))
    assert codes["SV"] == {"model_error"}
    assert codes["PE"] == {"null_output"}
    assert codes["MX"] == {"non_string_output"}
    assert items["error_message"][items["region"] == "SV"].str.contains("simulated").all()
    assert not items["passed"].any()
    summary = gold_rows(prepared, "eval_summary", ref)
    assert slice_row(summary, "overall")["error_rate"] == 1.0


def test_empty_output_is_error(prepared, instance):
    ref = register(prepared, instance, ConstantModel(""), name="empty")
    evaluate(prepared, instance, ref)
    items = gold_rows(prepared, "item_results", ref)
    assert set(items["error_code"]) == {"empty_output"}


def test_mlflow_run_params_metrics_and_tags(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    evaluate(prepared, instance, ref)
    settings = prepared["mlflow"].settings
    client = settings.client()
    version = client.get_model_version(ref.name, ref.version)
    run_id = version.tags["eval_pipeline.run_id.regional_es"]
    assert version.tags[PARTITION_KEY_TAG] == ref.partition_key

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    for name in ("dataset_version", "template_hash", "noise_spec", "scorer_versions"):
        assert params[name], name
    assert params["model_name"] == MODEL_NAME
    assert params["code_version"].startswith("0.1.0")
    assert run.data.metrics["overall/pass_rate"] == pytest.approx(0.375)
    assert run.data.metrics["cell/SV/clean/pass_rate"] == 1.0
    assert run.data.metrics["gap/SV/clean_minus_noisy"] == 0.0

    artifacts = {item.path for item in client.list_artifacts(run_id, "evaluation")}
    assert "evaluation/item_results.parquet" in artifacts
    assert "evaluation/summary.csv" in artifacts
    local = download_artifacts(
        run_id=run_id,
        artifact_path="evaluation/item_results.parquet",
        tracking_uri=settings.tracking_uri,
    )
    assert len(pd.read_parquet(local)) == 32


def test_same_evaluation_reuses_mlflow_run(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    evaluate(prepared, instance, ref)
    evaluate(prepared, instance, ref)
    client = prepared["mlflow"].settings.client()
    experiment = client.get_experiment_by_name("eval_pipeline")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1


def test_materialization_metadata(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    evaluate(prepared, instance, ref)
    event = instance.get_latest_materialization_event(EVAL_SUMMARY).asset_materialization
    metadata = {name: value.value for name, value in event.metadata.items()}
    assert metadata["overall_n"] == 32
    assert math.isclose(metadata["overall_pass_rate"], 0.375)
    assert "| SV" in metadata["summary"]
    assert metadata["delta_table_version"] >= 0
    assert metadata["dataset_version"]


def test_deleted_version_fails_with_clear_message(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    prepared["mlflow"].settings.client().delete_model_version(ref.name, ref.version)
    result = evaluate(prepared, instance, ref)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause
    assert any("not in the registry" in message for message in messages), messages
