"""Text report of stored evaluation summaries, printed by the command line."""

from __future__ import annotations

import json
import math

import pandas as pd
from tabulate import tabulate

from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.lakehouse import read_rows


def _read(defs, table: str, dataset_name: str, dataset_version: str) -> pd.DataFrame:
    resources = defs.resources
    session = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("gold", table)
    match = {"dataset_name": dataset_name, "dataset_version": dataset_version}
    rows = read_rows(session, path, match)
    return rows.toPandas() if rows is not None else pd.DataFrame()


def build_report(defs, refs) -> list[dict]:
    """Return, per model version, its summary slices and robustness gaps on the current data."""
    dataset = defs.resources["dataset"]
    # Only results on the current dataset version count; older ones stay in the tables until
    # their partition is evaluated again.
    version = dataset.current_version()
    summary = _read(defs, "eval_summary", dataset.name, version)
    gaps = _read(defs, "robustness_gaps", dataset.name, version)
    decisions = _read(defs, "gate_decisions", dataset.name, version)
    client = defs.resources["mlflow"].settings.client()
    report = []
    for ref in refs:
        key = ref.partition_key
        version_summary = summary[summary["partition_key"] == key] if len(summary) else summary
        version_gaps = gaps[gaps["partition_key"] == key] if len(gaps) else gaps
        entry = {
            "model_name": ref.name,
            "model_version": ref.version,
            "partition_key": key,
            "dataset_name": dataset.name,
            "evaluated": bool(len(version_summary)),
        }
        if len(version_summary):
            entry["dataset_version"] = version_summary["dataset_version"].iloc[0]
            entry["mlflow_run_id"] = version_summary["mlflow_run_id"].iloc[0]
            entry["summary"] = version_summary.drop(columns=["partition_key"]).to_dict("records")
            entry["robustness_gaps"] = version_gaps.drop(columns=["partition_key"]).to_dict(
                "records"
            )
        version_decisions = (
            decisions[decisions["partition_key"] == key] if len(decisions) else decisions
        )
        if len(version_decisions):
            decision = version_decisions.sort_values("decided_at").iloc[-1].to_dict()
            for field in ("failed_gates", "reasons", "gate_results"):
                decision[field] = json.loads(decision[field])
            entry["gate_decision"] = decision
        registered = client.get_registered_model(ref.name)
        entry["aliases"] = sorted(
            alias for alias, version in registered.aliases.items() if str(version) == ref.version
        )
        version_tags = client.get_model_version(ref.name, ref.version).tags
        entry["gate_tag"] = version_tags.get("eval_pipeline.gate.outcome")
        report.append(entry)
    return report


def _cell(row: dict) -> str:
    if not row or row["n"] == 0:
        return "-"
    return f"{row['pass_rate']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}] n={row['n']}"


def _format_version(entry: dict) -> str:
    header = (
        f"{entry['model_name']} version {entry['model_version']}  "
        f"(partition {entry['partition_key']}, dataset {entry['dataset_name']}"
    )
    if not entry["evaluated"]:
        return f"{header})\n  not evaluated on the current dataset yet"
    header += f" {entry['dataset_version']}, MLflow run {entry['mlflow_run_id']})"

    rows = entry["summary"]
    lookup = {(r["slice"], r["region"], r["noise_level"]): r for r in rows}
    regions = sorted({r["region"] for r in rows if r["slice"] == "cell"})
    levels = [level for level in NOISE_LEVELS if any(r["noise_level"] == level for r in rows)]
    table = []
    for region in [*regions, "ALL"]:
        line = [region]
        for level in levels:
            slice_name = "cell" if region != "ALL" else "noise_level"
            line.append(_cell(lookup.get((slice_name, region, level), {})))
        pooled = ("region", region, "ALL") if region != "ALL" else ("overall", "ALL", "ALL")
        line.append(_cell(lookup.get(pooled, {})))
        table.append(line)
    accuracy = tabulate(table, headers=["region", *levels, "all levels"], tablefmt="simple")

    gap_lines = []
    ordered = sorted(
        entry["robustness_gaps"], key=lambda gap: (gap["region"] == "ALL", gap["region"])
    )
    for gap in ordered:
        if gap["gap"] is None or (isinstance(gap["gap"], float) and math.isnan(gap["gap"])):
            continue
        gap_lines.append(
            f"{gap['region']}: {gap['gap']:+.3f} [{gap['gap_ci_low']:+.3f}, "
            f"{gap['gap_ci_high']:+.3f}] (clean {gap['clean_pass_rate']:.3f}, noisy "
            f"{gap['noisy_pass_rate']:.3f}, {gap['n_items']} items)"
        )
    overall = lookup[("overall", "ALL", "ALL")]
    gate_lines = _gate_lines(entry)
    return "\n".join(
        [
            header,
            "Pass rate by region x noise level, with 95% Wilson interval and n:",
            accuracy,
            "Clean-minus-noisy gap per region, with paired bootstrap 95% interval:",
            *[f"  {line}" for line in gap_lines],
            f"Latency p50 {overall['latency_p50_ms']:.3f} ms, p95 "
            f"{overall['latency_p95_ms']:.3f} ms; error rate {overall['error_rate']:.3f} "
            f"({overall['errors']} of {overall['n']} items)",
            *gate_lines,
        ]
    )


