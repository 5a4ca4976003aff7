"""Gold monitoring per day, model version and region: traffic, drift, alerts, live accuracy.

The monitoring checks are computed in the step that writes the tables, like the deployment
gates. They never block: a WARN or ERROR result shows in the Dagster UI, adds one row per
failing slice to ``gold/monitoring_alerts`` and one ``MONITORING_ALERT`` log line with the
row as JSON, which a sensor or a log shipper can forward.
"""

import json
from datetime import timedelta

import dagster as dg
import pandas as pd

from eval_pipeline.core.monitoring import (
    ALERT_COLUMNS,
    ALL,
    CHECK_DEGRADATION,
    CHECK_EMBEDDING_DRIFT,
    CHECK_ERROR_RATE,
    CHECK_INPUT_DRIFT,
    CHECK_LATENCY,
    CHECK_REGION_SHARE,
    DRIFT_COLUMNS,
    ERROR,
    METRIC_COLUMNS,
    Finding,
    alert_rows,
    evaluate_rules,
    input_drift,
    traffic_metrics,
    worst_severity,
)
from eval_pipeline.core.partition_keys import encode_partition_key
from eval_pipeline.core.reweighting import reweighted_pass_rate, traffic_mix
from eval_pipeline.core.scoring import SemanticScorer
from eval_pipeline.gates.decisions import GATE_DECISIONS
from eval_pipeline.lakehouse import read_rows, replace_rows
from eval_pipeline.monitoring.assets import (
    BENCHMARK_FEATURES,
    REQUEST_FEATURES,
    benchmark_feature_rows,
    monitoring_days,
    partition_day,
    spark_frame,
)
from eval_pipeline.resources import (
    BenchmarkDatasetResource,
    LakehouseResource,
    MonitoringResource,
    SparkResource,
)
from eval_pipeline.results.assets import EVAL_SUMMARY

TRAFFIC_METRICS = dg.AssetKey(["gold", "traffic_metrics"])
INPUT_DRIFT = dg.AssetKey(["gold", "input_drift"])
MONITORING_ALERTS = dg.AssetKey(["gold", "monitoring_alerts"])
LIVE_ACCURACY = dg.AssetKey(["gold", "live_accuracy"])

# Days of request features before the monitored day that the default policy reads. A policy
# with another reference_window_days reads that many days, but this lineage still shows 7.
DEFAULT_WINDOW_DAYS = 7

CHECKS = {
    CHECK_LATENCY: (TRAFFIC_METRICS, "Latency percentile of each slice stays within budget."),
    CHECK_ERROR_RATE: (TRAFFIC_METRICS, "Error rate of each slice stays within budget."),
    CHECK_REGION_SHARE: (
        TRAFFIC_METRICS,
        "Each region's share of traffic stays close to its share in the reference window.",
    ),
    CHECK_DEGRADATION: (
        TRAFFIC_METRICS,
        "Pass rate of labelled requests does not drop against the reference window.",
    ),
    CHECK_INPUT_DRIFT: (
        INPUT_DRIFT,
        "PSI of each input feature against the benchmark and the reference window stays "
        "within the threshold.",
    ),
    CHECK_EMBEDDING_DRIFT: (
        INPUT_DRIFT,
        "Cosine distance of mean input embeddings against the benchmark and the reference "
        "window stays within the threshold.",
    ),
}

