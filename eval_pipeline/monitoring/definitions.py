"""The monitoring assets and jobs, for eval_pipeline/definitions.py to assemble."""

from eval_pipeline.monitoring.assets import benchmark_features, inference_bronze, request_features
from eval_pipeline.monitoring.gold import live_accuracy, monitoring_gold
from eval_pipeline.monitoring.jobs import (
    daily_monitoring_job,
    dashboard_job,
    monitoring_reference_job,
)
from eval_pipeline.monitoring.report import governance_dashboard
from eval_pipeline.monitoring.schedules import daily_monitoring_schedule

MONITORING_ASSETS = [
    inference_bronze,
    benchmark_features,
    request_features,
    monitoring_gold,
    live_accuracy,
    governance_dashboard,
]
MONITORING_JOBS = [monitoring_reference_job, daily_monitoring_job, dashboard_job]
MONITORING_SCHEDULES = [daily_monitoring_schedule]
