"""Sensors that evaluate new model versions, refresh a changed benchmark and act on results.

A registered version goes through this chain without anyone pressing a button.
`model_registry_sensor` adds its partition and requests `model_evaluation_job`. When that run
ends, `promote_after_evaluation` (passed) or `promote_after_failed_evaluation` (blocked by its
gate checks) requests `promotion_job` for the same partition. Champions re-evaluated after
a dataset change or by the nightly schedule get `regression_record_job` instead, which tags
the result without moving aliases.

Follow-up work uses run-status sensors rather than declarative automation, because promotion
is an op job with registry side effects, not an asset, and because a run blocked by its gate
checks ends as a failed run that must still lead to the version being tagged blocked.
"""

import dagster as dg

from eval_pipeline.automation.state import (
    decided_dataset_version,
    latest_gate_decision,
    silver_dataset,
)
from eval_pipeline.core.ingest import BenchmarkSourceError
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.promotion import alias_version
from eval_pipeline.core.registry import list_registered_versions, watched_model_names
from eval_pipeline.core.watch import describe_plan, format_cursor, parse_cursor, plan_new_versions
from eval_pipeline.gates.promotion import promotion_job, regression_record_job
from eval_pipeline.jobs import (
    COMMAND_LINE_TRIGGER,
    DATASET_VERSION_TAG,
    EVALUATION_RUN_TAG,
    TRIGGER_TAG,
    benchmark_refresh_job,
    model_evaluation_job,
)
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import (
    AutomationResource,
    BenchmarkDatasetResource,
    MlflowResource,
    PromotionResource,
    sensor_interval_seconds,
)

SENSOR_INTERVAL_SECONDS = sensor_interval_seconds()
# Triggers whose evaluation re-checks a version that already serves; they record the outcome
# instead of promoting.
RECHECK_TRIGGERS = ("nightly", "dataset_change")


ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def evaluation_run_key(partition_key: str, dataset_name: str, dataset_version: str) -> str:
    """Return the run key of one evaluation: a version on one dataset version runs once."""
    return f"{partition_key}@{dataset_name}:{dataset_version}"


def silver_wait_reason(dataset: BenchmarkDatasetResource, version: str, instance) -> str | None:
    """Return why evaluations must wait for Silver, or None when Silver contains `version`."""
    stored = silver_dataset(instance)
    if stored == (dataset.name, version):
        return None
    held_text = f"dataset {stored[0]!r} version {stored[1]}" if stored else "nothing yet"
    return (
        f"Silver holds {held_text}, but the benchmark files are dataset {dataset.name!r} version "
        f"{version}; benchmark_dataset_sensor requests benchmark_refresh_job for it, and "
        "evaluations are requested once that run has succeeded."
    )


