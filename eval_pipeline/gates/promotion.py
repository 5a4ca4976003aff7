"""The promotion job: acts on a version's gate decision in the MLflow registry."""

import json

import dagster as dg

from eval_pipeline.core.partition_keys import decode_partition_key
from eval_pipeline.core.promotion import (
    PromotionError,
    alias_version,
    apply_decision,
    check_decision_is_current,
    record_regression,
)
from eval_pipeline.gates.decisions import read_decision
from eval_pipeline.jobs import EVALUATION_RUN_TAG, TRIGGER_TAG
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.resources import (
    BenchmarkDatasetResource,
    GatePolicyResource,
    LakehouseResource,
    MlflowResource,
    PromotionResource,
    SparkResource,
)


@dg.op(tags={"kind": "mlflow"})
def promote_model_version(
    context: dg.OpExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
    policy: GatePolicyResource,
    promotion: PromotionResource,
) -> dg.Output:
    """Move the registry aliases for a passing decision, or tag the version as blocked.

    Rejects a missing decision, and a stale one whose dataset, policy or champion changed since
    it was made.
    """
    ref = decode_partition_key(context.partition_key)
    settings = mlflow.settings
    loaded_policy = policy.load()
    session = spark.get_session()
    decision = read_decision(session, lakehouse, dataset.name, context.partition_key)
    champion = alias_version(settings, ref.name, promotion.champion_alias)
    try:
        check_decision_is_current(
            decision, ref, dataset.current_version(), loaded_policy.content_hash, champion
        )
    except PromotionError as error:
        raise dg.Failure(description=str(error)) from error

    result = apply_decision(
        settings,
        ref,
        decision,
        challenger_alias=promotion.challenger_alias,
        champion_alias=promotion.champion_alias,
        require_approval=promotion.require_approval,
    )
    context.log.info(result.message)
    return dg.Output(
        result.action,
        metadata={
            "action": result.action,
            "model_name": ref.name,
            "model_version": ref.version,
            "decision_id": decision["decision_id"],
            "policy_hash": decision["policy_hash"],
            "aliases_set": dg.MetadataValue.json(list(result.aliases)),
            "previous_champion": result.previous_champion or "none",
            "message": result.message,
        },
    )


@dg.job(partitions_def=model_versions_partitions, tags={"eval_pipeline/kind": "promotion"})
def promotion_job():
    """Promote or block one model version (partition) according to its stored gate decision."""
    promote_model_version()


@dg.op(tags={"kind": "mlflow"})
def record_regression_result(
    context: dg.OpExecutionContext,
    spark: SparkResource,
    lakehouse: LakehouseResource,
    mlflow: MlflowResource,
    dataset: BenchmarkDatasetResource,
) -> dg.Output:
    """Tag a re-evaluated version with the outcome of its latest gate decision.

    Used after nightly and dataset-change re-evaluations of a champion; aliases do not move.
    """
    ref = decode_partition_key(context.partition_key)
    decision = read_decision(spark.get_session(), lakehouse, dataset.name, context.partition_key)
    if decision is None:
        raise dg.Failure(
            description=f"No gate decision exists for {ref.uri} on dataset {dataset.name!r}; "
            "run model_evaluation_job for this partition first."
        )
    trigger = context.run.tags.get(TRIGGER_TAG, "manual")
    evaluation_run_id = context.run.tags.get(EVALUATION_RUN_TAG, decision["dagster_run_id"])
    tags = record_regression(
        mlflow.settings, ref, decision, trigger=trigger, evaluation_run_id=evaluation_run_id
    )
    if decision["outcome"] != "pass":
        context.log.warning(
            "%s failed its %s re-check: %s",
            ref.uri,
            trigger,
            "; ".join(json.loads(decision["reasons"])),
        )
    return dg.Output(
        decision["outcome"],
        metadata={
            "model_name": ref.name,
            "model_version": ref.version,
            **{f"regression_{key}": value for key, value in tags.items()},
        },
    )


@dg.job(partitions_def=model_versions_partitions, tags={"eval_pipeline/kind": "regression"})
def regression_record_job():
    """Record a re-evaluated version's gate outcome on its registry tags, without promoting."""
    record_regression_result()
