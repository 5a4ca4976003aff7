"""The governance dashboard: a static HTML page with plots of the Gold tables, and its server.

Rendering needs only pandas frames, so it runs without Spark or Dagster. The page and its PNG
plots are written to one folder, which ``serve_dashboard`` serves on 127.0.0.1.
"""

from __future__ import annotations

import base64
import functools
import html
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

# Figure objects render with the Agg canvas without pyplot, so no global backend is set.
from matplotlib.figure import Figure

from eval_pipeline.core.monitoring import (
    ALL,
    EMBEDDING_FEATURE,
    REFERENCE_BENCHMARK,
    REFERENCE_WINDOW,
)
from eval_pipeline.core.monitoring_policy import MonitoringPolicy
from eval_pipeline.core.noise import NOISE_LEVELS

logger = logging.getLogger(__name__)

SECTIONS = {
    "accuracy": "Accuracy by region and noise level",
    "versions": "Accuracy over model versions",
    "gates": "Gate outcomes",
    "traffic": "Regional usage",
    "latency": "Latency",
    "drift": "Input drift",
    "live-accuracy": "Accuracy that users see",
    "alerts": "Monitoring alerts",
}


@dataclass
class DashboardData:
    """The Gold tables that the dashboard shows; any of them may be empty."""

    eval_summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    gate_decisions: pd.DataFrame = field(default_factory=pd.DataFrame)
    traffic_metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    input_drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)
    live_accuracy: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class RenderedDashboard:
    """Paths of the written page and plots, and the id of each section on the page."""

    index_path: Path
    plots: dict[str, Path]
    sections: list[str]

    def plot_markdown(self, name: str) -> str:
        """Return the plot as a Markdown image with a data URI, for Dagster metadata."""
        encoded = base64.b64encode(self.plots[name].read_bytes()).decode()
        return f"![{name}](data:image/png;base64,{encoded})"


def _save(figure, folder: Path, name: str) -> Path:
    path = folder / f"{name}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return path


def _empty_plot(folder: Path, name: str, message: str) -> Path:
    figure = Figure(figsize=(7, 1.6))
    axis = figure.subplots()
    axis.axis("off")
    axis.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555")
    return _save(figure, folder, name)


def _version_label(row) -> str:
    return f"{row['model_name']} v{row['model_version']}"


def plot_accuracy_cells(summary: pd.DataFrame, folder: Path) -> Path:
    """Plot pass rate with its 95% interval per region and noise level, one panel a version."""
    cells = summary[summary["slice"] == "cell"] if len(summary) else summary
    if cells.empty:
        return _empty_plot(folder, "accuracy", "No evaluation yet: run `eval-pipeline demo`.")
    versions = cells.drop_duplicates("partition_key").sort_values(["model_name", "model_version"])
    count = len(versions)
    figure = Figure(figsize=(4.2 * count, 3.4))
    axes = figure.subplots(1, count, sharey=True, squeeze=False)
    for axis, version in zip(axes[0], versions.to_dict("records"), strict=True):
        rows = cells[cells["partition_key"] == version["partition_key"]]
        regions = sorted(rows["region"].unique())
        width = 0.8 / len(NOISE_LEVELS)
        for offset, level in enumerate(NOISE_LEVELS):
            level_rows = rows[rows["noise_level"] == level].set_index("region").reindex(regions)
            x = np.arange(len(regions)) + (offset - 1.5) * width
            rate = level_rows["pass_rate"].to_numpy(dtype=float)
            errors = np.vstack(
                [
                    rate - level_rows["ci_low"].to_numpy(dtype=float),
                    level_rows["ci_high"].to_numpy(dtype=float) - rate,
                ]
            )
            axis.errorbar(x, rate, yerr=errors, fmt="o", capsize=3, label=level)
        axis.set_xticks(np.arange(len(regions)), regions)
        axis.set_title(_version_label(version), fontsize=10)
        axis.set_ylim(0, 1.05)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("pass rate (95% CI)")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    return _save(figure, folder, "accuracy")


def plot_versions(summary: pd.DataFrame, folder: Path) -> Path:
    """Plot the overall and per-noise-level pass rate of each version, in version order."""
    overall = (
        summary[summary["slice"].isin(["overall", "noise_level"])] if len(summary) else summary
    )
    if overall.empty:
        return _empty_plot(folder, "versions", "No evaluation yet.")
    figure = Figure(figsize=(8, 3.4))
    axis = figure.subplots()
    for name, rows in overall.groupby("model_name"):
        rows = rows.assign(version_number=pd.to_numeric(rows["model_version"], errors="coerce"))
        for level, level_rows in rows.groupby("noise_level"):
            level_rows = level_rows.sort_values("version_number")
            label = f"{name} ({'all levels' if level == ALL else level})"
            style = "-o" if level == ALL else ":."
            axis.plot(level_rows["model_version"], level_rows["pass_rate"], style, label=label)
        total = rows[rows["slice"] == "overall"].sort_values("version_number")
        axis.fill_between(total["model_version"], total["ci_low"], total["ci_high"], alpha=0.15)
    axis.set_xlabel("model version")
    axis.set_ylabel("pass rate")
    axis.set_ylim(0, 1.05)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, ncol=2)
    return _save(figure, folder, "versions")


