"""Gold: per-item outputs and scores, and summaries by region and noise level, per model version.

Every asset here is partitioned by registered model version. Rows carry the partition key, the
model name and version it decodes to, and the dataset they were evaluated on. Re-materializing
a partition replaces exactly that partition's rows for the current dataset.
"""

import hashlib
import json
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd
from pyspark.sql import functions as F

from eval_pipeline.core.inference import make_partition_predictor
from eval_pipeline.core.noise import noise_spec_json
from eval_pipeline.core.partition_keys import ModelVersionRef, decode_partition_key
from eval_pipeline.core.registry import (
    PARTITION_KEY_TAG,
    get_model_version,
    log_metrics,
    metric_name,
    set_run_tags,
    start_or_resume_evaluation_run,
)
from eval_pipeline.core.scoring import PASS_RULE, SCORER_VERSIONS, score_frame
from eval_pipeline.core.stats import robustness_gaps, summarize
from eval_pipeline.core.versioning import code_version
from eval_pipeline.gates.decisions import (
    GATE_DECISIONS,
    GateEvidence,
    champion_evidence,
    decide_version,
    decision_row,
    gate_check_results,
    gate_check_specs,
    results_table,
    write_decision,
)
from eval_pipeline.items.assets import EVALUATION_ITEMS, ITEM_SCHEMA, MissingUpstreamDataError
from eval_pipeline.lakehouse import read_rows, replace_rows, table_version
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import (
    BenchmarkDatasetResource,
    GatePolicyResource,
    LakehouseResource,
    MlflowResource,
    PromotionResource,
    SparkResource,
)

ITEM_RESULTS = dg.AssetKey(["gold", "item_results"])
EVAL_SUMMARY = dg.AssetKey(["gold", "eval_summary"])
ROBUSTNESS_GAPS = dg.AssetKey(["gold", "robustness_gaps"])

PREDICTION_SCHEMA = (
    f"{ITEM_SCHEMA}, `output` string, `latency_ms` double, `error_code` string, "
    "`error_message` string"
)
SCORED_SCHEMA = (
    f"{PREDICTION_SCHEMA}, `exact_match` boolean, `chrf` double, "
    "`semantic_similarity` double, `passed` boolean"
)


class InferenceConfig(dg.Config):
    """Run settings for model inference over the evaluation items."""

    batch_size: int = 1
    """Items per model.predict call; 1 measures latency per item."""


def _score_batches(batches):
    for batch in batches:
        yield score_frame(batch)


def evaluation_identity(
    ref: ModelVersionRef, dataset: BenchmarkDatasetResource, dataset_version: str
) -> dict[str, str]:
    """Return the MLflow params that identify one evaluation of a model version."""
    return {
        "model_name": ref.name,
        "model_version": ref.version,
        "model_uri": ref.uri,
        "partition_key": ref.partition_key,
        "dataset_name": dataset.name,
        "dataset_version": dataset_version,
        "template_id": dataset.template.template_id,
        "template_hash": dataset.template.template_hash,
        "noise_spec": noise_spec_json(dataset.noise_specs),
        "noise_seed": str(dataset.noise_seed),
        "scorer_versions": json.dumps(SCORER_VERSIONS, sort_keys=True),
        "pass_rule": PASS_RULE,
        "code_version": code_version(),
    }


