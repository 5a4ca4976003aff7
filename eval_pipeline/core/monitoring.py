"""Daily monitoring of served model versions: traffic metrics, input drift and alert rules.

Input frames hold one row per request with the Silver columns: ``request_date``,
``model_name``, ``model_version``, ``region`` (resolved, see ``resolve_regions``), ``status``,
``latency_ms``, ``input_text``, ``label_passed`` (True, False or None when unlabelled) and the
features of ``eval_pipeline.core.features``. Every result is grouped by day, model version
and region, with one extra region ``ALL`` that pools the version's requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from eval_pipeline.core.drift import categorical_drift, embedding_drift, numeric_drift
from eval_pipeline.core.monitoring_policy import MonitoringPolicy
from eval_pipeline.core.stats import latency_percentile

ALL = "ALL"
UNKNOWN_REGION = "UNKNOWN"
WARN = "WARN"
ERROR = "ERROR"

# Names of the asset checks that judge each rule.
CHECK_LATENCY = "latency_within_budget"
CHECK_ERROR_RATE = "error_rate_within_budget"
CHECK_REGION_SHARE = "region_share_stable"
CHECK_INPUT_DRIFT = "input_drift_within_threshold"
CHECK_EMBEDDING_DRIFT = "embedding_drift_within_threshold"
CHECK_DEGRADATION = "labelled_pass_rate_stable"
CHECK_NAMES = (
    CHECK_LATENCY,
    CHECK_ERROR_RATE,
    CHECK_REGION_SHARE,
    CHECK_INPUT_DRIFT,
    CHECK_EMBEDDING_DRIFT,
    CHECK_DEGRADATION,
)

REFERENCE_BENCHMARK = "benchmark"
REFERENCE_WINDOW = "window"
EMBEDDING_FEATURE = "embedding"
REGION_FEATURE = "region"

METRIC_COLUMNS = [
    "request_date", "model_name", "model_version", "region", "requests", "traffic_share",
    "errors", "error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
    "noisy_share", "labelled", "labelled_passes", "labelled_pass_rate",
]  # fmt: skip
DRIFT_COLUMNS = [
    "request_date", "model_name", "model_version", "region", "reference", "feature",
    "n_current", "n_reference", "current_mean", "reference_mean", "psi", "js_distance",
    "embedding_distance",
]  # fmt: skip
ALERT_COLUMNS = [
    "alert_id", "request_date", "check_name", "severity", "model_name", "model_version",
    "region", "reference", "feature", "observed", "threshold", "message",
]  # fmt: skip

Embedder = Callable[[Sequence[str]], np.ndarray]


def resolve_regions(region: pd.Series, detected: pd.Series) -> pd.Series:
    """Return the logged region, else the region detected from the text, else ``UNKNOWN``."""
    return region.where(region.notna(), detected).fillna(UNKNOWN_REGION)


def _with_all_region(requests: pd.DataFrame) -> pd.DataFrame:
    """Return the requests twice: sliced by their own region, and pooled under ``ALL``."""
    return pd.concat(
        [requests.assign(slice_region=requests["region"]), requests.assign(slice_region=ALL)],
        ignore_index=True,
    )


def traffic_metrics(requests: pd.DataFrame) -> pd.DataFrame:
    """Return request counts, traffic share, latency percentiles, error and pass rates.

    Latency percentiles cover requests with status ``ok`` only. ``traffic_share`` is the
    share of the version's requests of that day, and ``noisy_share`` is the share whose
    estimated noise level is not ``clean``.
    """
    if requests.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    rows = []
    keys = ["request_date", "model_name", "model_version", "slice_region"]
    for key, group in _with_all_region(requests).groupby(keys, sort=True):
        ok = group[group["status"] == "ok"]
        labelled = group[group["label_passed"].notna()]
        passes = int(labelled["label_passed"].astype(bool).sum())
        errors = int((group["status"] == "error").sum())
        rows.append(
            {
                **dict(zip(METRIC_COLUMNS[:4], key, strict=True)),
                "requests": len(group),
                "errors": errors,
                "error_rate": errors / len(group),
                "latency_p50_ms": latency_percentile(ok["latency_ms"], 50),
                "latency_p95_ms": latency_percentile(ok["latency_ms"], 95),
                "latency_p99_ms": latency_percentile(ok["latency_ms"], 99),
                "noisy_share": float((group["estimated_noise_level"] != "clean").mean()),
                "labelled": len(labelled),
                "labelled_passes": passes,
                "labelled_pass_rate": passes / len(labelled) if len(labelled) else np.nan,
            }
        )
    metrics = pd.DataFrame(rows)
    totals = metrics[metrics["region"] == ALL].set_index(
        ["request_date", "model_name", "model_version"]
    )["requests"]
    index = pd.MultiIndex.from_frame(metrics[["request_date", "model_name", "model_version"]])
    metrics["traffic_share"] = metrics["requests"].to_numpy() / totals.reindex(index).to_numpy()
    return metrics[METRIC_COLUMNS]


def benchmark_weights(noise_levels: pd.Series, noise_mix: dict[str, float]) -> np.ndarray:
    """Return row weights that give each noise level its share of ``noise_mix``.

    A level missing from the mix gets weight 0, so the benchmark stands for the inputs that
    production is expected to send rather than its own equal split of levels.
    """
    counts = noise_levels.value_counts()
    total = sum(noise_mix.values())
    weights = [
        noise_mix.get(level, 0.0) / total / counts[level] if level in counts else 0.0
        for level in noise_levels
    ]
    return np.asarray(weights, dtype=np.float64)


def _sample_texts(texts: pd.Series, limit: int, seed: str) -> list[str]:
    values = texts.dropna().tolist()
    if len(values) <= limit:
        return values
    digest = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
    indexes = np.random.default_rng(digest).choice(len(values), size=limit, replace=False)
    return [values[i] for i in sorted(indexes)]


def _drift_row(key: dict, reference: str, feature: str, current, ref, **values) -> dict:
    return {
        **key,
        "reference": reference,
        "feature": feature,
        "n_current": len(current),
        "n_reference": len(ref),
        "current_mean": np.nan,
        "reference_mean": np.nan,
        "psi": np.nan,
        "js_distance": np.nan,
        "embedding_distance": np.nan,
        **values,
    }


def input_drift(
    current: pd.DataFrame,
    window: pd.DataFrame,
    benchmark: pd.DataFrame,
    policy: MonitoringPolicy,
    embed: Embedder | None = None,
) -> pd.DataFrame:
    """Return drift of the day's inputs against the benchmark and the reference window.

    ``current`` contains the day's requests, ``window`` the requests of the preceding
    ``reference_window_days`` days and ``benchmark`` the features of the evaluation items
    with their ``noise_level`` and ``region``. Rows are compared per model version and
    region: numeric features by PSI and Jensen-Shannon distance, the region mix (for region
    ``ALL`` against the window) by the same two measures, and, when ``embed`` is given, the
    mean sentence embedding by cosine distance. An empty reference gives no row.
    """
    rules = policy.input_drift
    benchmark = benchmark.assign(
        weight=benchmark_weights(benchmark["noise_level"], rules.benchmark_noise_mix)
    )
    benchmark_all = benchmark.assign(region=ALL)
    rows = []
    keys = ["request_date", "model_name", "model_version", "slice_region"]
    window_all = _with_all_region(window) if not window.empty else window
    embedding_cache: dict[str, np.ndarray] = {}

    def embeddings(name: str, texts: list[str]) -> np.ndarray:
        if name not in embedding_cache:
            embedding_cache[name] = embed(texts)
        return embedding_cache[name]

    for key_values, group in _with_all_region(current).groupby(keys, sort=True):
        key = dict(zip(DRIFT_COLUMNS[:4], key_values, strict=True))
        region = key["region"]
        bench = benchmark_all if region == ALL else benchmark[benchmark["region"] == region]
        past = pd.DataFrame()
        if not window_all.empty:
            past = window_all[
                (window_all["model_name"] == key["model_name"])
                & (window_all["model_version"] == key["model_version"])
                & (window_all["slice_region"] == region)
            ]
        references = [(REFERENCE_BENCHMARK, bench, bench["weight"].to_numpy())]
        if not past.empty:
            references.append((REFERENCE_WINDOW, past, None))
        for reference, ref, weights in references:
            if ref.empty or (weights is not None and weights.sum() <= 0):
                continue
            for feature in rules.features:
                psi, js = numeric_drift(ref[feature], group[feature], rules.bins, weights)
                rows.append(
                    _drift_row(
                        key,
                        reference,
                        feature,
                        group,
                        ref,
                        current_mean=float(group[feature].mean()),
                        reference_mean=float(np.average(ref[feature], weights=weights)),
                        psi=psi,
                        js_distance=js,
                    )
                )
            if reference == REFERENCE_WINDOW and region == ALL:
                psi, js = categorical_drift(ref["region"].tolist(), group["region"].tolist())
                rows.append(
                    _drift_row(key, reference, REGION_FEATURE, group, ref, psi=psi, js_distance=js)
                )
            # Embeddings cost far more than features, so only the pooled slice gets them.
            if embed is not None and policy.embedding_drift.enabled and region == ALL:
                limit = policy.embedding_drift.max_texts
                day_texts = _sample_texts(group["input_text"], limit, f"{key}")
                if reference == REFERENCE_BENCHMARK:
                    # The benchmark is embedded whole once, and its weights keep the mix.
                    ref_vectors = embeddings("benchmark", ref["input_text"].tolist())
                    ref_weights = weights
                else:
                    ref_texts = _sample_texts(ref["input_text"], limit, f"{key}:window")
                    ref_vectors = embeddings(f"window:{key}", ref_texts)
                    ref_weights = None
                day_vectors = embeddings(f"day:{key}", day_texts)
                distance = embedding_drift(ref_vectors, day_vectors, ref_weights)
                rows.append(
                    _drift_row(
                        key, reference, EMBEDDING_FEATURE, group, ref, embedding_distance=distance
                    )
                )
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


@dataclass(frozen=True)
class Finding:
    """The verdict of one rule on one slice; ``severity`` is None when the slice is fine."""

    check_name: str
    request_date: str
    model_name: str
    model_version: str
    region: str
    reference: str | None
    feature: str | None
    observed: float
    threshold: float
    severity: str | None
    message: str

    def to_dict(self) -> dict:
        return asdict(self)


def _severity(observed: float, warn: float, error: float) -> str | None:
    if np.isnan(observed):
        return None
    if observed > error:
        return ERROR
    if observed > warn:
        return WARN
    return None


def _finding(check_name, row, observed, rule, measure, reference=None, feature=None) -> Finding:
    severity = _severity(observed, rule.warn, rule.error)
    threshold = rule.error if severity == ERROR else rule.warn
    relation = "above" if severity else "within"
    slice_text = f"{row['model_name']} v{row['model_version']} region {row['region']}"
    return Finding(
        check_name=check_name,
        request_date=str(row["request_date"]),
        model_name=str(row["model_name"]),
        model_version=str(row["model_version"]),
        region=str(row["region"]),
        reference=reference,
        feature=feature,
        observed=float(observed),
        threshold=float(threshold),
        severity=severity,
        message=f"{slice_text} on {row['request_date']}: {measure} {observed:.4g} is {relation} "
        f"the {'ERROR' if severity == ERROR else 'WARN'} threshold {threshold:.4g}",
    )


def _window_region_shares(window_metrics: pd.DataFrame) -> pd.DataFrame:
    """Return each version's pooled traffic share per region over the window."""
    regions = window_metrics[window_metrics["region"] != ALL]
    pooled = regions.groupby(["model_name", "model_version", "region"], as_index=False)[
        "requests"
    ].sum()
    totals = pooled.groupby(["model_name", "model_version"])["requests"].transform("sum")
    return pooled.assign(share=pooled["requests"] / totals)