@dg.sensor(
    job=model_evaluation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def model_registry_sensor(
    context: dg.SensorEvaluationContext,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    automation: AutomationResource,
):
    """Add a partition and request an evaluation for each watched model version since the cursor.

    The cursor stores the highest version handled per model, so versions registered between two
    ticks are all picked up. Run keys contain the dataset version, so a version is evaluated once
    per dataset version. Versions that already have a gate decision on the current dataset
    version (evaluated from the command line, say) are not evaluated again.
    """
    settings = mlflow.settings
    cursor = parse_cursor(context.cursor)
    names = watched_model_names(settings, automation.watched_models, automation.tag_filter())
    if not names:
        if not automation.watched_models and not automation.watch_tag:
            return dg.SkipReason(
                f"The registry at {settings.registry_uri} has no registered models yet; "
                "register a model version to have it evaluated."
            )
        watched = automation.watched_models or automation.watch_tag
        return dg.SkipReason(
            f"No registered model matches the watch setting ({watched}) in the registry at "
            f"{settings.registry_uri}."
        )

    plan = plan_new_versions(list_registered_versions(settings, names), cursor)
    notes = describe_plan(plan)
    for note in notes:
        context.log.info(note)
    if not plan.ready:
        return dg.SensorResult(
            skip_reason=_nothing_new_reason(names, cursor, notes),
            cursor=format_cursor(plan.cursor),
        )

    try:
        version = dataset.current_version()
    except BenchmarkSourceError as error:
        return dg.SkipReason(
            f"Saw {len(plan.ready)} new version(s) but cannot read the benchmark: {error}"
        )
    wait = silver_wait_reason(dataset, version, context.instance)
    if wait is not None:
        # The cursor stays put so the same versions are requested once Silver is current.
        return dg.SkipReason(f"Saw {_refs_text(plan.ready)}. {wait}")

    requests, evaluated = [], []
    for registered in plan.ready:
        key = registered.ref.partition_key
        if decided_dataset_version(context.instance, key, dataset.name) == version:
            evaluated.append(registered.ref.uri)
            continue
        requests.append(
            dg.RunRequest(
                run_key=evaluation_run_key(key, dataset.name, version),
                partition_key=key,
                tags={TRIGGER_TAG: "registry", DATASET_VERSION_TAG: version},
            )
        )
    if evaluated:
        context.log.info(
            "Already decided on dataset version %s, not evaluated again: %s",
            version,
            ", ".join(evaluated),
        )
    context.log.info("Requesting evaluation of %s", _refs_text(plan.ready))
    new_keys = [registered.ref.partition_key for registered in plan.ready]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[model_versions_partitions.build_add_request(new_keys)],
        cursor=format_cursor(plan.cursor),
        skip_reason=None
        if requests
        else f"Every new version already has a gate decision on dataset version {version}.",
    )


def _refs_text(versions) -> str:
    return ", ".join(f"{item.name} version {item.version}" for item in versions)


def _nothing_new_reason(names: list[str], cursor: dict[str, int], notes: list[str]) -> str:
    seen = ", ".join(f"{name} up to version {cursor.get(name, 0)}" for name in names)
    return " ".join([f"No new versions of the watched models ({seen}).", *notes])