def evaluation_key(identity: dict[str, str]) -> str:
    text = json.dumps(identity, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@dg.asset(
    key=ITEM_RESULTS,
    deps=[EVALUATION_ITEMS],
    partitions_def=model_versions_partitions,
    group_name="gold",
    kinds={"spark", "delta", "mlflow"},
    code_version="1",
)
def item_results(
    context: dg.AssetExecutionContext,
    config: InferenceConfig,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
) -> dg.MaterializeResult:
    """Output, latency, error code and scores of one model version for every evaluation item.

    The model is loaded from `models:/<name>/<version>` as an MLflow pyfunc inside Spark's
    `mapInPandas`, so inference and scoring run on the executors. A failing item is a row with
    an error code, never a failed run.
    """
    ref = decode_partition_key(context.partition_key)
    settings = mlflow.settings
    get_model_version(settings, ref)
    version = dataset.current_version()
    context.log.info(
        "Evaluating %s (partition %s) on dataset %s version %s",
        ref.uri,
        context.partition_key,
        dataset.name,
        version,
    )

    session = spark.get_session()
    match = {"dataset_name": dataset.name, "dataset_version": version}
    items = read_rows(session, lakehouse.table_path("silver", "evaluation_items"), match)
    if items is None or items.limit(1).count() == 0:
        raise MissingUpstreamDataError(
            f"Silver has no evaluation items for dataset {dataset.name!r} version {version}; "
            f"materialize {EVALUATION_ITEMS.to_user_string()} first."
        )

    identity = evaluation_identity(ref, dataset, version)
    run_id = start_or_resume_evaluation_run(
        settings,
        evaluation_key(identity),
        run_name=f"{ref.name}-v{ref.version}-{dataset.name}-{version[:8]}",
        params=identity,
        tags={PARTITION_KEY_TAG: context.partition_key, "dagster.run_id": context.run.run_id},
    )
    predictor = make_partition_predictor(
        ref.uri, settings.tracking_uri, settings.registry_uri, batch_size=config.batch_size
    )
    results = (
        items.drop("created_at")
        .mapInPandas(predictor, PREDICTION_SCHEMA)
        .mapInPandas(_score_batches, SCORED_SCHEMA)
        .withColumn("partition_key", F.lit(context.partition_key))
        .withColumn("model_name", F.lit(ref.name))
        .withColumn("model_version", F.lit(ref.version))
        .withColumn("mlflow_run_id", F.lit(run_id))
        .withColumn("evaluated_at", F.current_timestamp())
    )
    path = lakehouse.table_path("gold", "item_results")
    table_match = {"dataset_name": dataset.name, "partition_key": context.partition_key}
    delta_version = replace_rows(
        results, path, table_match, partition_by=["dataset_name", "partition_key"]
    )

    written = read_rows(session, path, table_match).toPandas()
    client = settings.client()
    with tempfile.TemporaryDirectory() as folder:
        item_file = Path(folder) / "item_results.parquet"
        written.to_parquet(item_file, index=False)
        client.log_artifact(run_id, str(item_file), artifact_path="evaluation")
    client.set_model_version_tag(ref.name, ref.version, PARTITION_KEY_TAG, context.partition_key)
    client.set_model_version_tag(
        ref.name, ref.version, f"eval_pipeline.run_id.{dataset.name}", run_id
    )
    set_run_tags(
        settings,
        run_id,
        {"item_results_delta_version": str(delta_version), "dagster.run_id": context.run.run_id},
    )

    errors = written["error_code"].dropna().value_counts().to_dict()
    context.log.info(
        "Wrote %d item results for %s: %d passed, %d errors",
        len(written),
        ref.uri,
        int(written["passed"].sum()),
        sum(errors.values()),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(written),
            "model_name": ref.name,
            "model_version": ref.version,
            "model_uri": ref.uri,
            "dataset_name": dataset.name,
            "dataset_version": version,
            "passed": int(written["passed"].sum()),
            "errors_by_code": dg.MetadataValue.json({k: int(v) for k, v in errors.items()}),
            "delta_table_version": delta_version,
            "table_path": dg.MetadataValue.path(path),
            "mlflow_run_id": run_id,
            "scorer_versions": dg.MetadataValue.json(SCORER_VERSIONS),
        },
        data_version=dg.DataVersion(f"{version}-{run_id}-{delta_version}"),
    )


def _summary_metrics(summary: pd.DataFrame, gaps: pd.DataFrame) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for row in summary.itertuples(index=False):
        prefix = {
            "cell": ("cell", row.region, row.noise_level),
            "region": ("region", row.region),
            "noise_level": ("noise", row.noise_level),
            "overall": ("overall",),
        }[row.slice]
        for field in ("pass_rate", "ci_low", "ci_high", "n", "error_rate", "mean_chrf"):
            metrics[metric_name(*prefix, field)] = getattr(row, field)
        for field in ("mean_semantic_similarity", "latency_p50_ms", "latency_p95_ms"):
            metrics[metric_name(*prefix, field)] = getattr(row, field)
    for row in gaps.itertuples(index=False):
        metrics[metric_name("gap", row.region, "clean_minus_noisy")] = row.gap
        metrics[metric_name("gap", row.region, "ci_low")] = row.gap_ci_low
        metrics[metric_name("gap", row.region, "ci_high")] = row.gap_ci_high
    return metrics


