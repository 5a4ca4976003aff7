"""Bronze and Silver of production traffic: request logs per day and their input features."""

from datetime import UTC, date, datetime

import dagster as dg
import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from eval_pipeline.core.features import FEATURE_COLUMNS, NUMERIC_FEATURES, build_vocabulary
from eval_pipeline.core.features import compute_features as feature_frame
from eval_pipeline.core.inference_log import (
    REQUEST_COLUMNS,
    read_day_files,
    search_day_traces,
    trace_records,
    validate_requests,
)
from eval_pipeline.core.monitoring import resolve_regions
from eval_pipeline.core.scoring import score_frame
from eval_pipeline.items.assets import EVALUATION_ITEMS, MissingUpstreamDataError
from eval_pipeline.lakehouse import read_rows, replace_rows
from eval_pipeline.resources import (
    BenchmarkDatasetResource,
    LakehouseResource,
    MlflowResource,
    MonitoringResource,
    SparkResource,
)

# Daily partitions of the request date (UTC). The start is the earliest day a backfill can
# reach; it has no effect on days without log files.
monitoring_days = dg.DailyPartitionsDefinition(start_date="2024-01-01")

INFERENCE_REQUESTS = dg.AssetKey(["bronze", "inference_requests"])
INFERENCE_QUARANTINE = dg.AssetKey(["bronze", "inference_quarantine"])
BENCHMARK_FEATURES = dg.AssetKey(["silver", "benchmark_features"])
REQUEST_FEATURES = dg.AssetKey(["silver", "request_features"])

REQUEST_SCHEMA = (
    "`request_id` string, `timestamp` timestamp, `request_date` string, `model_name` string, "
    "`model_version` string, `region` string, `input_text` string, `output` string, "
    "`latency_ms` double, `status` string, `error_code` string, `label` string, "
    "`source` string, `source_file` string, `row_number` int"
)
QUARANTINE_SCHEMA = (
    "`request_date` string, `source` string, `source_file` string, `row_number` int, "
    "`request_id` string, `reason` string, `detail` string, `raw_record` string"
)
_FEATURE_SCHEMA = (
    ", ".join(f"`{name}` double" for name in NUMERIC_FEATURES)
    + ", `detected_region` string, `estimated_noise_level` string"
)
BENCHMARK_FEATURE_SCHEMA = (
    "`dataset_name` string, `dataset_version` string, `item_id` string, `region` string, "
    "`noise_level` string, `term` string, `reference` string, `clean_text` string, "
    f"`input_text` string, {_FEATURE_SCHEMA}"
)
REQUEST_FEATURE_SCHEMA = (
    f"{REQUEST_SCHEMA}, `logged_region` string, `label_passed` boolean, {_FEATURE_SCHEMA}"
)


