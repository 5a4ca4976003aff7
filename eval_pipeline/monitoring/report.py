"""The governance dashboard as an asset: regenerated from the Gold tables when they change."""

import dagster as dg
import pandas as pd

from eval_pipeline.gates.decisions import GATE_DECISIONS
from eval_pipeline.lakehouse import read_rows
from eval_pipeline.monitoring.dashboard import DashboardData, flagged_days, render_dashboard
from eval_pipeline.monitoring.gold import (
    INPUT_DRIFT,
    LIVE_ACCURACY,
    MONITORING_ALERTS,
    TRAFFIC_METRICS,
)
from eval_pipeline.resources import (
    BenchmarkDatasetResource,
    LakehouseResource,
    MonitoringResource,
    SparkResource,
)
from eval_pipeline.results.assets import EVAL_SUMMARY

GOVERNANCE_DASHBOARD = dg.AssetKey(["reports", "governance_dashboard"])

_SOURCES = (EVAL_SUMMARY, GATE_DECISIONS, TRAFFIC_METRICS, INPUT_DRIFT, MONITORING_ALERTS)


def _table(session, lakehouse: LakehouseResource, key: dg.AssetKey, match=None) -> pd.DataFrame:
    rows = read_rows(session, lakehouse.table_path(key.path[0], key.path[1]), match)
    return rows.toPandas() if rows is not None else pd.DataFrame()


def load_dashboard_data(session, lakehouse: LakehouseResource, dataset_name: str) -> DashboardData:
    """Read every Gold table that the dashboard shows; a missing table reads as empty."""
    dataset = {"dataset_name": dataset_name}
    return DashboardData(
        eval_summary=_table(session, lakehouse, EVAL_SUMMARY, dataset),
        gate_decisions=_table(session, lakehouse, GATE_DECISIONS, dataset),
        traffic_metrics=_table(session, lakehouse, TRAFFIC_METRICS),
        input_drift=_table(session, lakehouse, INPUT_DRIFT),
        alerts=_table(session, lakehouse, MONITORING_ALERTS),
        live_accuracy=_table(session, lakehouse, LIVE_ACCURACY),
    )


@dg.asset(
    key=GOVERNANCE_DASHBOARD,
    deps=[
        dg.AssetDep(key, partition_mapping=dg.AllPartitionMapping())
        for key in (*_SOURCES, LIVE_ACCURACY)
    ],
    group_name="monitoring",
    kinds={"html"},
    # Rebuilt whenever a partition of a Gold table it reads is materialized, once the Dagster
    # daemon (part of `make ui`) runs the default automation sensor.
    automation_condition=dg.AutomationCondition.any_deps_updated()
    & ~dg.AutomationCondition.in_progress(),
)
def governance_dashboard(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
    monitoring: MonitoringResource,
) -> dg.MaterializeResult:
    """Static HTML page with plots of accuracy, gates, traffic, latency, drift and alerts.

    Per model version it shows pass rate by region and noise level with 95% intervals, the
    trend over versions, gate outcomes, and per day the regional usage, latency, input drift,
    live-weighted accuracy and the alerts. `eval-pipeline dashboard` serves the folder on
    127.0.0.1.
    """
    session = spark.get_session()
    data = load_dashboard_data(session, lakehouse, dataset.name)
    policy = monitoring.load_policy().policy
    rendered = render_dashboard(data, monitoring.dashboard_dir, policy, source=lakehouse.root)
    days = flagged_days(data.alerts)
    context.log.info(
        "Dashboard written to %s: %d evaluated versions, %d monitored days, %d flagged",
        rendered.index_path,
        data.eval_summary["partition_key"].nunique() if len(data.eval_summary) else 0,
        data.traffic_metrics["request_date"].nunique() if len(data.traffic_metrics) else 0,
        len(days),
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(rendered.index_path)),
            "sections": dg.MetadataValue.json(rendered.sections),
            "flagged_days": dg.MetadataValue.md(
                days.to_markdown(index=False) if len(days) else "none"
            ),
            "accuracy_plot": dg.MetadataValue.md(rendered.plot_markdown("accuracy")),
            "drift_plot": dg.MetadataValue.md(rendered.plot_markdown("drift")),
        }
    )
