"""Registry, dataset and follow-up sensors and the nightly schedule, on a real MLflow store."""

import datetime as dt
import json

import dagster as dg
import pytest

from eval_pipeline.automation.schedules import nightly_champion_regression
from eval_pipeline.automation.sensors import (
    benchmark_dataset_sensor,
    evaluate_champions_after_refresh,
    model_registry_sensor,
    promote_after_failed_evaluation,
)
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.gates.decisions import GATE_DECISIONS
from eval_pipeline.items.assets import EVALUATION_ITEMS
from eval_pipeline.jobs import COMMAND_LINE_TRIGGER, TRIGGER_TAG, model_evaluation_job
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import build_resources

MODEL = "regional-explainer"
NIGHT = dt.datetime(2026, 12, 5, 2, 0, tzinfo=dt.UTC)


@pytest.fixture
def landing(tmp_path, small_benchmark):
    """A landing folder holding the small benchmark file."""
    folder = tmp_path / "landing"
    folder.mkdir()
    (folder / "benchmark.jsonl").write_bytes(small_benchmark.read_bytes())
    return folder


@pytest.fixture
def resources(environ, landing):
    """Resources on a temp MLflow store, watching every registered model."""
    return build_resources({**environ, "EVAL_PIPELINE_DATASET_DIR": str(landing)})


@pytest.fixture
def client(resources):
    return resources["mlflow"].settings.client()


def register(client, name: str, count: int = 1) -> list[str]:
    """Register `count` new versions of `name`; the sensor only reads the registry entries."""
    if not client.search_registered_models(filter_string=f"name = '{name}'"):
        client.create_registered_model(name)
    return [
        client.create_model_version(name, source="file:///models/stand-in").version
        for _ in range(count)
    ]


def report_silver(instance, resources) -> str:
    """Record a Silver materialization of the current dataset version in the instance."""
    dataset = resources["dataset"]
    version = dataset.current_version()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            EVALUATION_ITEMS,
            metadata={"dataset_name": dataset.name, "dataset_version": version},
        )
    )
    return version


def tick(instance, resources, cursor=None):
    """Evaluate the registry sensor once; the context is closed before the instance is."""
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return model_registry_sensor(context), context


def dataset_tick(instance, resources, cursor=None):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return benchmark_dataset_sensor(context)


def nightly_tick(instance, resources):
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=NIGHT, resources=resources
    ) as context:
        return nightly_champion_regression(context)


def requested_keys(result) -> list[str]:
    return [request.partition_key for request in result.run_requests]


def test_registry_sensor_requests_every_new_version(instance, resources, client):
    register(client, MODEL, 2)
    version = report_silver(instance, resources)

    result, _ = tick(instance, resources)

    keys = [ModelVersionRef(MODEL, n).partition_key for n in ("1", "2")]
    assert requested_keys(result) == keys
    assert result.run_requests[0].run_key.endswith(f":{version}")
    assert result.run_requests[0].tags[TRIGGER_TAG] == "registry"
    assert result.dynamic_partitions_requests[0].partition_keys == keys
    assert json.loads(result.cursor) == {MODEL: 2}


def test_registry_sensor_cursor_catches_versions_between_ticks(instance, resources, client):
    register(client, MODEL, 1)
    report_silver(instance, resources)
    first, _ = tick(instance, resources)

    quiet, _ = tick(instance, resources, cursor=first.cursor)
    assert quiet.run_requests == []
    assert "No new versions" in quiet.skip_reason.skip_message
    assert f"{MODEL} up to version 1" in quiet.skip_reason.skip_message

    register(client, MODEL, 2)
    second, _ = tick(instance, resources, cursor=first.cursor)
    assert requested_keys(second) == [
        ModelVersionRef(MODEL, "2").partition_key,
        ModelVersionRef(MODEL, "3").partition_key,
    ]
    assert json.loads(second.cursor) == {MODEL: 3}


