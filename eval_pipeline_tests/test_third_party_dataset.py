"""The same pipeline, configured by environment only, on real Guatemalan Spanish examples."""

import dagster as dg
import pytest

from eval_pipeline.core.demo_models import DEMO_MODEL_SPECS
from eval_pipeline.core.registry import register_demo_models
from eval_pipeline.ingestion.assets import BENCHMARK_SAMPLES, benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.lakehouse import read_rows
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.results.assets import evaluation_summary, item_results
from eval_pipeline_tests.conftest import SHARED_DATA

CHAPIN = SHARED_DATA / "diccionario-chapin" / "benchmark-gt.jsonl"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHAPIN.is_file(),
        reason=f"third-party Guatemalan benchmark not found at {CHAPIN}; this test needs the "
        "shared data folder next to the repository",
    ),
]


def test_chapin_dataset_evaluates_by_configuration(make_resources, instance, permissive_policy):
    resources = make_resources(
        EVAL_PIPELINE_POLICY=str(permissive_policy),
        EVAL_PIPELINE_DATASET_NAME="diccionario-chapin",
        EVAL_PIPELINE_DATASET_FILES=str(CHAPIN),
        # The file has no task_type column; every row is a define-the-term item.
        EVAL_PIPELINE_DATASET_DEFAULTS="task_type=define_term",
    )
    assert dg.materialize(
        [benchmark_bronze, evaluation_items], resources=resources, instance=instance
    ).success
    bronze = instance.get_latest_materialization_event(BENCHMARK_SAMPLES).asset_materialization
    assert bronze.metadata["rows_read"].value == 261
    assert bronze.metadata["rows_accepted"].value == 261
    assert bronze.metadata["rows_quarantined"].value == 0

    items = resources["dataset"].ingest().accepted.to_dict("records")
    strong = [spec for spec in DEMO_MODEL_SPECS if spec.fuzzy]
    ref = register_demo_models(resources["mlflow"].settings, items, strong)[0]
    instance.add_dynamic_partitions(model_versions_partitions.name, [ref.partition_key])
    result = dg.materialize(
        [item_results, evaluation_summary],
        resources=resources,
        instance=instance,
        partition_key=ref.partition_key,
    )
    assert result.success

    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("gold", "eval_summary")
    summary = read_rows(spark, path, {"dataset_name": "diccionario-chapin"}).toPandas()
    cells = summary[summary["slice"] == "cell"]
    assert set(cells["region"]) == {"GT"}
    assert set(cells["n"]) == {261}
    clean = cells[cells["noise_level"] == "clean"].iloc[0]
    # The glossary was built from these items, so clean outputs match their references.
    assert clean["pass_rate"] > 0.9
    samples = read_rows(spark, resources["lakehouse"].table_path("bronze", "benchmark_samples"))
    texts = samples.select("text").toPandas()["text"]
    assert texts.str.contains("¿").any()
    assert texts.str.contains("ñ").any()
