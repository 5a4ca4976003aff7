"""Gate decisions: run the gate rules on one evaluated version and store the verdict in Gold."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from eval_pipeline.core.gates import GATES, Decision, GateResult, Outcome, decide, evaluate_gates
from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.promotion import alias_version
from eval_pipeline.lakehouse import read_rows, replace_rows, table_version

GATE_DECISIONS = dg.AssetKey(["gold", "gate_decisions"])

CHECK_DESCRIPTIONS = {
    "region_minimum": "Each region's pass rate clears its minimum, judged by the policy's bound.",
    "non_regression": "No significant regression against the champion on the same items "
    "(one-sided paired test, corrected across slices).",
    "robustness": "Noisy pass rate stays within the tolerance of clean pass rate, per region.",
    "region_gap": "The largest pass-rate gap between regions stays within the bound.",
    "latency": "Latency p95 stays within the budget.",
    "error_rate": "The share of items with an error code stays within the budget.",
}


@dataclass
class GateEvidence:
    """Everything a decision is computed from, with the Delta versions that pin it."""

    ref: ModelVersionRef
    dataset_name: str
    dataset_version: str
    summary: pd.DataFrame
    items: pd.DataFrame
    gaps: pd.DataFrame
    mlflow_run_id: str
    delta_versions: dict[str, int | None]


def _missing_champion_result(champion: str, dataset_version: str, key: str) -> GateResult:
    return GateResult(
        gate="non_regression",
        slice="overall",
        outcome=Outcome.FAIL,
        blocking=True,
        observed=None, threshold=None, bound_used=None, ci_low=None, ci_high=None, n=0,
        statistic=None, p_value=None, p_adjusted=None, mde=None,
        method="paired",
        reason=f"The champion (version {champion}) has no item results on dataset version "
        f"{dataset_version}, so there is nothing to compare against; evaluate partition {key} "
        "first, then decide again.",
    )  # fmt: skip


def _champion_itself_result(champion: str) -> GateResult:
    return GateResult(
        gate="non_regression",
        slice="overall",
        outcome=Outcome.PASS,
        blocking=False,
        observed=None, threshold=None, bound_used=None, ci_low=None, ci_high=None, n=0,
        statistic=None, p_value=None, p_adjusted=None, mde=None,
        method="paired",
        reason=f"Version {champion} is the current champion, so it has no baseline to regress "
        "against; the other gates re-check it on the current data.",
    )  # fmt: skip


def champion_evidence(session, lakehouse, settings, evidence: GateEvidence, alias: str):
    """Return (champion version, its item results or None, its Delta version)."""
    champion = alias_version(settings, evidence.ref.name, alias)
    if champion is None or champion == evidence.ref.version:
        return champion, None, None
    champion_key = ModelVersionRef(evidence.ref.name, champion).partition_key
    path = lakehouse.table_path("gold", "item_results")
    match = {
        "dataset_name": evidence.dataset_name,
        "partition_key": champion_key,
        "dataset_version": evidence.dataset_version,
    }
    rows = read_rows(session, path, match)
    frame = rows.toPandas() if rows is not None else pd.DataFrame()
    return champion, (frame if len(frame) else pd.DataFrame()), table_version(session, path)


def decide_version(evidence: GateEvidence, policy, champion: str | None, champion_items):
    """Return the gate results and decision; a champion without results fails non-regression."""
    is_champion = champion == evidence.ref.version
    champion_missing = champion_items is not None and champion_items.empty
    usable = champion_items is not None and not champion_missing and not is_champion
    baseline = champion_items if usable else None
    results = evaluate_gates(evidence.summary, evidence.items, evidence.gaps, baseline, policy)
    if is_champion:
        results = [r for r in results if r.gate != "non_regression"]
        results.append(_champion_itself_result(champion))
    elif champion is not None and champion_missing:
        champion_key = ModelVersionRef(evidence.ref.name, champion).partition_key
        results = [r for r in results if r.gate != "non_regression"]
        results.append(_missing_champion_result(champion, evidence.dataset_version, champion_key))
    return results, decide(results)


def decision_row(
    evidence: GateEvidence,
    decision: Decision,
    loaded_policy,
    champion: str | None,
    dagster_run_id: str,
) -> dict:
    """Return the Gold row that records one decision and pins its evidence."""
    return {
        "decision_id": uuid.uuid4().hex[:16],
        "partition_key": evidence.ref.partition_key,
        "model_name": evidence.ref.name,
        "model_version": evidence.ref.version,
        "dataset_name": evidence.dataset_name,
        "dataset_version": evidence.dataset_version,
        "outcome": decision.outcome,
        "failed_gates": json.dumps(decision.failed_gates),
        "reasons": json.dumps(decision.reasons, ensure_ascii=False),
        "gate_results": json.dumps([r.to_dict() for r in decision.results], ensure_ascii=False),
        "policy_hash": loaded_policy.content_hash,
        "policy_source": loaded_policy.source,
        "champion_version": champion,
        **{f"{name}_delta_version": version for name, version in evidence.delta_versions.items()},
        "mlflow_run_id": evidence.mlflow_run_id,
        "dagster_run_id": dagster_run_id,
        "decided_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }


def _plain(value):
    # Spark's createDataFrame rejects numpy scalars such as np.int64.
    return value.item() if hasattr(value, "item") else value


def write_decision(session, lakehouse, row: dict) -> int:
    """Replace the partition's decision for its dataset; return the new Delta version."""
    frame = pd.DataFrame([row])
    for column in frame.columns:
        if column.endswith("_delta_version"):
            frame[column] = frame[column].astype("Int64")
    schema = ", ".join(
        f"`{column}` {'bigint' if column.endswith('_delta_version') else 'string'}"
        for column in frame.columns
    )
    records = [
        tuple(None if pd.isna(value) else _plain(value) for value in record)
        for record in frame.itertuples(index=False)
    ]
    match = {"dataset_name": row["dataset_name"], "partition_key": row["partition_key"]}
    return replace_rows(
        session.createDataFrame(records, schema),
        lakehouse.table_path("gold", "gate_decisions"),
        match,
        # Partitioning by version keeps concurrent runs of different versions conflict-free.
        partition_by=["dataset_name", "partition_key"],
    )


