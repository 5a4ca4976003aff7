import dagster as dg
import pytest

from eval_pipeline.ingestion.assets import (
    BENCHMARK_QUARANTINE,
    BENCHMARK_SAMPLES,
    benchmark_bronze,
)
from eval_pipeline.items.assets import EVALUATION_ITEMS, MissingUpstreamDataError, evaluation_items
from eval_pipeline.lakehouse import read_rows

pytestmark = pytest.mark.slow


def metadata(instance, key):
    event = instance.get_latest_materialization_event(key)
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}


@pytest.fixture
def resources(make_resources, small_benchmark):
    return make_resources(EVAL_PIPELINE_DATASET_FILES=str(small_benchmark))


def test_bronze_counts_and_quarantine(resources, instance):
    result = dg.materialize([benchmark_bronze], resources=resources, instance=instance)
    assert result.success
    samples = metadata(instance, BENCHMARK_SAMPLES)
    assert samples["rows_read"] == 11
    assert samples["rows_accepted"] == 8
    assert samples["rows_quarantined"] == 3
    quarantine = metadata(instance, BENCHMARK_QUARANTINE)
    assert quarantine["reasons"] == {
        "duplicate_item_id": 1,
        "unknown_region": 1,
        "empty_text": 1,
    }

    spark = resources["spark"].get_session()
    lakehouse = resources["lakehouse"]
    stored = read_rows(spark, lakehouse.table_path("bronze", "benchmark_quarantine")).toPandas()
    assert sorted(stored["reason"]) == ["duplicate_item_id", "empty_text", "unknown_region"]
    assert stored["raw_record"].str.contains("XX").any()
    accepted = read_rows(spark, lakehouse.table_path("bronze", "benchmark_samples")).toPandas()
    assert len(accepted) == 8
    assert set(accepted["dataset_version"]) == {samples["dataset_version"]}
    assert accepted["ingested_at"].notna().all()


def test_bronze_reingest_changes_nothing(resources, instance):
    dg.materialize([benchmark_bronze], resources=resources, instance=instance)
    first = metadata(instance, BENCHMARK_SAMPLES)
    first_quarantine = metadata(instance, BENCHMARK_QUARANTINE)
    dg.materialize([benchmark_bronze], resources=resources, instance=instance)
    second = metadata(instance, BENCHMARK_SAMPLES)
    second_quarantine = metadata(instance, BENCHMARK_QUARANTINE)

    assert second["already_ingested"] is True
    assert second["delta_table_version"] == first["delta_table_version"]
    assert second_quarantine["delta_table_version"] == first_quarantine["delta_table_version"]
    assert second["ingested_at"] == first["ingested_at"]
    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("bronze", "benchmark_samples")
    assert read_rows(spark, path).count() == 8


def test_changed_file_is_new_version(resources, instance, small_benchmark):
    dg.materialize([benchmark_bronze], resources=resources, instance=instance)
    first = metadata(instance, BENCHMARK_SAMPLES)["dataset_version"]
    lines = small_benchmark.read_text(encoding="utf-8").splitlines()
    del lines[1]
    small_benchmark.write_text("\n".join(lines) + "\n", encoding="utf-8")

    dg.materialize([benchmark_bronze], resources=resources, instance=instance)
    second = metadata(instance, BENCHMARK_SAMPLES)
    assert second["dataset_version"] != first
    assert second["already_ingested"] is False
    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("bronze", "benchmark_samples")
    versions = read_rows(spark, path).groupBy("dataset_version").count().toPandas()
    assert dict(zip(versions["dataset_version"], versions["count"], strict=True)) == {
        first: 8,
        second["dataset_version"]: 7,
    }


def test_silver_has_every_noise_level(resources, instance):
    result = dg.materialize(
        [benchmark_bronze, evaluation_items], resources=resources, instance=instance
    )
    assert result.success
    silver = metadata(instance, EVALUATION_ITEMS)
    assert silver["rows_by_noise_level"] == {"clean": 8, "ocr": 8, "typo": 8, "no_accents": 8}

    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("silver", "evaluation_items")
    items = read_rows(spark, path).toPandas()
    assert len(items) == 32
    assert items["template_hash"].nunique() == 1
    assert items["noise_spec"].nunique() == 4
    clean = items[items["noise_level"] == "clean"].set_index("item_id")
    assert clean.loc["sv-2", "text"] == "¿Dónde anda el cipote de tu tía?"
    assert "«cipote»" in clean.loc["sv-2", "prompt"]
    garbled = items[items["noise_level"].isin(["ocr", "typo"])]
    assert (garbled["text"] != garbled["clean_text"]).all()
    no_accents = items[items["noise_level"] == "no_accents"].set_index("item_id")
    assert no_accents.loc["mx-2", "text"] == "¿Cuanta lana ganaste esta semana?"
    assert no_accents.loc["sv-1", "text"] == "Ese cipote no para de correr."
    noisy = items[items["noise_level"] != "clean"]
    assert noisy[noisy["item_id"] == "sv-2"]["text"].str.startswith("¿").all()


def test_silver_is_stable_across_rebuilds(resources, instance):
    dg.materialize([benchmark_bronze, evaluation_items], resources=resources, instance=instance)
    spark = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("silver", "evaluation_items")
    first = read_rows(spark, path).select("item_id", "noise_level", "prompt").toPandas()
    dg.materialize([evaluation_items], resources=resources, instance=instance)
    second = read_rows(spark, path).select("item_id", "noise_level", "prompt").toPandas()
    key = ["item_id", "noise_level"]
    assert len(second) == 32
    assert (
        first.sort_values(key)
        .reset_index(drop=True)
        .equals(second.sort_values(key).reset_index(drop=True))
    )


def test_silver_without_bronze_fails_clearly(resources, instance):
    with pytest.raises(MissingUpstreamDataError, match="materialize bronze/benchmark_samples"):
        dg.materialize([evaluation_items], resources=resources, instance=instance)
