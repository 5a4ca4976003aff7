"""The Dagster code location: every asset, job and resource of eval_pipeline."""

import dagster as dg

from eval_pipeline.automation.schedules import nightly_champion_regression
from eval_pipeline.automation.sensors import (
    benchmark_dataset_sensor,
    evaluate_champions_after_refresh,
    model_registry_sensor,
    promote_after_evaluation,
    promote_after_failed_evaluation,
)
from eval_pipeline.gates.promotion import promotion_job, regression_record_job
from eval_pipeline.ingestion.assets import benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.jobs import benchmark_refresh_job, model_evaluation_job
from eval_pipeline.monitoring.definitions import (
    MONITORING_ASSETS,
    MONITORING_JOBS,
    MONITORING_SCHEDULES,
)
from eval_pipeline.resources import build_resources
from eval_pipeline.results.assets import evaluation_summary, item_results

# The in-process executor runs a job's steps in one process, so they share one SparkSession
# instead of starting a JVM per step (about 6 s each on two cores).
defs = dg.Definitions(
    assets=[
        benchmark_bronze,
        evaluation_items,
        item_results,
        evaluation_summary,
        *MONITORING_ASSETS,
    ],
    jobs=[
        benchmark_refresh_job,
        model_evaluation_job,
        promotion_job,
        regression_record_job,
        *MONITORING_JOBS,
    ],
    sensors=[
        model_registry_sensor,
        benchmark_dataset_sensor,
        evaluate_champions_after_refresh,
        promote_after_evaluation,
        promote_after_failed_evaluation,
    ],
    schedules=[nightly_champion_regression, *MONITORING_SCHEDULES],
    resources=build_resources(),
    executor=dg.in_process_executor,
)
