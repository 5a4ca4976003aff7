"""The nightly regression schedule: every champion re-evaluated on the latest dataset."""

import os

import dagster as dg

from eval_pipeline.automation.sensors import champion_requests, silver_wait_reason
from eval_pipeline.core.ingest import BenchmarkSourceError
from eval_pipeline.jobs import model_evaluation_job
from eval_pipeline.resources import (
    AutomationResource,
    BenchmarkDatasetResource,
    MlflowResource,
    PromotionResource,
)

NIGHTLY_CRON = os.environ.get("EVAL_PIPELINE_NIGHTLY_CRON", "0 2 * * *")


@dg.schedule(
    cron_schedule=NIGHTLY_CRON,
    job=model_evaluation_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_champion_regression(
    context: dg.ScheduleEvaluationContext,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    automation: AutomationResource,
    promotion: PromotionResource,
):
    """Re-evaluate each watched model's champion every night against the latest dataset.

    Each run is tagged `eval_pipeline/trigger=nightly`; when it ends, `regression_record_job`
    tags the version with the outcome. A failing gate shows as a failed run and failed checks.
    """
    try:
        version = dataset.current_version()
    except BenchmarkSourceError as error:
        return dg.SkipReason(f"Cannot read the benchmark files: {error}")
    wait = silver_wait_reason(dataset, version, context.instance)
    if wait is not None:
        return dg.SkipReason(f"Nightly regression skipped. {wait}")

    night = context.scheduled_execution_time.date().isoformat()
    requests = champion_requests(
        mlflow, dataset, automation, promotion, "nightly", run_key_prefix=f"nightly-{night}:"
    )
    if not requests:
        return dg.SkipReason(
            f"No watched model has a {promotion.champion_alias!r} alias; nothing to re-check."
        )
    return requests