def _pooled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["region"] == ALL] if len(frame) else frame


def plot_traffic(metrics: pd.DataFrame, folder: Path) -> Path:
    """Plot requests per day, stacked by region."""
    regional = metrics[metrics["region"] != ALL] if len(metrics) else metrics
    if regional.empty:
        return _empty_plot(
            folder, "traffic", "No traffic yet: run `eval-pipeline monitoring-demo`."
        )
    table = regional.pivot_table(
        index="request_date", columns="region", values="requests", aggfunc="sum", fill_value=0
    )
    figure = Figure(figsize=(8, 3.2))
    axis = figure.subplots()
    bottom = np.zeros(len(table))
    for region in table.columns:
        axis.bar(table.index, table[region], bottom=bottom, label=region)
        bottom += table[region].to_numpy()
    axis.set_ylabel("requests")
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    axis.legend(fontsize=8, ncol=len(table.columns))
    return _save(figure, folder, "traffic")


LATENCY_STYLES = (("latency_p50_ms", ":"), ("latency_p95_ms", "-"), ("latency_p99_ms", "--"))


def plot_latency(metrics: pd.DataFrame, policy: MonitoringPolicy, folder: Path) -> Path:
    """Plot latency p50, p95 and p99 per day and version, with the budget lines."""
    pooled = _pooled(metrics)
    if pooled.empty:
        return _empty_plot(folder, "latency", "No traffic yet.")
    figure = Figure(figsize=(8, 3.2))
    axis = figure.subplots()
    for (name, version), rows in pooled.groupby(["model_name", "model_version"]):
        rows = rows.sort_values("request_date")
        for column, style in (
            ("latency_p50_ms", ":"),
            ("latency_p95_ms", "-"),
            ("latency_p99_ms", "--"),
        ):
            label = f"{name} v{version} {column.split('_')[1]}"
            axis.plot(rows["request_date"], rows[column], style, marker="o", label=label)
    axis.axhline(policy.latency.warn, color="orange", linewidth=1, label="WARN budget")
    axis.axhline(policy.latency.error, color="red", linewidth=1, label="ERROR budget")
    axis.set_ylabel("latency (ms)")
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    axis.legend(fontsize=7, ncol=2)
    return _save(figure, folder, "latency")


def plot_drift(drift: pd.DataFrame, policy: MonitoringPolicy, folder: Path) -> Path:
    """Plot the largest feature PSI and the embedding distance per day, per reference."""
    pooled = _pooled(drift)
    if pooled.empty:
        return _empty_plot(folder, "drift", "No traffic yet.")
    figure = Figure(figsize=(10, 3.2))
    left, right = figure.subplots(1, 2)
    features = pooled[pooled["feature"].isin(policy.input_drift.features)]
    embeddings = pooled[pooled["feature"] == EMBEDDING_FEATURE]
    for reference in (REFERENCE_BENCHMARK, REFERENCE_WINDOW):
        psi = features[features["reference"] == reference].groupby("request_date")["psi"].max()
        left.plot(psi.index, psi.to_numpy(), marker="o", label=f"against {reference}")
        distance = (
            embeddings[embeddings["reference"] == reference]
            .groupby("request_date")["embedding_distance"]
            .max()
        )
        right.plot(distance.index, distance.to_numpy(), marker="o", label=f"against {reference}")
    for axis, rule, title in (
        (left, policy.input_drift, "largest feature PSI"),
        (right, policy.embedding_drift, "embedding cosine distance"),
    ):
        axis.axhline(rule.warn, color="orange", linewidth=1, label="WARN")
        axis.axhline(rule.error, color="red", linewidth=1, label="ERROR")
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="x", rotation=30, labelsize=8)
        axis.legend(fontsize=7)
    return _save(figure, folder, "drift")


def plot_live_accuracy(live: pd.DataFrame, folder: Path) -> Path:
    """Plot offline, live-weighted (with interval) and labelled pass rates per day."""
    if live.empty:
        return _empty_plot(folder, "live_accuracy", "No traffic yet.")
    figure = Figure(figsize=(8, 3.2))
    axis = figure.subplots()
    for (name, version), rows in live.groupby(["model_name", "model_version"]):
        rows = rows.sort_values("request_date")
        label = f"{name} v{version}"
        axis.plot(rows["request_date"], rows["offline_pass_rate"], ":", label=f"{label} offline")
        axis.plot(
            rows["request_date"], rows["live_weighted_pass_rate"], "-o",
            label=f"{label} offline re-weighted by traffic",
        )  # fmt: skip
        axis.fill_between(rows["request_date"], rows["ci_low"], rows["ci_high"], alpha=0.2)
        axis.plot(
            rows["request_date"], rows["labelled_pass_rate"], "s--",
            label=f"{label} labelled requests",
        )  # fmt: skip
    axis.set_ylabel("pass rate")
    axis.set_ylim(0, 1.05)
    axis.tick_params(axis="x", rotation=30, labelsize=8)
    axis.legend(fontsize=7)
    return _save(figure, folder, "live_accuracy")