METRIC_SCHEMA = (
    "`request_date` string, `model_name` string, `model_version` string, `region` string, "
    "`requests` bigint, `traffic_share` double, `errors` bigint, `error_rate` double, "
    "`latency_p50_ms` double, `latency_p95_ms` double, `latency_p99_ms` double, "
    "`noisy_share` double, `labelled` bigint, `labelled_passes` bigint, "
    "`labelled_pass_rate` double"
)
DRIFT_SCHEMA = (
    "`request_date` string, `model_name` string, `model_version` string, `region` string, "
    "`reference` string, `feature` string, `n_current` bigint, `n_reference` bigint, "
    "`current_mean` double, `reference_mean` double, `psi` double, `js_distance` double, "
    "`embedding_distance` double"
)
ALERT_SCHEMA = (
    "`alert_id` string, `request_date` string, `check_name` string, `severity` string, "
    "`model_name` string, `model_version` string, `region` string, `reference` string, "
    "`feature` string, `observed` double, `threshold` double, `message` string"
)
LIVE_ACCURACY_COLUMNS = [
    "request_date", "model_name", "model_version", "partition_key", "dataset_version",
    "requests", "offline_pass_rate", "live_weighted_pass_rate", "ci_low", "ci_high",
    "covered_share", "labelled", "labelled_pass_rate", "traffic_mix",
]  # fmt: skip
LIVE_ACCURACY_SCHEMA = (
    "`request_date` string, `model_name` string, `model_version` string, "
    "`partition_key` string, `dataset_version` string, `requests` bigint, "
    "`offline_pass_rate` double, `live_weighted_pass_rate` double, `ci_low` double, "
    "`ci_high` double, `covered_share` double, `labelled` bigint, "
    "`labelled_pass_rate` double, `traffic_mix` string"
)


def monitoring_check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset, description=description, blocking=False)
        for name, (asset, description) in CHECKS.items()
    ]


