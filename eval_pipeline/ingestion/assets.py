"""Bronze: raw benchmark samples and the rows that failed validation."""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pyspark.sql import functions as F

from eval_pipeline.lakehouse import append_rows, read_rows, replace_rows, table_version
from eval_pipeline.resources import BenchmarkDatasetResource, LakehouseResource, SparkResource

BENCHMARK_SAMPLES = dg.AssetKey(["bronze", "benchmark_samples"])
BENCHMARK_QUARANTINE = dg.AssetKey(["bronze", "benchmark_quarantine"])


def _to_spark(spark, frame: pd.DataFrame, ingested_at: datetime):
    # An explicit all-string schema keeps empty frames and all-null columns writable.
    schema = ", ".join(
        f"`{column}` {'int' if column == 'row_number' else 'string'}" for column in frame.columns
    )
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    rows = [tuple(record[column] for column in frame.columns) for record in records]
    return spark.createDataFrame(rows, schema).withColumn(
        "ingested_at", F.lit(ingested_at).cast("timestamp")
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            BENCHMARK_SAMPLES,
            group_name="bronze",
            kinds={"spark", "delta"},
            description="Accepted benchmark rows with dataset name, version (content hash), "
            "source file and ingestion time; one set of rows per dataset version.",
        ),
        dg.AssetSpec(
            BENCHMARK_QUARANTINE,
            group_name="bronze",
            kinds={"spark", "delta"},
            description="Benchmark rows that failed validation, kept with their reason codes, "
            "a message and the raw record.",
        ),
    ],
)
def benchmark_bronze(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
):
    """Ingest the configured CSV, JSONL and Parquet files into the Bronze Delta tables.

    A dataset version that is already in the ingestion log is not written again, so ingesting
    the same files twice leaves every table at the same Delta version.
    """
    result = dataset.ingest()
    context.log.info(
        "Dataset %s version %s: %d rows read from %s",
        result.dataset_name,
        result.dataset_version,
        result.rows_read,
        result.source_files,
    )
    session = spark.get_session()
    samples_path = lakehouse.table_path("bronze", "benchmark_samples")
    quarantine_path = lakehouse.table_path("bronze", "benchmark_quarantine")
    log_path = lakehouse.table_path("bronze", "benchmark_ingestions")
    match = {"dataset_name": result.dataset_name, "dataset_version": result.dataset_version}

    previous = read_rows(session, log_path, match)
    already_ingested = previous is not None and previous.limit(1).count() > 0
    if already_ingested:
        # The session time zone is UTC (see SparkResource), so this string is UTC too.
        first = previous.select(
            F.date_format(F.min("ingested_at"), "yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'").alias("at")
        ).first()
        ingested_at_text = first["at"]
        context.log.info(
            "Dataset version %s was ingested at %s; the tables stay unchanged.",
            result.dataset_version,
            ingested_at_text,
        )
        samples_version = table_version(session, samples_path)
        quarantine_version = table_version(session, quarantine_path)
    else:
        ingested_at = datetime.now(UTC)
        ingested_at_text = ingested_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        samples_version = replace_rows(
            _to_spark(session, result.accepted, ingested_at),
            samples_path,
            match,
            partition_by=["dataset_name"],
        )
        quarantine_version = replace_rows(
            _to_spark(session, result.quarantined, ingested_at),
            quarantine_path,
            match,
            partition_by=["dataset_name"],
        )
        log_row = pd.DataFrame(
            [
                {
                    **match,
                    "source_files": ",".join(result.source_files),
                    "rows_read": result.rows_read,
                    "rows_accepted": len(result.accepted),
                    "rows_quarantined": len(result.quarantined),
                }
            ]
        )
        append_rows(
            session.createDataFrame(log_row).withColumn(
                "ingested_at", F.lit(ingested_at).cast("timestamp")
            ),
            log_path,
        )

    reasons = (
        result.quarantined["reason"].str.split(",").explode().value_counts().to_dict()
        if len(result.quarantined)
        else {}
    )
    common = {
        "dataset_name": result.dataset_name,
        "dataset_version": result.dataset_version,
        "source_files": dg.MetadataValue.json(result.source_files),
        "rows_read": result.rows_read,
        "rows_accepted": len(result.accepted),
        "rows_quarantined": len(result.quarantined),
        "already_ingested": already_ingested,
        "ingested_at": ingested_at_text,
    }
    yield dg.MaterializeResult(
        asset_key=BENCHMARK_SAMPLES,
        metadata={
            **common,
            "dagster/row_count": len(result.accepted),
            "delta_table_version": samples_version,
            "table_path": dg.MetadataValue.path(samples_path),
            "regions": dg.MetadataValue.json(
                result.accepted["region"].value_counts().sort_index().to_dict()
            ),
        },
        data_version=dg.DataVersion(result.dataset_version),
    )
    yield dg.MaterializeResult(
        asset_key=BENCHMARK_QUARANTINE,
        metadata={
            **common,
            "dagster/row_count": len(result.quarantined),
            "delta_table_version": quarantine_version,
            "table_path": dg.MetadataValue.path(quarantine_path),
            "reasons": dg.MetadataValue.json(reasons),
            "preview": dg.MetadataValue.md(
                result.quarantined[["source_file", "row_number", "item_id", "reason", "detail"]]
                .head(10)
                .to_markdown(index=False)
            )
            if len(result.quarantined)
            else dg.MetadataValue.text("no quarantined rows"),
        },
        data_version=dg.DataVersion(result.dataset_version),
    )