def _region_share_findings(metrics, window_metrics, policy) -> list[Finding]:
    rule = policy.region_share
    findings = []
    if window_metrics.empty:
        return findings
    past = _window_region_shares(window_metrics)
    for version_key, day in metrics.groupby(["model_name", "model_version"]):
        total = day[day["region"] == ALL]
        if total.empty or int(total["requests"].iloc[0]) < rule.min_n:
            continue
        before = past[
            (past["model_name"] == version_key[0]) & (past["model_version"] == version_key[1])
        ]
        if before.empty:
            continue
        today = day[day["region"] != ALL].set_index("region")["traffic_share"]
        previous = before.set_index("region")["share"]
        template = total.iloc[0]
        for region in sorted(set(today.index) | set(previous.index)):
            change = abs(float(today.get(region, 0.0)) - float(previous.get(region, 0.0)))
            row = {**template.to_dict(), "region": region}
            measure = (
                f"traffic share {float(today.get(region, 0.0)):.3f} against "
                f"{float(previous.get(region, 0.0)):.3f} in the window, a change of"
            )
            findings.append(
                _finding(CHECK_REGION_SHARE, row, change, rule, measure, REFERENCE_WINDOW)
            )
    return findings


def _degradation_findings(metrics, window_metrics, policy) -> list[Finding]:
    rule = policy.degradation
    findings = []
    if window_metrics.empty:
        return findings
    pooled = window_metrics.groupby(["model_name", "model_version", "region"])[
        ["labelled", "labelled_passes"]
    ].sum()
    for row in metrics.to_dict("records"):
        key = (row["model_name"], row["model_version"], row["region"])
        if row["labelled"] < rule.min_n or key not in pooled.index:
            continue
        past = pooled.loc[key]
        if past["labelled"] < rule.min_n:
            continue
        past_rate = past["labelled_passes"] / past["labelled"]
        drop = past_rate - row["labelled_pass_rate"]
        measure = (
            f"labelled pass rate {row['labelled_pass_rate']:.3f} (n={row['labelled']}) against "
            f"{past_rate:.3f} (n={int(past['labelled'])}) in the window, a drop of"
        )
        findings.append(_finding(CHECK_DEGRADATION, row, drop, rule, measure, REFERENCE_WINDOW))
    return findings