def test_registry_sensor_requests_version_once_when_listed_twice(
    instance, environ, landing, client
):
    # The model is both named in the watch list and carries the watch tag.
    register(client, MODEL, 1)
    client.set_registered_model_tag(MODEL, "eval_pipeline.watch", "true")
    resources = build_resources(
        {
            **environ,
            "EVAL_PIPELINE_DATASET_DIR": str(landing),
            "EVAL_PIPELINE_WATCHED_MODELS": f"{MODEL},{MODEL}",
            "EVAL_PIPELINE_WATCH_TAG": "eval_pipeline.watch=true",
        }
    )
    report_silver(instance, resources)

    result, _ = tick(instance, resources)

    assert requested_keys(result) == [ModelVersionRef(MODEL, "1").partition_key]


def test_registry_sensor_watches_only_configured_models(instance, environ, landing, client):
    register(client, MODEL, 1)
    register(client, "other-model", 1)
    resources = build_resources(
        {
            **environ,
            "EVAL_PIPELINE_DATASET_DIR": str(landing),
            "EVAL_PIPELINE_WATCHED_MODELS": "other-model,not-registered-yet",
        }
    )
    report_silver(instance, resources)

    result, _ = tick(instance, resources)

    assert requested_keys(result) == [ModelVersionRef("other-model", "1").partition_key]
    assert json.loads(result.cursor) == {"other-model": 1}


def test_registry_sensor_skips_deleted_version(instance, resources, client):
    register(client, MODEL, 3)
    client.delete_model_version(MODEL, "2")
    report_silver(instance, resources)

    result, _context = tick(instance, resources)

    assert requested_keys(result) == [
        ModelVersionRef(MODEL, "1").partition_key,
        ModelVersionRef(MODEL, "3").partition_key,
    ]
    assert json.loads(result.cursor) == {MODEL: 3}


def test_registry_sensor_waits_for_current_silver(instance, resources, client):
    register(client, MODEL, 1)

    result, _ = tick(instance, resources)

    assert isinstance(result, dg.SkipReason)
    assert f"Saw {MODEL} version 1" in result.skip_message
    assert "Silver holds nothing yet" in result.skip_message


def test_registry_sensor_skips_versions_already_decided(instance, resources, client):
    register(client, MODEL, 1)
    dataset = resources["dataset"]
    version = report_silver(instance, resources)
    key = ModelVersionRef(MODEL, "1").partition_key
    instance.add_dynamic_partitions(model_versions_partitions.name, [key])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            GATE_DECISIONS,
            partition=key,
            metadata={"dataset_name": dataset.name, "dataset_version": version},
        )
    )

    result, _ = tick(instance, resources)

    assert result.run_requests == []
    assert "already has a gate decision" in result.skip_reason.skip_message
    assert json.loads(result.cursor) == {MODEL: 1}


def test_registry_sensor_run_key_changes_with_dataset(instance, resources, client, landing):
    register(client, MODEL, 1)
    report_silver(instance, resources)
    before, _ = tick(instance, resources)

    with (landing / "benchmark.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(
            json.dumps(
                {
                    "item_id": "mx-3",
                    "region": "MX",
                    "text": "Me quedé sin lana.",
                    "term": "lana",
                    "reference": "dinero",
                    "task_type": "define_term",
                }
            )
            + "\n"
        )
    report_silver(instance, resources)
    after, _ = tick(instance, resources)

    assert before.run_requests[0].run_key != after.run_requests[0].run_key


def test_registry_sensor_skip_reason_names_empty_registry(instance, resources):
    result, _ = tick(instance, resources)
    assert isinstance(result, dg.SkipReason)
    assert "has no registered models yet" in result.skip_message