def check_result(name: str, findings: list[Finding]) -> dg.AssetCheckResult:
    """Return the check's result: failed with the worst severity when any slice is flagged."""
    own = [finding for finding in findings if finding.check_name == name]
    flagged = [finding for finding in own if finding.severity is not None]
    severity = worst_severity(own)
    asset = CHECKS[name][0]
    metadata = {
        "slices_judged": len(own),
        "slices_flagged": len(flagged),
        "flagged": dg.MetadataValue.md(
            "\n".join(f"- {finding.severity}: {finding.message}" for finding in flagged) or "none"
        ),
    }
    if not own:
        metadata["note"] = "no slice had enough requests for this rule"
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=severity is None,
        severity=dg.AssetCheckSeverity.ERROR if severity == ERROR else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def _request_rows(session, lakehouse, first_day: str, last_day: str) -> pd.DataFrame:
    rows = read_rows(session, lakehouse.table_path("silver", "request_features"))
    if rows is None:
        return pd.DataFrame()
    selected = rows.where((rows.request_date >= first_day) & (rows.request_date <= last_day))
    return selected.toPandas()


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            TRAFFIC_METRICS,
            deps=[
                dg.AssetDep(
                    REQUEST_FEATURES,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-DEFAULT_WINDOW_DAYS
                    ),
                )
            ],
            group_name="monitoring",
            kinds={"delta"},
            description="Per day, model version and region (and ALL): requests, traffic "
            "share, latency p50/p95/p99, error rate, share of noisy inputs and pass rate of "
            "labelled requests.",
        ),
        dg.AssetSpec(
            INPUT_DRIFT,
            deps=[
                dg.AssetDep(
                    REQUEST_FEATURES,
                    partition_mapping=dg.TimeWindowPartitionMapping(
                        start_offset=-DEFAULT_WINDOW_DAYS
                    ),
                ),
                BENCHMARK_FEATURES,
            ],
            group_name="monitoring",
            kinds={"delta"},
            description="Per day, model version and region: PSI and Jensen-Shannon distance of "
            "each input feature, and cosine distance of mean sentence embeddings, against the "
            "benchmark and against the preceding days.",
        ),
        dg.AssetSpec(
            MONITORING_ALERTS,
            deps=[TRAFFIC_METRICS, INPUT_DRIFT],
            group_name="monitoring",
            kinds={"delta"},
            description="One row per monitoring check that flagged a slice: severity, check, "
            "slice, observed value, threshold and message.",
        ),
    ],
    check_specs=monitoring_check_specs(),
    partitions_def=monitoring_days,
)
def monitoring_gold(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
    monitoring: MonitoringResource,
):
    """Compute the day's traffic metrics and input drift, judge them and record the alerts."""
    day = partition_day(context)
    loaded = monitoring.load_policy()
    policy = loaded.policy
    session = spark.get_session()
    first = (day - timedelta(days=policy.reference_window_days)).isoformat()
    rows = _request_rows(session, lakehouse, first, day.isoformat())
    if rows.empty:
        rows = pd.DataFrame(columns=["request_date"])
    current = rows[rows["request_date"] == day.isoformat()]
    window = rows[rows["request_date"] < day.isoformat()]
    benchmark = benchmark_feature_rows(session, lakehouse, dataset.name)
    context.log.info(
        "Monitoring %s: %d requests, %d in the reference window from %s (policy %s)",
        day,
        len(current),
        len(window),
        first,
        loaded.content_hash,
    )

    metrics = traffic_metrics(current) if len(current) else pd.DataFrame(columns=METRIC_COLUMNS)
    window_metrics = (
        traffic_metrics(window) if len(window) else pd.DataFrame(columns=METRIC_COLUMNS)
    )
    drift = (
        input_drift(current, window, benchmark, policy, SemanticScorer().embed)
        if len(current)
        else pd.DataFrame(columns=DRIFT_COLUMNS)
    )
    findings = evaluate_rules(metrics, window_metrics, drift, policy)
    alerts = alert_rows(findings)
    for alert in alerts.to_dict("records"):
        line = json.dumps(alert, ensure_ascii=False, default=str)
        if alert["severity"] == ERROR:
            context.log.error("MONITORING_ALERT %s", line)
        else:
            context.log.warning("MONITORING_ALERT %s", line)

    match = {"request_date": day.isoformat()}
    versions = {}
    for key, frame, schema, columns in (
        (TRAFFIC_METRICS, metrics, METRIC_SCHEMA, METRIC_COLUMNS),
        (INPUT_DRIFT, drift, DRIFT_SCHEMA, DRIFT_COLUMNS),
        (MONITORING_ALERTS, alerts, ALERT_SCHEMA, ALERT_COLUMNS),
    ):
        path = lakehouse.table_path("gold", key.path[-1])
        versions[key] = replace_rows(
            spark_frame(session, frame, schema, columns), path, match, ["request_date"]
        )

    pooled = metrics[metrics["region"] == ALL]
    yield dg.MaterializeResult(
        asset_key=TRAFFIC_METRICS,
        metadata={
            "dagster/row_count": len(metrics),
            "request_date": day.isoformat(),
            "requests": int(pooled["requests"].sum()),
            "delta_table_version": versions[TRAFFIC_METRICS],
            "table_path": dg.MetadataValue.path(lakehouse.table_path("gold", "traffic_metrics")),
            "metrics": dg.MetadataValue.md(
                metrics.drop(columns=["request_date"]).to_markdown(index=False, floatfmt=".3f")
                if len(metrics)
                else "no requests"
            ),
        },
    )
    pooled_drift = drift[drift["region"] == ALL]
    yield dg.MaterializeResult(
        asset_key=INPUT_DRIFT,
        metadata={
            "dagster/row_count": len(drift),
            "request_date": day.isoformat(),
            "max_psi": float(pooled_drift["psi"].max()) if len(pooled_drift) else float("nan"),
            "delta_table_version": versions[INPUT_DRIFT],
            "table_path": dg.MetadataValue.path(lakehouse.table_path("gold", "input_drift")),
            "pooled_drift": dg.MetadataValue.md(
                pooled_drift[
                    ["model_version", "reference", "feature", "psi", "js_distance",
                     "embedding_distance"]
                ].to_markdown(index=False, floatfmt=".3f")
                if len(pooled_drift)
                else "no requests"
            ),
        },
    )  # fmt: skip
    yield dg.MaterializeResult(
        asset_key=MONITORING_ALERTS,
        metadata={
            "dagster/row_count": len(alerts),
            "request_date": day.isoformat(),
            "errors": int((alerts["severity"] == ERROR).sum()),
            "warnings": int((alerts["severity"] != ERROR).sum()),
            "policy_hash": loaded.content_hash,
            "delta_table_version": versions[MONITORING_ALERTS],
            "table_path": dg.MetadataValue.path(lakehouse.table_path("gold", "monitoring_alerts")),
        },
    )
    for name in CHECKS:
        yield check_result(name, findings)


def _summary_cells(session, lakehouse, dataset_name: str, partition_key: str) -> pd.DataFrame:
    rows = read_rows(
        session,
        lakehouse.table_path("gold", "eval_summary"),
        {"dataset_name": dataset_name, "partition_key": partition_key},
    )
    return rows.toPandas() if rows is not None else pd.DataFrame()


