"""Silver: evaluation items, one row per benchmark item and noise level, with their prompts."""

import dagster as dg
from pyspark.sql import functions as F

from eval_pipeline.core.items import ITEM_COLUMNS, make_item_builder
from eval_pipeline.core.noise import noise_spec_json
from eval_pipeline.ingestion.assets import BENCHMARK_SAMPLES
from eval_pipeline.lakehouse import read_rows, replace_rows
from eval_pipeline.resources import BenchmarkDatasetResource, LakehouseResource, SparkResource

EVALUATION_ITEMS = dg.AssetKey(["silver", "evaluation_items"])

ITEM_SCHEMA = ", ".join(
    f"`{column}` {'int' if column == 'noise_seed' else 'string'}" for column in ITEM_COLUMNS
)


class MissingUpstreamDataError(RuntimeError):
    """Raised when an asset finds no rows of the current dataset version upstream."""


@dg.asset(
    key=EVALUATION_ITEMS,
    deps=[BENCHMARK_SAMPLES],
    group_name="silver",
    kinds={"spark", "delta"},
    code_version="1",
)
def evaluation_items(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    dataset: BenchmarkDatasetResource,
) -> dg.MaterializeResult:
    """Evaluation items of the current dataset version: the clean text and each noisy variant.

    Each row stores its prompt, the template id and hash, and the noise specification and seed
    that produced it, so any row can be regenerated exactly.
    """
    version = dataset.current_version()
    template = dataset.template
    context.log.info(
        "Building items for dataset %s version %s with template %s",
        dataset.name,
        version,
        template.template_id,
    )
    session = spark.get_session()
    match = {"dataset_name": dataset.name, "dataset_version": version}
    samples = read_rows(session, lakehouse.table_path("bronze", "benchmark_samples"), match)
    if samples is None or samples.limit(1).count() == 0:
        raise MissingUpstreamDataError(
            f"Bronze has no samples for dataset {dataset.name!r} version {version}; materialize "
            f"{BENCHMARK_SAMPLES.to_user_string()} first (or check that the dataset's files "
            "contain valid rows)."
        )

    builder = make_item_builder(template, dataset.noise_specs, dataset.noise_seed)
    items = (
        samples.drop("ingested_at")
        .mapInPandas(builder, ITEM_SCHEMA)
        .withColumn("created_at", F.current_timestamp())
    )
    path = lakehouse.table_path("silver", "evaluation_items")
    delta_version = replace_rows(items, path, match, partition_by=["dataset_name"])

    written = read_rows(session, path, match)
    counts = written.groupBy("noise_level").count().toPandas()
    by_level = dict(zip(counts["noise_level"], counts["count"].astype(int), strict=True))
    example = written.where("noise_level != 'clean'").limit(3).select("noise_level", "text")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(sum(by_level.values())),
            "dataset_name": dataset.name,
            "dataset_version": version,
            "rows_by_noise_level": dg.MetadataValue.json(by_level),
            "template_id": template.template_id,
            "template_hash": template.template_hash,
            "noise_spec": dg.MetadataValue.json(noise_spec_json(dataset.noise_specs)),
            "noise_seed": dataset.noise_seed,
            "delta_table_version": delta_version,
            "table_path": dg.MetadataValue.path(path),
            "noisy_examples": dg.MetadataValue.md(example.toPandas().to_markdown(index=False)),
        },
        data_version=dg.DataVersion(f"{version}-{template.template_hash}"),
    )