def summary_table_markdown(summary: pd.DataFrame) -> str:
    """Return the region x noise level cells as a Markdown table: pass rate, 95% CI and n."""
    cells = summary[summary["slice"].isin(["cell", "region", "overall"])].copy()
    cells["pass_rate (95% CI)"] = [
        f"{rate:.3f} [{low:.3f}, {high:.3f}]"
        for rate, low, high in zip(
            cells["pass_rate"], cells["ci_low"], cells["ci_high"], strict=True
        )
    ]
    columns = ["region", "noise_level", "n", "pass_rate (95% CI)", "error_rate", "latency_p95_ms"]
    return cells[columns].to_markdown(index=False, floatfmt=".3f")


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            EVAL_SUMMARY,
            deps=[ITEM_RESULTS],
            group_name="gold",
            kinds={"delta", "mlflow"},
            description="Pass rate with a 95% Wilson interval, mean scores, latency p50/p95 "
            "and error rate for every region x noise level cell, each region, each noise "
            "level and overall.",
        ),
        dg.AssetSpec(
            ROBUSTNESS_GAPS,
            deps=[ITEM_RESULTS],
            group_name="gold",
            kinds={"delta", "mlflow"},
            description="Clean-minus-noisy pass-rate gap per region with a paired bootstrap "
            "95% interval, and the gap per noise level.",
        ),
        dg.AssetSpec(
            GATE_DECISIONS,
            deps=[ITEM_RESULTS],
            group_name="gold",
            kinds={"delta", "mlflow"},
            description="One gate decision per evaluated version: outcome, failed gates and "
            "reasons, policy hash, champion compared against, and the Delta versions of the "
            "evidence tables that lead back to the item-level rows.",
        ),
    ],
    check_specs=gate_check_specs(EVAL_SUMMARY),
    partitions_def=model_versions_partitions,
)
def evaluation_summary(
    context: dg.AssetExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    policy: GatePolicyResource,
    promotion: PromotionResource,
):
    """Summarize one version's item results, decide its gates, and log both to MLflow.

    The six gates are blocking checks on the summary: when one fails, the run stops before any
    asset downstream of the summary, while the decision row still records the failure.
    """
    ref = decode_partition_key(context.partition_key)
    settings = mlflow.settings
    loaded_policy = policy.load()
    session = spark.get_session()
    table_match = {"dataset_name": dataset.name, "partition_key": context.partition_key}
    items_path = lakehouse.table_path("gold", "item_results")
    items_version = table_version(session, items_path)
    items = read_rows(session, items_path, table_match, version=items_version)
    results = items.toPandas() if items is not None else pd.DataFrame()
    if results.empty:
        raise MissingUpstreamDataError(
            f"Gold has no item results for partition {context.partition_key!r} on dataset "
            f"{dataset.name!r}; materialize {ITEM_RESULTS.to_user_string()} for it first."
        )
    run_id = results["mlflow_run_id"].iloc[0]
    version = results["dataset_version"].iloc[0]

    summary = summarize(results)
    gaps = robustness_gaps(results)
    identity = {
        "partition_key": context.partition_key,
        "model_name": ref.name,
        "model_version": ref.version,
        "dataset_name": dataset.name,
        "dataset_version": version,
        "mlflow_run_id": run_id,
    }
    summary_path = lakehouse.table_path("gold", "eval_summary")
    gaps_path = lakehouse.table_path("gold", "robustness_gaps")
    summary_version = replace_rows(
        session.createDataFrame(summary.assign(**identity)),
        summary_path,
        table_match,
        partition_by=["dataset_name", "partition_key"],
    )
    gaps_version = replace_rows(
        session.createDataFrame(gaps.assign(**identity)),
        gaps_path,
        table_match,
        partition_by=["dataset_name", "partition_key"],
    )

    evidence = GateEvidence(
        ref=ref,
        dataset_name=dataset.name,
        dataset_version=version,
        summary=summary,
        items=results,
        gaps=gaps,
        mlflow_run_id=run_id,
        delta_versions={
            "item_results": items_version,
            "eval_summary": summary_version,
            "robustness_gaps": gaps_version,
        },
    )
    champion, champion_items, champion_items_version = champion_evidence(
        session, lakehouse, settings, evidence, promotion.champion_alias
    )
    evidence.delta_versions["champion_item_results"] = champion_items_version
    gate_results, decision = decide_version(
        evidence, loaded_policy.for_model(ref.name), champion, champion_items
    )
    row = decision_row(evidence, decision, loaded_policy, champion, context.run.run_id)
    decision_version = write_decision(session, lakehouse, row)
    context.log.info(
        "Gate decision %s for %s: %s (failed gates: %s; policy %s; champion %s)",
        row["decision_id"],
        ref.uri,
        decision.outcome,
        decision.failed_gates or "none",
        loaded_policy.content_hash,
        champion or "none",
    )

    log_metrics(settings, run_id, _summary_metrics(summary, gaps))
    client = settings.client()
    with tempfile.TemporaryDirectory() as folder:
        summary.to_csv(Path(folder) / "summary.csv", index=False)
        gaps.to_csv(Path(folder) / "robustness_gaps.csv", index=False)
        decision_file = Path(folder) / "gate_decision.json"
        decision_file.write_text(json.dumps(row, indent=2, ensure_ascii=False), encoding="utf-8")
        client.log_artifacts(run_id, folder, artifact_path="evaluation")
    set_run_tags(
        settings,
        run_id,
        {
            "eval_summary_delta_version": str(summary_version),
            "robustness_gaps_delta_version": str(gaps_version),
            "gate.outcome": decision.outcome,
            "gate.decision_id": row["decision_id"],
            "gate.policy_hash": loaded_policy.content_hash,
            "gate.failed": ",".join(decision.failed_gates),
        },
    )
    client.set_terminated(run_id, "FINISHED")

    overall = summary[summary["slice"] == "overall"].iloc[0]
    context.log.info(
        "%s on %s: pass rate %.3f over %d items, error rate %.3f",
        ref.uri,
        dataset.name,
        overall["pass_rate"],
        overall["n"],
        overall["error_rate"],
    )
    common = {
        "model_name": ref.name,
        "model_version": ref.version,
        "dataset_name": dataset.name,
        "dataset_version": version,
        "mlflow_run_id": run_id,
    }
    yield dg.MaterializeResult(
        asset_key=EVAL_SUMMARY,
        metadata={
            **common,
            "dagster/row_count": len(summary),
            "overall_pass_rate": float(overall["pass_rate"]),
            "overall_n": int(overall["n"]),
            "error_rate": float(overall["error_rate"]),
            "latency_p50_ms": float(overall["latency_p50_ms"]),
            "latency_p95_ms": float(overall["latency_p95_ms"]),
            "delta_table_version": summary_version,
            "table_path": dg.MetadataValue.path(summary_path),
            "summary": dg.MetadataValue.md(summary_table_markdown(summary)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=ROBUSTNESS_GAPS,
        metadata={
            **common,
            "dagster/row_count": len(gaps),
            "delta_table_version": gaps_version,
            "table_path": dg.MetadataValue.path(gaps_path),
            "gaps": dg.MetadataValue.md(gaps.to_markdown(index=False, floatfmt=".3f")),
        },
    )
    yield dg.MaterializeResult(
        asset_key=GATE_DECISIONS,
        metadata={
            **common,
            "dagster/row_count": 1,
            "decision_id": row["decision_id"],
            "outcome": decision.outcome,
            "failed_gates": dg.MetadataValue.json(decision.failed_gates),
            "policy_hash": loaded_policy.content_hash,
            "champion_version": champion or "none",
            "delta_table_version": decision_version,
            "table_path": dg.MetadataValue.path(lakehouse.table_path("gold", "gate_decisions")),
            "gate_results": dg.MetadataValue.md(results_table(gate_results)),
        },
    )
    yield from gate_check_results(EVAL_SUMMARY, gate_results)
