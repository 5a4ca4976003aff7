"""Jobs that users launch from the UI, the command line, sensors and schedules."""

import dagster as dg

from eval_pipeline.gates.decisions import GATE_DECISIONS
from eval_pipeline.ingestion.assets import BENCHMARK_QUARANTINE, BENCHMARK_SAMPLES
from eval_pipeline.items.assets import EVALUATION_ITEMS
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.results.assets import EVAL_SUMMARY, ITEM_RESULTS, ROBUSTNESS_GAPS

# Run tags that sensors, schedules and the command line set, and that the follow-up sensors read.
TRIGGER_TAG = "eval_pipeline/trigger"
DATASET_VERSION_TAG = "eval_pipeline/dataset_version"
EVALUATION_RUN_TAG = "eval_pipeline/evaluation_run_id"
# Runs launched by `eval-pipeline`; the follow-up sensors skip them because `gate --promote`
# and `demo` promote on their own.
COMMAND_LINE_TRIGGER = "cli"
# The run queue limits runs carrying this tag (dagster.yaml), because each starts a Spark
# driver and Python workers that need a core of their own.
ENGINE_TAG = "eval_pipeline/engine"
SPARK_ENGINE = {ENGINE_TAG: "spark"}

benchmark_refresh_job = dg.define_asset_job(
    name="benchmark_refresh_job",
    selection=dg.AssetSelection.assets(BENCHMARK_SAMPLES, BENCHMARK_QUARANTINE, EVALUATION_ITEMS),
    description="Ingest the configured benchmark files (Bronze) and build evaluation items "
    "(Silver).",
    tags=SPARK_ENGINE,
)

model_evaluation_job = dg.define_asset_job(
    name="model_evaluation_job",
    selection=dg.AssetSelection.assets(
        ITEM_RESULTS, EVAL_SUMMARY, ROBUSTNESS_GAPS, GATE_DECISIONS
    ).without_checks()
    | dg.AssetSelection.checks_for_assets(EVAL_SUMMARY),
    partitions_def=model_versions_partitions,
    description="Evaluate one registered model version (one partition) on the current "
    "evaluation items, summarize the results and decide its gates (Gold).",
    tags=SPARK_ENGINE,
)