@dg.sensor(
    job=benchmark_refresh_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def benchmark_dataset_sensor(
    context: dg.SensorEvaluationContext, dataset: BenchmarkDatasetResource
):
    """Request a Bronze and Silver refresh when the benchmark files differ from what Silver holds.

    The dataset version is a hash of the files' content, so a new, edited or removed file in the
    landing folder (EVAL_PIPELINE_DATASET_DIR) or among the configured files is a new version.
    A successful refresh leads `evaluate_champions_after_refresh` to re-evaluate the champions.
    """
    try:
        version = dataset.current_version()
    except BenchmarkSourceError as error:
        return dg.SkipReason(f"Cannot read the benchmark files: {error}")
    wait = silver_wait_reason(dataset, version, context.instance)
    if wait is None:
        return dg.SkipReason(
            f"Silver already holds dataset {dataset.name!r} version {version} "
            f"({len(dataset.source_files())} file(s))."
        )
    if context.cursor == version:
        active = context.instance.get_run_records(
            dg.RunsFilter(job_name=benchmark_refresh_job.name, statuses=ACTIVE_RUN_STATUSES),
            limit=1,
        )
        if active:
            return dg.SkipReason(
                f"Refresh run {active[0].dagster_run.run_id} of dataset {dataset.name!r} version "
                f"{version} is in progress."
            )
        return dg.SkipReason(
            f"A refresh of dataset {dataset.name!r} version {version} was already requested but "
            "Silver does not hold it and no refresh run is in progress; the latest "
            "benchmark_refresh_job run in the Dagster UI shows why. Fix the files (a new version "
            "is requested automatically) or relaunch the job."
        )
    context.update_cursor(version)
    return dg.RunRequest(
        run_key=f"refresh@{dataset.name}:{version}",
        tags={TRIGGER_TAG: "dataset_change", DATASET_VERSION_TAG: version},
    )


def champion_requests(
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    automation: AutomationResource,
    promotion: PromotionResource,
    trigger: str,
    run_key_prefix: str = "",
) -> list[dg.RunRequest]:
    """Return one evaluation request for the champion of every watched model."""
    settings = mlflow.settings
    version = dataset.current_version()
    requests = []
    for name in watched_model_names(settings, automation.watched_models, automation.tag_filter()):
        champion = alias_version(settings, name, promotion.champion_alias)
        if champion is None:
            continue
        key = ModelVersionRef(name, champion).partition_key
        requests.append(
            dg.RunRequest(
                run_key=run_key_prefix + evaluation_run_key(key, dataset.name, version),
                partition_key=key,
                tags={TRIGGER_TAG: trigger, DATASET_VERSION_TAG: version},
            )
        )
    return requests


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[benchmark_refresh_job],
    request_job=model_evaluation_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def evaluate_champions_after_refresh(
    context: dg.RunStatusSensorContext,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    automation: AutomationResource,
    promotion: PromotionResource,
):
    """Re-evaluate each watched model's champion on the dataset version a refresh produced."""
    if context.dagster_run.tags.get(TRIGGER_TAG) == COMMAND_LINE_TRIGGER:
        return dg.SkipReason(
            f"Refresh run {context.dagster_run.run_id} was launched by the eval-pipeline command "
            "line, which evaluates the versions it was given."
        )
    requests = champion_requests(mlflow, dataset, automation, promotion, "dataset_change")
    if not requests:
        return dg.SkipReason(
            f"Refresh run {context.dagster_run.run_id} succeeded, but no watched model has a "
            f"{promotion.champion_alias!r} alias to re-evaluate."
        )
    return requests


def _follow_up(context: dg.RunStatusSensorContext, outcome: str):
    """Return the promotion or regression-record request for a finished evaluation run."""
    run = context.dagster_run
    partition_key = run.tags.get("dagster/partition")
    trigger = run.tags.get(TRIGGER_TAG, "manual")
    if partition_key is None:
        return dg.SkipReason(f"Evaluation run {run.run_id} has no partition; nothing to promote.")
    if trigger == COMMAND_LINE_TRIGGER:
        return dg.SkipReason(
            f"Evaluation run {run.run_id} of {partition_key} was launched by the eval-pipeline "
            "command line, which promotes only when given --promote."
        )

    record = latest_gate_decision(context.instance, partition_key)
    if record is None or record.run_id != run.run_id:
        return dg.SkipReason(
            f"Evaluation run {run.run_id} of {partition_key} {outcome} without a gate decision, "
            "so nothing is promoted; the run's logs in the Dagster UI say why (for example a "
            "model version deleted from the registry before the run started)."
        )

    tags = {EVALUATION_RUN_TAG: run.run_id, TRIGGER_TAG: trigger}
    if trigger in RECHECK_TRIGGERS:
        return dg.RunRequest(
            run_key=f"record@{run.run_id}",
            job_name=regression_record_job.name,
            partition_key=partition_key,
            tags=tags,
        )
    return dg.RunRequest(
        run_key=f"promote@{run.run_id}",
        job_name=promotion_job.name,
        partition_key=partition_key,
        tags=tags,
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[model_evaluation_job],
    request_jobs=[promotion_job, regression_record_job],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def promote_after_evaluation(context: dg.RunStatusSensorContext):
    """Request promotion of a version whose evaluation run passed every gate check."""
    return _follow_up(context, "succeeded")


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.FAILURE,
    monitored_jobs=[model_evaluation_job],
    request_jobs=[promotion_job, regression_record_job],
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def promote_after_failed_evaluation(context: dg.RunStatusSensorContext):
    """Request the promotion job for a version blocked by its gate checks, which tags it blocked.

    A blocking check that fails ends the run as failed after the gate decision is stored. A run
    that failed before deciding is skipped with the reason.
    """
    return _follow_up(context, "failed")