def read_decision(session, lakehouse, dataset_name: str, partition_key: str) -> dict | None:
    """Return the stored decision of a partition on a dataset, or None."""
    path = lakehouse.table_path("gold", "gate_decisions")
    rows = read_rows(session, path, {"dataset_name": dataset_name, "partition_key": partition_key})
    if rows is None:
        return None
    found = rows.orderBy("decided_at", ascending=False).limit(1).collect()
    return found[0].asDict() if found else None


def decision_evidence(session, lakehouse, decision: dict, failed_only: bool = False):
    """Return the item-level rows behind `decision`, read at the Delta version it pinned."""
    match = {"dataset_name": decision["dataset_name"], "partition_key": decision["partition_key"]}
    rows = read_rows(
        session,
        lakehouse.table_path("gold", "item_results"),
        match,
        version=decision["item_results_delta_version"],
    )
    if failed_only:
        rows = rows.where("NOT passed")
    return rows


def results_table(results: list[GateResult]) -> str:
    """Return gate results as a Markdown table for asset metadata."""
    frame = pd.DataFrame([r.to_dict() for r in results])
    if frame.empty:
        return "no results"
    columns = ["gate", "slice", "outcome", "observed", "ci_low", "ci_high", "bound_used"]
    columns += ["threshold", "n", "statistic", "p_value", "p_adjusted", "mde", "reason"]
    return frame[[c for c in columns if c in frame.columns]].to_markdown(
        index=False, floatfmt=".4g"
    )


def gate_check_specs(asset_key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    """Return one blocking check per gate on `asset_key`."""
    return [
        dg.AssetCheckSpec(
            name=f"gate_{gate}",
            asset=asset_key,
            blocking=True,
            description=CHECK_DESCRIPTIONS[gate],
        )
        for gate in GATES
    ]


def gate_check_results(asset_key: dg.AssetKey, results: list[GateResult]):
    """Yield one check result per gate: ERROR when a result blocks, WARN for report-only misses."""
    for gate in GATES:
        gate_results = [r for r in results if r.gate == gate]
        blocking = [r for r in gate_results if r.blocking]
        # "No baseline" counts as passed unless the policy made it blocking, while report-only
        # insufficient evidence shows as a warning.
        not_passed = [
            r
            for r in gate_results
            if r.blocking or r.outcome not in (Outcome.PASS, Outcome.NO_BASELINE)
        ]
        metadata = {
            "outcomes": dg.MetadataValue.json({r.slice: str(r.outcome) for r in gate_results}),
            "results": dg.MetadataValue.md(results_table(gate_results)),
        }
        if len(gate_results) == 1:
            single = gate_results[0].to_dict()
            for field in ("statistic", "p_value", "p_adjusted", "ci_low", "ci_high", "n", "mde"):
                if single.get(field) is not None:
                    metadata[field] = single[field]
            if single.get("threshold") is not None:
                metadata["margin_or_threshold"] = single["threshold"]
        if not gate_results:
            metadata["note"] = "gate disabled by the policy"
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=f"gate_{gate}",
            passed=not not_passed,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description="; ".join(r.reason for r in not_passed or gate_results)[:2000] or None,
            metadata=metadata,
        )