def _gate_lines(entry: dict) -> list[str]:
    decision = entry.get("gate_decision")
    if decision is None:
        return ["Gate decision: none yet"]
    aliases = ", ".join(entry.get("aliases") or []) or "none"
    lines = [
        f"Gate decision {decision['decision_id']}: {decision['outcome'].upper()} "
        f"(policy {decision['policy_hash']}, champion compared: "
        f"{decision.get('champion_version') or 'none'}); registry: "
        f"{entry.get('gate_tag') or 'not promoted yet'}, aliases: {aliases}",
    ]
    lines.extend(f"  {_gate_result_line(result)}" for result in decision["gate_results"])
    return lines


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _gate_result_line(result: dict) -> str:
    mark = {"pass": "ok  ", "fail": "FAIL"}.get(result["outcome"], "warn")
    return f"{mark} {result['gate']}/{result['slice']}: {result['reason']}"


def format_decision(decision: dict, reused: bool = False) -> str:
    """Return one stored gate decision as a table of gate results, for the `gate` command."""
    results = json.loads(decision["gate_results"])
    rows = [
        [
            result["gate"],
            result["slice"],
            result["outcome"],
            _number(result.get("observed")),
            _number(result.get("bound_used")),
            _number(result.get("threshold")),
            result.get("n"),
            _number(result.get("p_adjusted"), 4),
            _number(result.get("mde")),
        ]
        for result in results
    ]
    headers = ["gate", "slice", "outcome", "observed", "bound", "threshold", "n", "p_adj", "mde"]
    failed = json.loads(decision["failed_gates"])
    reasons = json.loads(decision["reasons"])
    return "\n".join(
        [
            f"{decision['model_name']} version {decision['model_version']} on "
            f"{decision['dataset_name']} {decision['dataset_version']}: "
            f"{decision['outcome'].upper()}" + (" (reused the current decision)" if reused else ""),
            f"decision {decision['decision_id']}, policy {decision['policy_hash']}, champion "
            f"compared: {decision.get('champion_version') or 'none'}, MLflow run "
            f"{decision['mlflow_run_id']}",
            tabulate(rows, headers=headers, tablefmt="simple"),
            *(["Failed gates: " + ", ".join(failed)] if failed else []),
            *[f"  - {reason}" for reason in reasons],
            f"Evidence: gold/item_results at Delta version {decision['item_results_delta_version']}"
            f", partition {decision['partition_key']}",
        ]
    )


def format_report(report: list[dict]) -> str:
    """Return the report as text, one block per model version."""
    if not report:
        return "No model versions to report."
    return "\n\n".join(_format_version(entry) for entry in report)


def next_steps(defs) -> str:
    """Return where to look next: the UIs and the table location."""
    resources = defs.resources
    return "\n".join(
        [
            "",
            "Next:",
            "  Dagster UI (assets, partitions, materializations): make ui  ->  http://127.0.0.1:3000",
            "  MLflow UI (runs, registry, tags):                   make mlflow-ui  ->  http://127.0.0.1:5000",
            f"  Delta tables: {resources['lakehouse'].root}/{{bronze,silver,gold}}",
            f"  MLflow store: {resources['mlflow'].tracking_uri}",
        ]
    )