def live_accuracy_rows(requests: pd.DataFrame, summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Return one row per model version: offline, live-weighted and labelled pass rates.

    ``summaries`` maps a partition key to its ``gold/eval_summary`` rows; a version without
    an evaluation gets NaN offline figures.
    """
    rows = []
    for (day, name, version), group in requests.groupby(
        ["request_date", "model_name", "model_version"]
    ):
        key = encode_partition_key(name, version)
        summary = summaries.get(key, pd.DataFrame())
        mix = traffic_mix(group)
        if summary.empty:
            weighted = {"pass_rate": float("nan"), "ci_low": float("nan")}
            weighted |= {"ci_high": float("nan"), "covered_share": 0.0}
            offline = float("nan")
            dataset_version = None
        else:
            cells = summary[summary["slice"] == "cell"]
            weighted = reweighted_pass_rate(cells, mix)
            offline = float(summary.loc[summary["slice"] == "overall", "pass_rate"].iloc[0])
            dataset_version = str(summary["dataset_version"].iloc[0])
        labelled = group[group["label_passed"].notna()]
        rows.append(
            {
                "request_date": day,
                "model_name": name,
                "model_version": version,
                "partition_key": key,
                "dataset_version": dataset_version,
                "requests": len(group),
                "offline_pass_rate": offline,
                "live_weighted_pass_rate": weighted["pass_rate"],
                "ci_low": weighted["ci_low"],
                "ci_high": weighted["ci_high"],
                "covered_share": weighted["covered_share"],
                "labelled": len(labelled),
                "labelled_pass_rate": float(labelled["label_passed"].astype(bool).mean())
                if len(labelled)
                else float("nan"),
                "traffic_mix": mix[["region", "noise_level", "share"]].to_json(orient="records"),
            }
        )
    return pd.DataFrame(rows, columns=LIVE_ACCURACY_COLUMNS)


@dg.asset(
    key=LIVE_ACCURACY,
    deps=[
        REQUEST_FEATURES,
        dg.AssetDep(EVAL_SUMMARY, partition_mapping=dg.AllPartitionMapping()),
        dg.AssetDep(GATE_DECISIONS, partition_mapping=dg.AllPartitionMapping()),
    ],
    partitions_def=monitoring_days,
    group_name="monitoring",
    kinds={"delta"},
)
def live_accuracy(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
) -> dg.MaterializeResult:
    """Offline pass rate of each served version re-weighted by the day's traffic mix.

    The offline summary weighs regions and noise levels alike. This asset weights each region
    x noise level cell by the day's share of requests in it, with the noise level estimated
    from the input features. The result estimates the accuracy that users see. It sits next
    to the pass rate of labelled requests when there are any.
    """
    day = partition_day(context)
    session = spark.get_session()
    requests = _request_rows(session, lakehouse, day.isoformat(), day.isoformat())
    summaries = {}
    if len(requests):
        for name, version in requests[["model_name", "model_version"]].drop_duplicates().values:
            key = encode_partition_key(name, version)
            summaries[key] = _summary_cells(session, lakehouse, dataset.name, key)
    frame = (
        live_accuracy_rows(requests, summaries)
        if len(requests)
        else pd.DataFrame(columns=LIVE_ACCURACY_COLUMNS)
    )
    missing = [key for key, summary in summaries.items() if summary.empty]
    if missing:
        context.log.warning(
            "No offline summary on dataset %s for %s; evaluate them to get live-weighted accuracy.",
            dataset.name,
            missing,
        )
    path = lakehouse.table_path("gold", "live_accuracy")
    delta_version = replace_rows(
        spark_frame(session, frame, LIVE_ACCURACY_SCHEMA, LIVE_ACCURACY_COLUMNS),
        path,
        {"request_date": day.isoformat()},
        partition_by=["request_date"],
    )
    shown = frame.drop(columns=["traffic_mix", "request_date", "partition_key"])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "request_date": day.isoformat(),
            "versions_without_evaluation": dg.MetadataValue.json(missing),
            "delta_table_version": delta_version,
            "table_path": dg.MetadataValue.path(path),
            "live_accuracy": dg.MetadataValue.md(
                shown.to_markdown(index=False, floatfmt=".3f") if len(frame) else "no requests"
            ),
        }
    )