def test_dataset_sensor_refreshes_changed_files(instance, resources, landing):
    first = dataset_tick(instance, resources)
    assert isinstance(first, dg.RunRequest)
    version = resources["dataset"].current_version()
    assert first.run_key == f"refresh@{resources['dataset'].name}:{version}"

    again = dataset_tick(instance, resources, cursor=version)
    assert isinstance(again, dg.SkipReason)
    assert "already requested" in again.skip_message

    report_silver(instance, resources)
    current = dataset_tick(instance, resources, cursor=version)
    assert "already holds" in current.skip_message

    (landing / "extra.jsonl").write_text(
        json.dumps(
            {
                "item_id": "pe-9",
                "region": "PE",
                "text": "El jato está lejos.",
                "term": "jato",
                "reference": "casa",
                "task_type": "define_term",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    changed = dataset_tick(instance, resources, cursor=version)
    assert isinstance(changed, dg.RunRequest)
    assert changed.run_key != first.run_key


def test_dataset_sensor_names_empty_landing_folder(instance, environ, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    resources = build_resources({**environ, "EVAL_PIPELINE_DATASET_DIR": str(empty)})
    result = dataset_tick(instance, resources)
    assert isinstance(result, dg.SkipReason)
    assert str(empty) in result.skip_message
    assert "contains no files" in result.skip_message


def test_failed_run_of_deleted_version_is_not_promoted(instance, resources, client):
    register(client, MODEL, 1)
    key = ModelVersionRef(MODEL, "1").partition_key
    instance.add_dynamic_partitions(model_versions_partitions.name, [key])
    client.delete_model_version(MODEL, "1")

    job = dg.Definitions(
        assets=_gold_assets(), jobs=[model_evaluation_job], resources=resources
    ).resolve_job_def(model_evaluation_job.name)
    result = job.execute_in_process(instance=instance, partition_key=key, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "is not in the registry" in str(failure.cause or failure)

    context = dg.build_run_status_sensor_context(
        sensor_name=promote_after_failed_evaluation.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    )
    outcome = promote_after_failed_evaluation(context)
    assert isinstance(outcome, dg.SkipReason)
    assert "without a gate decision" in outcome.skip_message


def test_follow_up_skips_command_line_runs(instance, resources, client):
    register(client, MODEL, 1)
    key = ModelVersionRef(MODEL, "1").partition_key
    instance.add_dynamic_partitions(model_versions_partitions.name, [key])
    client.delete_model_version(MODEL, "1")
    job = dg.Definitions(
        assets=_gold_assets(), jobs=[model_evaluation_job], resources=resources
    ).resolve_job_def(model_evaluation_job.name)
    result = job.execute_in_process(
        instance=instance,
        partition_key=key,
        raise_on_error=False,
        tags={TRIGGER_TAG: COMMAND_LINE_TRIGGER},
    )

    context = dg.build_run_status_sensor_context(
        sensor_name=promote_after_failed_evaluation.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    )
    outcome = promote_after_failed_evaluation(context)
    assert "command line" in outcome.skip_message


def _gold_assets():
    from eval_pipeline.results.assets import evaluation_summary, item_results

    return [item_results, evaluation_summary]


def test_nightly_schedule_requests_each_champion(instance, resources, client):
    register(client, MODEL, 2)
    register(client, "no-champion", 1)
    client.set_registered_model_alias(MODEL, "champion", "2")
    report_silver(instance, resources)
    result = nightly_tick(instance, resources)

    assert [request.partition_key for request in result] == [
        ModelVersionRef(MODEL, "2").partition_key
    ]
    assert result[0].tags[TRIGGER_TAG] == "nightly"
    assert "2026-12-05" in result[0].run_key


def test_nightly_schedule_skips_without_champion(instance, resources, client):
    register(client, MODEL, 1)
    report_silver(instance, resources)
    result = nightly_tick(instance, resources)
    assert isinstance(result, dg.SkipReason)
    assert "'champion' alias" in result.skip_message


def test_nightly_schedule_waits_for_current_silver(instance, resources, client):
    register(client, MODEL, 1)
    client.set_registered_model_alias(MODEL, "champion", "1")
    result = nightly_tick(instance, resources)
    assert isinstance(result, dg.SkipReason)
    assert "Silver holds nothing yet" in result.skip_message


def test_refresh_sensor_skips_without_champion(instance, resources, client):
    register(client, MODEL, 1)
    finished = _noop_job.execute_in_process(instance=instance)
    with dg.build_run_status_sensor_context(
        sensor_name=evaluate_champions_after_refresh.name,
        dagster_instance=instance,
        dagster_run=finished.dagster_run,
        dagster_event=finished.get_run_success_event(),
        resources=resources,
    ) as context:
        result = evaluate_champions_after_refresh(context)
    assert isinstance(result, dg.SkipReason)
    assert "no watched model has a 'champion' alias" in result.skip_message


@dg.op
def _noop_op():
    return None


@dg.job(name="noop")
def _noop_job():
    _noop_op()
