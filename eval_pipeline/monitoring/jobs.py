"""Jobs of post-deployment monitoring: the drift reference, each day's monitoring, the dashboard."""

import dagster as dg

from eval_pipeline.jobs import SPARK_ENGINE
from eval_pipeline.monitoring.assets import (
    BENCHMARK_FEATURES,
    INFERENCE_QUARANTINE,
    INFERENCE_REQUESTS,
    REQUEST_FEATURES,
    monitoring_days,
)
from eval_pipeline.monitoring.gold import (
    INPUT_DRIFT,
    LIVE_ACCURACY,
    MONITORING_ALERTS,
    TRAFFIC_METRICS,
)
from eval_pipeline.monitoring.report import GOVERNANCE_DASHBOARD

DAILY_MONITORING_ASSETS = (
    INFERENCE_REQUESTS,
    INFERENCE_QUARANTINE,
    REQUEST_FEATURES,
    TRAFFIC_METRICS,
    INPUT_DRIFT,
    MONITORING_ALERTS,
    LIVE_ACCURACY,
)

monitoring_reference_job = dg.define_asset_job(
    name="monitoring_reference_job",
    selection=dg.AssetSelection.assets(BENCHMARK_FEATURES),
    description="Compute the input features of the evaluation items, the reference that live "
    "traffic is compared with. Run it after the benchmark changes.",
    tags=SPARK_ENGINE,
)

daily_monitoring_job = dg.define_asset_job(
    name="daily_monitoring_job",
    selection=dg.AssetSelection.assets(*DAILY_MONITORING_ASSETS),
    partitions_def=monitoring_days,
    description="Ingest one day of production requests (one partition), compute their "
    "features, traffic metrics, input drift and live-weighted accuracy, and run the "
    "monitoring checks.",
    tags=SPARK_ENGINE,
)

dashboard_job = dg.define_asset_job(
    name="dashboard_job",
    selection=dg.AssetSelection.assets(GOVERNANCE_DASHBOARD),
    description="Regenerate the governance dashboard from the Gold tables.",
    tags=SPARK_ENGINE,
)
