"""Text report of stored evaluation summaries, printed by the command line."""

from __future__ import annotations

import math

import pandas as pd
from tabulate import tabulate

from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.lakehouse import read_rows


def _read(defs, table: str, dataset_name: str) -> pd.DataFrame:
    resources = defs.resources
    session = resources["spark"].get_session()
    path = resources["lakehouse"].table_path("gold", table)
    rows = read_rows(session, path, {"dataset_name": dataset_name})
    return rows.toPandas() if rows is not None else pd.DataFrame()


def build_report(defs, refs) -> list[dict]:
    """Return, per model version, its summary slices and robustness gaps on the current data."""
    dataset = defs.resources["dataset"]
    summary = _read(defs, "eval_summary", dataset.name)
    gaps = _read(defs, "robustness_gaps", dataset.name)
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