def evaluate_rules(
    metrics: pd.DataFrame,
    window_metrics: pd.DataFrame,
    drift: pd.DataFrame,
    policy: MonitoringPolicy,
) -> list[Finding]:
    """Judge every slice with enough requests against the policy; return one finding each.

    ``metrics`` and ``drift`` are the day's ``traffic_metrics`` and ``input_drift`` rows and
    ``window_metrics`` the ``traffic_metrics`` rows of the reference window. Slices below a
    rule's ``min_n`` and disabled rules give no finding.
    """
    findings: list[Finding] = []
    latency = policy.latency
    error_rate = policy.error_rate
    column = f"latency_p{latency.percentile}_ms"
    for row in metrics.to_dict("records"):
        if latency.enabled and row["requests"] - row["errors"] >= latency.min_n:
            measure = f"latency p{latency.percentile} (ms)"
            findings.append(_finding(CHECK_LATENCY, row, row[column], latency, measure))
        if error_rate.enabled and row["requests"] >= error_rate.min_n:
            measure = f"error rate ({row['errors']} of {row['requests']})"
            findings.append(_finding(CHECK_ERROR_RATE, row, row["error_rate"], error_rate, measure))
    if policy.region_share.enabled:
        findings += _region_share_findings(metrics, window_metrics, policy)
    if policy.degradation.enabled:
        findings += _degradation_findings(metrics, window_metrics, policy)

    for row in drift.to_dict("records"):
        if row["feature"] == EMBEDDING_FEATURE:
            rule = policy.embedding_drift
            check, observed = CHECK_EMBEDDING_DRIFT, row["embedding_distance"]
            measure = f"embedding cosine distance against the {row['reference']}"
        elif row["feature"] in policy.input_drift.features:
            rule = policy.input_drift
            check, observed = CHECK_INPUT_DRIFT, row["psi"]
            measure = f"PSI of {row['feature']} against the {row['reference']}"
        else:
            continue
        pooled_only = not policy.input_drift.judge_each_region
        if pooled_only and row["region"] != ALL:
            continue
        if rule.enabled and row["n_current"] >= rule.min_n:
            findings.append(
                _finding(check, row, observed, rule, measure, row["reference"], row["feature"])
            )
    return findings


def alert_rows(findings: Sequence[Finding]) -> pd.DataFrame:
    """Return one alert row per finding with a severity, with a stable ``alert_id``."""
    rows = []
    for finding in findings:
        if finding.severity is None:
            continue
        identity = "|".join(
            str(part)
            for part in (
                finding.request_date,
                finding.check_name,
                finding.model_name,
                finding.model_version,
                finding.region,
                finding.reference,
                finding.feature,
            )
        )
        alert_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
        row = finding.to_dict()
        rows.append({"alert_id": alert_id, **{c: row[c] for c in ALERT_COLUMNS[1:]}})
    return pd.DataFrame(rows, columns=ALERT_COLUMNS)


def worst_severity(findings: Sequence[Finding]) -> str | None:
    """Return ``ERROR`` if any finding errs, else ``WARN`` if any warns, else None."""
    severities = {finding.severity for finding in findings}
    if ERROR in severities:
        return ERROR
    return WARN if WARN in severities else None