def _table(frame: pd.DataFrame, columns: list[str], empty: str, limit: int = 50) -> str:
    if frame.empty:
        return f"<p class='empty'>{html.escape(empty)}</p>"
    shown = frame[[c for c in columns if c in frame.columns]].head(limit)
    return shown.to_html(index=False, float_format=lambda value: f"{value:.3f}", na_rep="–")


def flagged_days(alerts: pd.DataFrame) -> pd.DataFrame:
    """Return one row per day with alerts: the worst severity and the checks that fired."""
    if alerts.empty:
        return pd.DataFrame(columns=["request_date", "severity", "checks", "alerts"])
    rows = []
    for day, group in alerts.groupby("request_date", sort=True):
        severity = "ERROR" if (group["severity"] == "ERROR").any() else "WARN"
        checks = ", ".join(sorted(group["check_name"].unique()))
        rows.append(
            {"request_date": day, "severity": severity, "checks": checks, "alerts": len(group)}
        )
    return pd.DataFrame(rows)


_PAGE = jinja2.Template(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>eval_pipeline governance dashboard</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; border-bottom: 1px solid #ddd; }
img { max-width: 100%; } table { border-collapse: collapse; font-size: 0.8rem; }
td, th { border: 1px solid #ddd; padding: 2px 6px; } .empty { color: #777; }
.ERROR { color: #b00; font-weight: bold; } .WARN { color: #b60; }
nav a { margin-right: 0.8rem; }
</style></head><body>
<h1>eval_pipeline governance dashboard</h1>
<p>Generated {{ generated_at }} from the Gold tables under {{ source }}.</p>
<nav>{% for id, title in sections.items() %}<a href="#{{ id }}">{{ title }}</a>{% endfor %}</nav>
{% for id, title in sections.items() %}
<section id="{{ id }}"><h2>{{ title }}</h2>
{% if id in plots %}<img src="plots/{{ plots[id] }}" alt="{{ title }}">{% endif %}
{{ tables.get(id, "") }}
</section>
{% endfor %}
</body></html>
"""
)


def render_dashboard(
    data: DashboardData, folder: str | Path, policy: MonitoringPolicy, source: str = ""
) -> RenderedDashboard:
    """Write ``index.html`` and its plots under ``folder``; return their paths."""
    root = Path(folder)
    plot_folder = root / "plots"
    plot_folder.mkdir(parents=True, exist_ok=True)
    plots = {
        "accuracy": plot_accuracy_cells(data.eval_summary, plot_folder),
        "versions": plot_versions(data.eval_summary, plot_folder),
        "traffic": plot_traffic(data.traffic_metrics, plot_folder),
        "latency": plot_latency(data.traffic_metrics, policy, plot_folder),
        "drift": plot_drift(data.input_drift, policy, plot_folder),
        "live-accuracy": plot_live_accuracy(data.live_accuracy, plot_folder),
    }

    gates = data.gate_decisions
    if len(gates):
        gates = gates.sort_values(["model_name", "model_version"])
    alerts = data.alerts
    if len(alerts):
        alerts = alerts.sort_values(["request_date", "severity"], ascending=[False, True])
    tables = {
        "gates": _table(
            gates,
            ["model_name", "model_version", "outcome", "failed_gates", "champion_version",
             "policy_hash", "decided_at"],
            "No gate decision yet.",
        ),
        "traffic": _table(
            _pooled(data.traffic_metrics).sort_values("request_date")
            if len(data.traffic_metrics) else data.traffic_metrics,
            ["request_date", "model_name", "model_version", "requests", "error_rate",
             "noisy_share", "labelled", "labelled_pass_rate"],
            "No traffic yet.",
        ),
        "live-accuracy": _table(
            data.live_accuracy.sort_values("request_date")
            if len(data.live_accuracy) else data.live_accuracy,
            ["request_date", "model_name", "model_version", "offline_pass_rate",
             "live_weighted_pass_rate", "ci_low", "ci_high", "labelled", "labelled_pass_rate"],
            "No traffic yet.",
        ),
        "alerts": _table(flagged_days(alerts), ["request_date", "severity", "checks", "alerts"],
                         "No alert.")
        + _table(alerts, ["request_date", "severity", "check_name", "message"], ""),
    }  # fmt: skip

    page = _PAGE.render(
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        source=source,
        sections=SECTIONS,
        plots={name: path.name for name, path in plots.items()},
        tables=tables,
    )
    index = root / "index.html"
    index.write_text(page, encoding="utf-8")
    return RenderedDashboard(index, plots, list(SECTIONS))


def serve_dashboard(folder: str | Path, port: int = 8050, host: str = "127.0.0.1"):
    """Return an HTTP server for the dashboard folder; call ``serve_forever`` to run it."""
    root = Path(folder)
    if not (root / "index.html").is_file():
        raise FileNotFoundError(
            f"No dashboard at {root / 'index.html'}; run `eval-pipeline monitoring-demo` or "
            "materialize reports/governance_dashboard first."
        )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer((host, port), handler)
    logger.info("Serving %s on http://%s:%d/", root, host, server.server_address[1])
    return server