def _python_value(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if isinstance(value, np.generic) else value


def spark_frame(session, frame: pd.DataFrame, schema: str, columns: list[str]):
    """Return a Spark frame of ``frame[columns]`` with an explicit schema (empty frames too)."""
    rows = [
        tuple(_python_value(value) for value in row)
        for row in frame[columns].astype(object).itertuples(index=False, name=None)
    ]
    return session.createDataFrame(rows, schema)


def partition_day(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            INFERENCE_REQUESTS,
            group_name="monitoring",
            kinds={"spark", "delta"},
            description="Accepted production requests of one UTC day: time, model name and "
            "version, region when logged, input, output, latency and status, read from the "
            "landing folder and from MLflow traces.",
        ),
        dg.AssetSpec(
            INFERENCE_QUARANTINE,
            group_name="monitoring",
            kinds={"spark", "delta"},
            description="Request log rows of one day that failed validation, with their reason "
            "codes, a message and the raw record.",
        ),
    ],
    partitions_def=monitoring_days,
)
def inference_bronze(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    monitoring: MonitoringResource,
):
    """Ingest the day's request logs into Bronze; a re-run replaces exactly that day's rows."""
    day = partition_day(context)
    records = read_day_files(monitoring.traffic_dir, day)
    file_rows = len(records)
    if monitoring.trace_experiment:
        traces = search_day_traces(mlflow.settings.client(), monitoring.trace_experiment, day)
        records += trace_records(traces, monitoring.trace_experiment)
    accepted, quarantined = validate_requests(records, day, dataset.allowed_regions)
    context.log.info(
        "Requests of %s: %d rows read (%d from files under %s, %d from MLflow traces), %d "
        "accepted, %d quarantined",
        day,
        len(records),
        file_rows,
        monitoring.traffic_dir,
        len(records) - file_rows,
        len(accepted),
        len(quarantined),
    )
    if not records:
        context.log.warning("No request logs found for %s; the day's tables are emptied.", day)

    session = spark.get_session()
    match = {"request_date": day.isoformat()}
    ingested_at = datetime.now(UTC)
    requests_path = lakehouse.table_path("bronze", "inference_requests")
    quarantine_path = lakehouse.table_path("bronze", "inference_quarantine")
    requests_version = replace_rows(
        spark_frame(session, accepted, REQUEST_SCHEMA, list(accepted.columns)).withColumn(
            "ingested_at", _timestamp_literal(ingested_at)
        ),
        requests_path,
        match,
        partition_by=["request_date"],
    )
    quarantine_version = replace_rows(
        spark_frame(session, quarantined, QUARANTINE_SCHEMA, list(quarantined.columns)).withColumn(
            "ingested_at", _timestamp_literal(ingested_at)
        ),
        quarantine_path,
        match,
        partition_by=["request_date"],
    )

    reasons = (
        quarantined["reason"].str.split(",").explode().value_counts().to_dict()
        if len(quarantined)
        else {}
    )
    common = {
        "request_date": day.isoformat(),
        "rows_read": len(records),
        "rows_accepted": len(accepted),
        "rows_quarantined": len(quarantined),
        "trace_rows": len(records) - file_rows,
    }
    yield dg.MaterializeResult(
        asset_key=INFERENCE_REQUESTS,
        metadata={
            **common,
            "dagster/row_count": len(accepted),
            "delta_table_version": requests_version,
            "table_path": dg.MetadataValue.path(requests_path),
            "model_versions": dg.MetadataValue.json(
                {
                    f"{name} v{version}": int(count)
                    for (name, version), count in accepted.groupby(["model_name", "model_version"])
                    .size()
                    .items()
                }
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key=INFERENCE_QUARANTINE,
        metadata={
            **common,
            "dagster/row_count": len(quarantined),
            "delta_table_version": quarantine_version,
            "table_path": dg.MetadataValue.path(quarantine_path),
            "reasons": dg.MetadataValue.json({k: int(v) for k, v in reasons.items()}),
        },
    )


def _timestamp_literal(value: datetime):
    return F.lit(value).cast("timestamp")


def benchmark_feature_rows(session, lakehouse: LakehouseResource, dataset_name: str):
    rows = read_rows(
        session,
        lakehouse.table_path("silver", "benchmark_features"),
        {"dataset_name": dataset_name},
    )
    frame = rows.toPandas() if rows is not None else pd.DataFrame()
    if frame.empty:
        raise MissingUpstreamDataError(
            f"Silver has no benchmark features for dataset {dataset_name!r}; materialize "
            f"{BENCHMARK_FEATURES.to_user_string()} first (monitoring_reference_job)."
        )
    return frame


def benchmark_vocabulary(benchmark: pd.DataFrame):
    """Return the vocabulary of the clean benchmark rows of ``silver/benchmark_features``."""
    clean = benchmark[benchmark["noise_level"] == "clean"]
    columns = ["region", "term", "reference", "clean_text"]
    return build_vocabulary(clean[columns].rename(columns={"clean_text": "text"}))


@dg.asset(
    key=BENCHMARK_FEATURES,
    deps=[EVALUATION_ITEMS],
    group_name="monitoring",
    kinds={"spark", "delta"},
    code_version="1",
)
def benchmark_features(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
) -> dg.MaterializeResult:
    """Input features of every evaluation item (each noise level), the drift reference.

    The features are computed by the same functions as those of production requests, so
    the benchmark can stand for the inputs that a version was evaluated on.
    """
    version = dataset.current_version()
    session = spark.get_session()
    match = {"dataset_name": dataset.name, "dataset_version": version}
    rows = read_rows(session, lakehouse.table_path("silver", "evaluation_items"), match)
    items = rows.toPandas() if rows is not None else pd.DataFrame()
    if items.empty:
        raise MissingUpstreamDataError(
            f"Silver has no evaluation items for dataset {dataset.name!r} version {version}; "
            f"materialize {EVALUATION_ITEMS.to_user_string()} first."
        )
    vocabulary = benchmark_vocabulary(items)
    features = feature_frame(items["text"], vocabulary)
    frame = pd.concat(
        [
            items[["dataset_name", "dataset_version", "item_id", "region", "noise_level"]],
            items[["term", "reference", "clean_text"]],
            items[["text"]].rename(columns={"text": "input_text"}),
        ],
        axis=1,
    ).reset_index(drop=True)
    frame = pd.concat([frame, features], axis=1)
    columns = [
        "dataset_name", "dataset_version", "item_id", "region", "noise_level", "term",
        "reference", "clean_text", "input_text", *FEATURE_COLUMNS,
    ]  # fmt: skip
    path = lakehouse.table_path("silver", "benchmark_features")
    delta_version = replace_rows(
        spark_frame(session, frame, BENCHMARK_FEATURE_SCHEMA, columns),
        path,
        {"dataset_name": dataset.name},
        partition_by=["dataset_name"],
    )
    means = frame.groupby("noise_level")[list(NUMERIC_FEATURES)].mean()
    context.log.info(
        "Benchmark features of %s version %s: %d rows", dataset.name, version, len(frame)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "dataset_name": dataset.name,
            "dataset_version": version,
            "vocabulary_words": len(vocabulary.words),
            "regional_terms": len(vocabulary.region_terms),
            "delta_table_version": delta_version,
            "table_path": dg.MetadataValue.path(path),
            "feature_means": dg.MetadataValue.md(means.to_markdown(floatfmt=".3f")),
        },
        data_version=dg.DataVersion(version),
    )


def label_verdicts(requests: pd.DataFrame) -> pd.Series:
    """Return whether each labelled request passed the offline pass rule, None if unlabelled."""
    verdicts = pd.Series([None] * len(requests), index=requests.index, dtype=object)
    labelled = requests[requests["label"].notna()]
    if labelled.empty:
        return verdicts
    scored = score_frame(
        pd.DataFrame(
            {
                "output": labelled["output"],
                "reference": labelled["label"],
                "error_code": labelled["error_code"].where(labelled["status"] == "error", None),
            }
        )
    )
    verdicts.loc[labelled.index] = scored["passed"].astype(bool)
    return verdicts


@dg.asset(
    key=REQUEST_FEATURES,
    deps=[INFERENCE_REQUESTS, BENCHMARK_FEATURES],
    partitions_def=monitoring_days,
    group_name="monitoring",
    kinds={"spark", "delta"},
    code_version="1",
)
def request_features(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
) -> dg.MaterializeResult:
    """Features of each accepted request of the day, its resolved region and label verdict.

    The region is the logged one, else the one detected from the text, else ``UNKNOWN``.
    Requests with a label (a reference answer from feedback or a judge) are scored with the
    offline pass rule, so live accuracy can be compared with the evaluation.
    """
    day = partition_day(context)
    session = spark.get_session()
    rows = read_rows(
        session,
        lakehouse.table_path("bronze", "inference_requests"),
        {"request_date": day.isoformat()},
    )
    if rows is None:
        raise MissingUpstreamDataError(
            f"Bronze has no request table yet; materialize {INFERENCE_REQUESTS.to_user_string()} "
            f"for {day} first."
        )
    requests = rows.drop("ingested_at").toPandas()
    vocabulary = benchmark_vocabulary(benchmark_feature_rows(session, lakehouse, dataset.name))
    features = feature_frame(requests["input_text"], vocabulary)
    frame = pd.concat([requests.reset_index(drop=True), features], axis=1)
    frame["logged_region"] = frame["region"]
    frame["region"] = resolve_regions(frame["region"], frame["detected_region"])
    frame["label_passed"] = label_verdicts(frame)

    columns = [
        *REQUEST_COLUMNS,
        "logged_region",
        "label_passed",
        *FEATURE_COLUMNS,
    ]
    path = lakehouse.table_path("silver", "request_features")
    delta_version = replace_rows(
        spark_frame(session, frame, REQUEST_FEATURE_SCHEMA, columns),
        path,
        {"request_date": day.isoformat()},
        partition_by=["request_date"],
    )
    detected = int((frame["logged_region"].isna() & frame["detected_region"].notna()).sum())
    context.log.info(
        "Features of %d requests on %s: %d regions detected from text, %d labelled",
        len(frame),
        day,
        detected,
        int(frame["label_passed"].notna().sum()),
    )
    noise = frame["estimated_noise_level"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(frame),
            "request_date": day.isoformat(),
            "regions_detected_from_text": detected,
            "labelled_requests": int(frame["label_passed"].notna().sum()),
            "estimated_noise_levels": dg.MetadataValue.json({k: int(v) for k, v in noise.items()}),
            "delta_table_version": delta_version,
            "table_path": dg.MetadataValue.path(path),
        }
    )
