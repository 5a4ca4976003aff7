"""Deployment gates that judge one model version's evaluation results under a gate policy.

Each ``check_*`` function returns one ``GateResult`` per judged slice, and ``decide`` turns
the results into a pass/fail decision. The rules shared by all gates:

* A missing column, a missing slice or a NaN where a value is required gives FAIL, so
  absent evidence never passes.
* A slice with fewer observations than the gate's ``min_n`` gives INSUFFICIENT_EVIDENCE,
  which blocks deployment when ``policy.insufficient_evidence`` is ``"fail"``.
* Threshold gates compare the estimate picked by ``policy.bound``. For a minimum,
  ``conservative`` uses the lower interval bound and ``optimistic`` the upper bound. For a
  maximum it is the other way round. ``point`` uses the point estimate.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest, norm
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from eval_pipeline.core.policy import ALL_LEVELS, GatePolicy, NonRegressionPolicy
from eval_pipeline.core.stats import latency_percentile, wilson_interval

GATES = ("region_minimum", "non_regression", "robustness", "region_gap", "latency", "error_rate")

# Confidence of the Wilson intervals that ``stats.summarize`` stores in ci_low and ci_high.
SUMMARY_CONFIDENCE = 0.95

# Below this many discordant pairs McNemar's test uses the exact binomial distribution.
MCNEMAR_EXACT_BELOW = 25

_BOOTSTRAP_BLOCK = 256


class Outcome(StrEnum):
    """Outcome of one gate on one slice."""

    PASS = "pass"
    FAIL = "fail"
    INSUFFICIENT_EVIDENCE = "insufficient_evidence"
    NO_BASELINE = "no_baseline"


@dataclass
class GateResult:
    """Judgement of one gate on one slice, with the numbers behind it.

    ``blocking`` is True when this result makes the deployment fail under the policy.
    ``bound_used`` is the estimate compared with ``threshold``. ``statistic``,
    ``p_value``, ``p_adjusted`` and ``mde`` (minimum detectable effect) are set only by
    the non-regression gate, where ``observed`` is delta and ``threshold`` the margin.
    Its ``statistic`` is delta for the bootstrap, b - c for exact McNemar and z for the
    normal approximation.
    """

    gate: str
    slice: str
    outcome: Outcome
    blocking: bool
    observed: float | None
    threshold: float | None
    bound_used: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    mde: float | None = None
    method: str = ""
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-safe values, with NaN and infinities as None."""
        return {
            "gate": self.gate,
            "slice": self.slice,
            "outcome": self.outcome.value,
            "blocking": bool(self.blocking),
            "observed": _json_float(self.observed),
            "threshold": _json_float(self.threshold),
            "bound_used": _json_float(self.bound_used),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "n": int(self.n),
            "statistic": _json_float(self.statistic),
            "p_value": _json_float(self.p_value),
            "p_adjusted": _json_float(self.p_adjusted),
            "mde": _json_float(self.mde),
            "method": self.method,
            "reason": self.reason,
        }


@dataclass
class Decision:
    """Deployment decision: ``"pass"`` unless some result is blocking."""

    outcome: str
    failed_gates: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    results: list[GateResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the decision and every result as JSON-safe values."""
        return {
            "outcome": self.outcome,
            "failed_gates": list(self.failed_gates),
            "reasons": list(self.reasons),
            "results": [result.to_dict() for result in self.results],
        }


def evaluate_gates(
    summary: pd.DataFrame,
    items: pd.DataFrame,
    gaps: pd.DataFrame,
    champion_items: pd.DataFrame | None,
    policy: GatePolicy,
) -> list[GateResult]:
    """Run every gate that ``policy`` enables, in ``GATES`` order, and return all results."""
    results: list[GateResult] = []
    if policy.region_minimum.enabled:
        results += check_region_minimums(summary, policy)
    if policy.non_regression.enabled:
        results += check_non_regression(items, champion_items, policy)
    if policy.robustness.enabled:
        results += check_robustness(gaps, policy)
    if policy.region_gap.enabled:
        results += check_region_gap(summary, policy)
    if policy.latency.enabled:
        results += check_latency(items, policy)
    if policy.error_rate.enabled:
        results += check_error_rate(summary, policy)
    return results


def decide(results: Sequence[GateResult]) -> Decision:
    """Return a failing decision when any result is blocking, else a passing one.

    ``failed_gates`` lists each gate with a blocking result once, in ``GATES`` order, and
    ``reasons`` has the reason of every blocking result prefixed by its gate.
    """
    blocking = [result for result in results if result.blocking]
    blocked_gates = {result.gate for result in blocking}
    failed_gates = [gate for gate in GATES if gate in blocked_gates]
    failed_gates += sorted(blocked_gates - set(GATES))
    return Decision(
        outcome="fail" if blocking else "pass",
        failed_gates=failed_gates,
        reasons=[f"{result.gate}: {result.reason}" for result in blocking],
        results=list(results),
    )


# ---------------------------------------------------------------------------------------
# Threshold gates
# ---------------------------------------------------------------------------------------

_SUMMARY_RATE_COLUMNS = ("slice", "region", "noise_level", "n", "passes", "pass_rate")


@dataclass(frozen=True)
class _Estimate:
    """Point estimate of one slice with its interval and a sentence that states them."""

    slice: str
    text: str
    observed: float
    low: float
    high: float
    n: int
    method: str


@dataclass(frozen=True)
class _Limit:
    """Threshold that an estimate is judged against, and how to print its numbers."""

    value: float
    name: str
    is_minimum: bool
    min_n: int
    number: Callable[[float], str]


def check_region_minimums(summary: pd.DataFrame, policy: GatePolicy) -> list[GateResult]:
    """Judge each region's pass rate at the policy's noise level against its minimum.

    The regions are those in the summary plus those named in ``thresholds``, so a region
    that the policy names but the results lack fails as missing. With ``noise_level``
    ``"ALL"`` the region rows are used, whose n counts every noise variant as a separate
    observation.
    """
    gate = "region_minimum"
    settings = policy.region_minimum
    missing = _missing_columns(summary, (*_SUMMARY_RATE_COLUMNS, "ci_low", "ci_high"))
    if missing:
        return [_missing_result(gate, ALL_LEVELS, f"the summary has no column {missing}")]

    rows = _rows_at_level(summary, settings.noise_level)
    listed = {key for key in settings.thresholds if key != "default"}
    regions = sorted(set(_region_names(summary)) | listed)
    if not regions:
        return [_missing_result(gate, ALL_LEVELS, "the summary has no region rows")]

    label = _level_label(settings.noise_level)
    results = []
    for region in regions:
        threshold = settings.thresholds.get(region, settings.thresholds["default"])
        row = rows[rows["region"].astype(str) == region]
        if row.empty:
            reason = f"{region} has no {label} row in the summary, so its pass rate is missing"
            results.append(_missing_result(gate, region, reason, threshold=threshold))
            continue
        absent = _absent_metrics(row.iloc[0], ("n", "passes", "pass_rate", "ci_low", "ci_high"))
        if absent:
            reason = f"{region} {label} is missing {absent} in the summary"
            results.append(_missing_result(gate, region, reason, threshold=threshold))
            continue

        n = int(row.iloc[0]["n"])
        rate = float(row.iloc[0]["pass_rate"])
        low, high = _rate_interval(row.iloc[0], policy.confidence)
        text = f"{region} {label} {_rate(rate)} [{_rate(low)}, {_rate(high)}] (n={n})"
        estimate = _Estimate(region, text, rate, low, high, n, "wilson")
        limit = _Limit(threshold, "minimum", True, settings.min_n, _rate)
        results.append(_judge(gate, estimate, limit, policy))
    return results


def check_robustness(gaps: pd.DataFrame, policy: GatePolicy) -> list[GateResult]:
    """Judge each region's clean-minus-noisy pass-rate gap against the tolerance.

    ``gaps`` is the output of ``stats.robustness_gaps``, so its interval has the confidence
    that the caller passed there. n is the number of items with a clean and a noisy row.
    """
    gate = "robustness"
    settings = policy.robustness
    columns = ("region", "gap", "gap_ci_low", "gap_ci_high", "n_items")
    missing = _missing_columns(gaps, columns)
    if missing:
        return [_missing_result(gate, ALL_LEVELS, f"the gaps table has no column {missing}")]

    rows = gaps[gaps["region"].astype(str) != ALL_LEVELS]
    if rows.empty:
        reason = "the gaps table has no region rows, so no robustness gap was measured"
        return [_missing_result(gate, ALL_LEVELS, reason, threshold=settings.tolerance)]

    results = []
    for _, row in rows.sort_values("region", kind="stable").iterrows():
        region = str(row["region"])
        absent = _absent_metrics(row, ("n_items", "gap", "gap_ci_low", "gap_ci_high"))
        if absent:
            reason = (
                f"{region} robustness gap is missing {absent}. An item counts only when it "
                "has a clean row and at least one noisy row"
            )
            results.append(_missing_result(gate, region, reason, threshold=settings.tolerance))
            continue

        n = int(row["n_items"])
        gap = float(row["gap"])
        low, high = float(row["gap_ci_low"]), float(row["gap_ci_high"])
        text = (
            f"{region} clean-minus-noisy gap {_rate(gap)} [{_rate(low)}, {_rate(high)}] ({n} items)"
        )
        estimate = _Estimate(region, text, gap, low, high, n, "paired_bootstrap")
        limit = _Limit(settings.tolerance, "tolerance", False, settings.min_n, _rate)
        results.append(_judge(gate, estimate, limit, policy))
    return results


def check_region_gap(summary: pd.DataFrame, policy: GatePolicy) -> list[GateResult]:
    """Judge the pass-rate difference between the best and the worst region.

    The interval is Newcombe's hybrid score interval for the difference of two independent
    proportions (statsmodels ``confint_proportions_2indep``). The slice is named
    ``"<best>-<worst>"`` and n is the smallest region's count, because min_n applies to
    every region. A single region gives INSUFFICIENT_EVIDENCE, because a difference between
    regions needs two.
    """
    gate = "region_gap"
    settings = policy.region_gap
    missing = _missing_columns(summary, _SUMMARY_RATE_COLUMNS)
    if missing:
        return [_missing_result(gate, ALL_LEVELS, f"the summary has no column {missing}")]

    label = _level_label(settings.noise_level)
    rows = _rows_at_level(summary, settings.noise_level)
    regions = _region_names(summary)
    if not regions:
        reason = "the summary has no region rows, so no region gap was measured"
        return [_missing_result(gate, ALL_LEVELS, reason, threshold=settings.max_gap)]

    evidence = []
    for region in regions:
        row = rows[rows["region"].astype(str) == region]
        if row.empty:
            reason = f"{region} has no {label} row in the summary, so the region gap is missing"
            return [_missing_result(gate, region, reason, threshold=settings.max_gap)]
        absent = _absent_metrics(row.iloc[0], ("n", "passes", "pass_rate"))
        if absent:
            reason = f"{region} {label} is missing {absent} in the summary"
            return [_missing_result(gate, region, reason, threshold=settings.max_gap)]
        evidence.append((region, int(row.iloc[0]["passes"]), int(row.iloc[0]["n"])))

    if len(evidence) == 1:
        region, _, n = evidence[0]
        reason = (
            f"only region {region} has results, so there is no second region to compare "
            f"its {label} with"
        )
        return [_insufficient_only(gate, region, reason, n, settings.max_gap, policy)]

    # Ties go to the region that sorts first, because evidence is sorted by region.
    best = max(evidence, key=lambda entry: entry[1] / entry[2])
    worst = min(evidence, key=lambda entry: entry[1] / entry[2])
    if best is worst:
        best, worst = evidence[0], evidence[1]
    best_rate, worst_rate = best[1] / best[2], worst[1] / worst[2]
    gap = best_rate - worst_rate
    low, high = confint_proportions_2indep(
        best[1],
        best[2],
        worst[1],
        worst[2],
        method="newcomb",
        compare="diff",
        alpha=1.0 - policy.confidence,
    )
    text = (
        f"largest {label} difference between regions is {best[0]} {_rate(best_rate)} "
        f"(n={best[2]}) minus {worst[0]} {_rate(worst_rate)} (n={worst[2]}) = "
        f"{_rate(gap)} [{_rate(float(low))}, {_rate(float(high))}]"
    )
    small = [region for region, _, count in evidence if count < settings.min_n]
    if small:
        text += f"; regions below min_n: {', '.join(small)}"
    smallest = min(count for _, _, count in evidence)
    # NOTE: the two regions are chosen after looking at the data, so with many regions the
    # interval of the largest observed difference is somewhat too optimistic.
    estimate = _Estimate(
        f"{best[0]}-{worst[0]}", text, gap, float(low), float(high), smallest, "newcomb"
    )
    limit = _Limit(settings.max_gap, "maximum", False, settings.min_n, _rate)
    return [_judge(gate, estimate, limit, policy)]


def check_error_rate(summary: pd.DataFrame, policy: GatePolicy) -> list[GateResult]:
    """Judge the overall share of errored rows, with its Wilson interval, against the maximum."""
    gate = "error_rate"
    settings = policy.error_rate
    missing = _missing_columns(summary, ("slice", "n", "errors"))
    if missing:
        return [_missing_result(gate, "overall", f"the summary has no column {missing}")]

    rows = summary[summary["slice"] == "overall"]
    if rows.empty:
        reason = "the summary has no overall row, so the error rate is missing"
        return [_missing_result(gate, "overall", reason, threshold=settings.max)]
    row = rows.iloc[0]
    absent = _absent_metrics(row, ("n", "errors"))
    if absent:
        reason = f"the overall summary row is missing {absent}"
        return [_missing_result(gate, "overall", reason, threshold=settings.max)]
    n = int(row["n"])
    if n == 0:
        reason = "the overall summary row has n=0, so the error rate is missing"
        return [_missing_result(gate, "overall", reason, threshold=settings.max)]

    errors = int(row["errors"])
    rate = errors / n
    low, high = wilson_interval(errors, n, policy.confidence)
    text = f"error rate {_rate(rate)} [{_rate(low)}, {_rate(high)}] ({errors} of {n} rows)"
    estimate = _Estimate("overall", text, rate, low, high, n, "wilson")
    limit = _Limit(settings.max, "maximum", False, settings.min_n, _rate)
    return [_judge(gate, estimate, limit, policy)]


def check_latency(items: pd.DataFrame, policy: GatePolicy) -> list[GateResult]:
    """Judge the 95th percentile of latency over rows without an error against the maximum.

    The interval comes from a percentile bootstrap that resamples items with replacement,
    so the noise variants of one item, which share a prompt, stay together. It draws from
    ``numpy.random.default_rng(policy.latency.seed)``. A row without an error but with a
    NaN latency fails the gate, because its latency is missing.
    """
    gate = "latency"
    settings = policy.latency
    missing = _missing_columns(items, ("item_id", "latency_ms", "error_code"))
    if missing:
        return [_missing_result(gate, "overall", f"the item results have no column {missing}")]

    ok_rows = items[items["error_code"].isna()]
    latencies = pd.to_numeric(ok_rows["latency_ms"], errors="coerce").astype(float)
    unmeasured = int(latencies.isna().sum())
    if unmeasured:
        reason = (
            f"{unmeasured} of {len(ok_rows)} rows without an error have no latency_ms, so "
            "the p95 latency is missing. Rerun inference for them or mark them as errors"
        )
        return [_missing_result(gate, "overall", reason, threshold=settings.p95_ms_max)]
    if ok_rows.empty:
        reason = "no row finished without an error, so the p95 latency is missing"
        return [_missing_result(gate, "overall", reason, threshold=settings.p95_ms_max)]

    n = len(ok_rows)
    p95 = latency_percentile(latencies, 95.0)
    low, high = _bootstrap_p95_interval(
        ok_rows["item_id"].astype(str).to_numpy(),
        latencies.to_numpy(),
        settings.n_resamples,
        settings.seed,
        policy.confidence,
    )
    text = f"p95 latency {_ms(p95)} [{_ms(low)}, {_ms(high)}] ({n} rows without an error)"
    estimate = _Estimate("overall", text, p95, low, high, n, "item_bootstrap")
    limit = _Limit(settings.p95_ms_max, "maximum", False, settings.min_n, _ms)
    return [_judge(gate, estimate, limit, policy)]


def _bootstrap_p95_interval(
    item_ids: np.ndarray, latencies: np.ndarray, n_resamples: int, seed: int, confidence: float
) -> tuple[float, float]:
    codes, _ = pd.factorize(item_ids)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(codes.max() + 1))
    groups = np.split(latencies[order], starts[1:])

    rng = np.random.default_rng(seed)
    estimates = np.empty(n_resamples, dtype=np.float64)
    for index in range(n_resamples):
        drawn = rng.integers(0, len(groups), size=len(groups))
        values = np.concatenate([groups[position] for position in drawn])
        estimates[index] = np.percentile(values, 95.0, method="linear")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(estimates, [tail, 100.0 - tail])
    return (float(low), float(high))


# ---------------------------------------------------------------------------------------
# Non-regression against the champion
# ---------------------------------------------------------------------------------------

_ITEM_COLUMNS = ("item_id", "region", "noise_level", "passed")


@dataclass
class _PairedTest:
    """One slice's paired comparison before the multiplicity correction."""

    n_items: int
    n_rows: int
    candidate_rate: float
    champion_rate: float
    delta: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    mde: float
    method: str


def check_non_regression(
    items: pd.DataFrame, champion_items: pd.DataFrame | None, policy: GatePolicy
) -> list[GateResult]:
    """Test whether the candidate's pass rate is lower than the champion's, per slice.

    Rows are paired on (item_id, noise_level), and only paired rows count. For each slice
    in ``policy.non_regression.slices`` ("overall", and every region for "region"), the
    one-sided test of H0 "delta >= 0" against "delta < 0" gives a p-value, where delta is
    the candidate's pass rate minus the champion's on the paired rows. The p-values of all
    tested slices are adjusted together (Holm, Benjamini-Hochberg or none). A slice fails
    when its adjusted p-value is below alpha. It has insufficient evidence when it has
    fewer than ``min_n`` items, or when the minimum detectable effect at ``power`` exceeds
    ``margin``. ``champion_items`` None gives one NO_BASELINE result.
    """
    gate = "non_regression"
    settings = policy.non_regression
    if champion_items is None:
        return [_no_baseline(items, settings)]

    for frame, name in ((items, "candidate"), (champion_items, "champion")):
        problem = _item_problem(frame, name)
        if problem:
            return [_missing_result(gate, "overall", problem, threshold=settings.margin)]

    paired = _pair_rows(items, champion_items)
    unmatched = (len(items) - len(paired), len(champion_items) - len(paired))
    slices: list[tuple[str, pd.DataFrame]] = []
    if "overall" in settings.slices:
        slices.append(("overall", paired))
    if "region" in settings.slices:
        for region in sorted(items["region"].astype(str).unique()):
            slices.append((region, paired[paired["region"] == region]))

    tests = [_paired_test(name, rows, settings, policy.confidence) for name, rows in slices]
    p_values = [test.p_value for test in tests if test is not None]
    adjusted = iter(_adjust_p_values(p_values, settings))
    results = []
    for (name, _), test in zip(slices, tests, strict=True):
        if test is None:
            reason = (
                f"{name}: no candidate row has a champion row with the same item_id and "
                f"noise_level, so the paired test is missing. {_unmatched_text(unmatched)}"
            )
            results.append(_missing_result(gate, name, reason, threshold=settings.margin))
            continue
        results.append(_judge_paired(name, test, next(adjusted), unmatched, policy))
    return results


def _no_baseline(items: pd.DataFrame, settings: NonRegressionPolicy) -> GateResult:
    blocking = settings.no_baseline == "fail"
    n = int(items["item_id"].nunique()) if "item_id" in items.columns else 0
    effect = "blocks deployment" if blocking else "does not block deployment"
    reason = (
        f"no version has the alias '{settings.champion_alias}', so there is no champion to "
        f"compare with. This {effect} because no_baseline is '{settings.no_baseline}'."
    )
    return GateResult(
        gate="non_regression",
        slice="overall",
        outcome=Outcome.NO_BASELINE,
        blocking=blocking,
        observed=None,
        threshold=settings.margin,
        bound_used=None,
        ci_low=None,
        ci_high=None,
        n=n,
        method=settings.method,
        reason=reason,
    )


def _item_problem(frame: pd.DataFrame, name: str) -> str | None:
    missing = _missing_columns(frame, _ITEM_COLUMNS)
    if missing:
        return f"the {name} item results have no column {missing}"
    nulls = int(frame["passed"].isna().sum())
    if nulls:
        return f"{nulls} {name} rows have no value in passed, so their outcome is missing"
    duplicated = int(frame.duplicated(["item_id", "noise_level"]).sum())
    if duplicated:
        return (
            f"the {name} item results repeat {duplicated} (item_id, noise_level) pairs, so "
            "rows cannot be paired. Deduplicate them first"
        )
    return None


def _pair_rows(items: pd.DataFrame, champion_items: pd.DataFrame) -> pd.DataFrame:
    candidate = pd.DataFrame(
        {
            "item_id": items["item_id"].astype(str),
            "noise_level": items["noise_level"].astype(str),
            "region": items["region"].astype(str),
            "candidate": items["passed"].astype(bool).astype(np.int64),
        }
    )
    champion = pd.DataFrame(
        {
            "item_id": champion_items["item_id"].astype(str),
            "noise_level": champion_items["noise_level"].astype(str),
            "champion": champion_items["passed"].astype(bool).astype(np.int64),
        }
    )
    return candidate.merge(champion, on=["item_id", "noise_level"], how="inner")


def _paired_test(
    name: str, rows: pd.DataFrame, settings: NonRegressionPolicy, confidence: float
) -> _PairedTest | None:
    if rows.empty:
        return None
    per_item = (
        rows.assign(difference=rows["candidate"] - rows["champion"])
        .groupby("item_id", sort=True)
        .agg(difference=("difference", "sum"), count=("difference", "size"))
    )
    differences = per_item["difference"].to_numpy(dtype=np.int64)
    counts = per_item["count"].to_numpy(dtype=np.int64)
    n_rows = int(counts.sum())
    candidate_rate = float(rows["candidate"].mean())
    champion_rate = float(rows["champion"].mean())
    delta = float(differences.sum() / n_rows)
    mde = _minimum_detectable_effect(differences, counts, delta, champion_rate, settings)

    if settings.method == "bootstrap":
        seed = [settings.seed, _slice_key(name)]
        statistic, p_value, ci_low, ci_high = _bootstrap_test(
            differences, counts, settings.n_resamples, seed, confidence
        )
        method = "paired_bootstrap"
    else:
        statistic, p_value, ci_low, ci_high, method = _mcnemar_test(rows, confidence)

    return _PairedTest(
        n_items=len(per_item),
        n_rows=n_rows,
        candidate_rate=candidate_rate,
        champion_rate=champion_rate,
        delta=delta,
        ci_low=ci_low,
        ci_high=ci_high,
        statistic=statistic,
        p_value=p_value,
        mde=mde,
        method=method,
    )


def _minimum_detectable_effect(
    differences: np.ndarray,
    counts: np.ndarray,
    delta: float,
    champion_rate: float,
    settings: NonRegressionPolicy,
) -> float:
    """Return the drop in pass rate that the one-sided test detects with ``settings.power``.

    The mde is (z[1 - alpha] + z[power]) * sqrt(variance / n_items). The variance is that
    of the per-item contributions to delta, which equals the variance of the per-item
    differences d_i when every item has the same number of paired rows. When it is 0, as
    when both versions agree on every row, the fallback assumes two independent versions
    that pass each row with the champion's rate p. Its per-item variance is 2 p (1 - p)
    divided by the mean number of paired rows per item.
    """
    n_items = len(differences)
    mean_count = float(counts.mean())
    contributions = (differences - delta * counts) / mean_count
    variance = float(contributions.var(ddof=1)) if n_items > 1 else 0.0
    if variance <= 1e-12:
        variance = 2.0 * champion_rate * (1.0 - champion_rate) / mean_count
    z_sum = float(norm.ppf(1.0 - settings.alpha) + norm.ppf(settings.power))
    # NOTE: this uses the unadjusted alpha, so when several slices are tested together
    # the power at the mde is somewhat lower than settings.power.
    return z_sum * math.sqrt(variance / n_items)


def _bootstrap_test(
    differences: np.ndarray,
    counts: np.ndarray,
    n_resamples: int,
    seed: list[int],
    confidence: float,
) -> tuple[float, float, float, float]:
    """Return delta, the one-sided p-value and the percentile interval of delta.

    Items are resampled with replacement, and each resample's delta is the sum of its
    items' pass differences over the sum of their paired rows. The p-value is
    (1 + #{resampled delta >= 0}) / (n_resamples + 1): a regression shifts the resampled
    deltas below 0, which makes the count small. Ties at 0 count against a regression.
    """
    rng = np.random.default_rng(seed)
    count = differences.size
    resampled = np.empty(n_resamples, dtype=np.float64)
    not_negative = 0
    for start in range(0, n_resamples, _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, n_resamples - start)
        indices = rng.integers(0, count, size=(size, count))
        sums = differences[indices].sum(axis=1)
        not_negative += int((sums >= 0).sum())
        resampled[start : start + size] = sums / counts[indices].sum(axis=1)
    p_value = (1 + not_negative) / (n_resamples + 1)
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail])
    delta = float(differences.sum() / counts.sum())
    return delta, p_value, float(low), float(high)


def mcnemar_one_sided(discordant_regressed: int, discordant_improved: int) -> tuple[float, float]:
    """Return McNemar's statistic and the one-sided p-value for a regression.

    ``discordant_regressed`` (b) counts pairs that the champion passed and the candidate
    failed, ``discordant_improved`` (c) the reverse. With b + c below
    ``MCNEMAR_EXACT_BELOW`` the p-value is P(X >= b) for X ~ Binomial(b + c, 1/2) and the
    statistic is b - c. Otherwise it uses the normal approximation with continuity
    correction, z = (b - c - 1) / sqrt(b + c), and the statistic is z. No discordant pairs
    give (0.0, 1.0).
    """
    b, c = discordant_regressed, discordant_improved
    if b + c == 0:
        return 0.0, 1.0
    if b + c < MCNEMAR_EXACT_BELOW:
        p_value = binomtest(b, b + c, 0.5, alternative="greater").pvalue
        return float(b - c), float(p_value)
    z = (b - c - 1) / math.sqrt(b + c)
    return float(z), float(norm.sf(z))


def _mcnemar_test(rows: pd.DataFrame, confidence: float) -> tuple[float, float, float, float, str]:
    # NOTE: McNemar treats the noise variants of one item as independent pairs, but they
    # share the item's difficulty, so its p-value is too small when variants agree. The
    # item-level bootstrap accounts for that, which is why it is the default method.
    candidate = rows["candidate"].to_numpy(dtype=bool)
    champion = rows["champion"].to_numpy(dtype=bool)
    b = int((champion & ~candidate).sum())
    c = int((candidate & ~champion).sum())
    n_rows = len(rows)
    statistic, p_value = mcnemar_one_sided(b, c)
    method = "mcnemar_exact" if b + c < MCNEMAR_EXACT_BELOW else "mcnemar_normal"

    # Wald interval for a difference of paired proportions, over rows.
    delta = (c - b) / n_rows
    standard_error = math.sqrt(max(b + c - (c - b) ** 2 / n_rows, 0.0)) / n_rows
    z = float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    low = max(-1.0, delta - z * standard_error)
    high = min(1.0, delta + z * standard_error)
    return statistic, p_value, low, high, method


def _adjust_p_values(p_values: list[float], settings: NonRegressionPolicy) -> list[float]:
    # Holm and Benjamini-Hochberg leave a single p-value unchanged. Skipping the call for
    # it also skips the gc.collect() that statsmodels 0.15 runs on every Holm adjustment.
    if len(p_values) <= 1 or settings.correction == "none":
        return list(p_values)
    method = {"holm": "holm", "bh": "fdr_bh"}[settings.correction]
    _, adjusted, _, _ = multipletests(p_values, alpha=settings.alpha, method=method)
    return [float(value) for value in adjusted]


def _judge_paired(
    name: str,
    test: _PairedTest,
    p_adjusted: float,
    unmatched: tuple[int, int],
    policy: GatePolicy,
) -> GateResult:
    settings = policy.non_regression
    text = (
        f"{name}: candidate pass rate {_rate(test.candidate_rate)} vs champion "
        f"{_rate(test.champion_rate)} on {test.n_rows} paired rows of {test.n_items} items, "
        f"delta {_signed(test.delta)} [{_signed(test.ci_low)}, {_signed(test.ci_high)}], "
        f"{test.method} p {_p(test.p_value)}, {settings.correction}-adjusted p "
        f"{_p(p_adjusted)}, mde {_rate(test.mde)} at power {settings.power:.2f}"
    )
    significant = p_adjusted < settings.alpha
    if test.n_items < settings.min_n:
        outcome = Outcome.INSUFFICIENT_EVIDENCE
        verdict = (
            f"{test.n_items} items < min_n {settings.min_n}, so the slice is not judged. "
            "Add items to the benchmark or lower min_n."
        )
        if significant:
            verdict += f" The adjusted p is below alpha {settings.alpha} nonetheless."
        verdict += f" {_insufficient_effect(policy)}"
    elif significant:
        outcome = Outcome.FAIL
        verdict = (
            f"The adjusted p is below alpha {settings.alpha}, so the candidate is worse than "
            "the champion."
        )
    elif test.mde > settings.margin:
        outcome = Outcome.INSUFFICIENT_EVIDENCE
        verdict = (
            f"No significant regression, but the mde {_rate(test.mde)} > margin "
            f"{_rate(settings.margin)}, so a regression of the margin could go unnoticed. "
            f"Add items or raise the margin. {_insufficient_effect(policy)}"
        )
    else:
        outcome = Outcome.PASS
        verdict = (
            f"No significant regression at alpha {settings.alpha}, and the mde "
            f"{_rate(test.mde)} <= margin {_rate(settings.margin)}."
        )

    return GateResult(
        gate="non_regression",
        slice=name,
        outcome=outcome,
        blocking=_is_blocking(outcome, policy),
        observed=test.delta,
        threshold=settings.margin,
        bound_used=None,
        ci_low=test.ci_low,
        ci_high=test.ci_high,
        n=test.n_items,
        statistic=test.statistic,
        p_value=test.p_value,
        p_adjusted=p_adjusted,
        mde=test.mde,
        method=test.method,
        reason=f"{text}. {verdict} {_unmatched_text(unmatched)}",
    )


def _unmatched_text(unmatched: tuple[int, int]) -> str:
    candidate, champion = unmatched
    if candidate == 0 and champion == 0:
        return "Every row was paired."
    return f"{candidate} candidate rows and {champion} champion rows had no pair and were left out."


def _slice_key(name: str) -> int:
    # hash() of a string changes between processes, so the stream key comes from SHA-256.
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big")


# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------


# Comparison printed in a reason, keyed by (the limit is a minimum, the estimate passed).
_RELATIONS = {(True, True): ">=", (True, False): "<", (False, True): "<=", (False, False): ">"}


def _judge(gate: str, estimate: _Estimate, limit: _Limit, policy: GatePolicy) -> GateResult:
    """Compare the estimate picked by ``policy.bound`` with the limit, after the min_n check."""
    if estimate.n < limit.min_n:
        reason = (
            f"{estimate.text}; n={estimate.n} < min_n {limit.min_n}, so the {limit.name} "
            f"{limit.number(limit.value)} is not judged. {_insufficient_effect(policy)}"
        )
        return GateResult(
            gate=gate,
            slice=estimate.slice,
            outcome=Outcome.INSUFFICIENT_EVIDENCE,
            blocking=_is_blocking(Outcome.INSUFFICIENT_EVIDENCE, policy),
            observed=estimate.observed,
            threshold=limit.value,
            bound_used=None,
            ci_low=estimate.low,
            ci_high=estimate.high,
            n=estimate.n,
            method=estimate.method,
            reason=reason,
        )

    bound = _pick_bound(policy.bound, estimate, minimum=limit.is_minimum)
    passed = bound >= limit.value if limit.is_minimum else bound <= limit.value
    relation = _RELATIONS[(limit.is_minimum, passed)]
    reason = (
        f"{estimate.text}; {_bound_name(policy.bound, minimum=limit.is_minimum)} "
        f"{limit.number(bound)} {relation} {limit.name} {limit.number(limit.value)}"
    )
    return GateResult(
        gate=gate,
        slice=estimate.slice,
        outcome=Outcome.PASS if passed else Outcome.FAIL,
        blocking=not passed,
        observed=estimate.observed,
        threshold=limit.value,
        bound_used=bound,
        ci_low=estimate.low,
        ci_high=estimate.high,
        n=estimate.n,
        method=estimate.method,
        reason=reason,
    )


def _insufficient_only(
    gate: str, slice_name: str, text: str, n: int, threshold: float, policy: GatePolicy
) -> GateResult:
    return GateResult(
        gate=gate,
        slice=slice_name,
        outcome=Outcome.INSUFFICIENT_EVIDENCE,
        blocking=_is_blocking(Outcome.INSUFFICIENT_EVIDENCE, policy),
        observed=None,
        threshold=threshold,
        bound_used=None,
        ci_low=None,
        ci_high=None,
        n=n,
        method="none",
        reason=f"{text}. {_insufficient_effect(policy)}",
    )


def _insufficient_effect(policy: GatePolicy) -> str:
    if policy.insufficient_evidence == "fail":
        return "This blocks deployment because insufficient_evidence is 'fail'."
    return "This does not block deployment because insufficient_evidence is 'report_only'."


def _is_blocking(outcome: Outcome, policy: GatePolicy) -> bool:
    if outcome is Outcome.PASS:
        return False
    if outcome is Outcome.INSUFFICIENT_EVIDENCE:
        return policy.insufficient_evidence == "fail"
    if outcome is Outcome.NO_BASELINE:
        return policy.non_regression.no_baseline == "fail"
    return True


def _missing_result(
    gate: str, slice_name: str, reason: str, threshold: float | None = None
) -> GateResult:
    return GateResult(
        gate=gate,
        slice=slice_name,
        outcome=Outcome.FAIL,
        blocking=True,
        observed=None,
        threshold=threshold,
        bound_used=None,
        ci_low=None,
        ci_high=None,
        n=0,
        method="none",
        reason=f"{reason}. The gate fails because a missing metric never passes.",
    )


def _pick_bound(bound: str, estimate: _Estimate, *, minimum: bool) -> float:
    if bound == "point":
        return estimate.observed
    # A conservative minimum needs the lower bound to clear it, and a conservative maximum
    # needs the upper bound to stay below it. Optimistic is the reverse.
    use_low = (bound == "conservative") == minimum
    return estimate.low if use_low else estimate.high


def _bound_name(bound: str, *, minimum: bool) -> str:
    if bound == "point":
        return "point estimate"
    use_low = (bound == "conservative") == minimum
    return "lower bound" if use_low else "upper bound"


def _rate_interval(row: pd.Series, confidence: float) -> tuple[float, float]:
    if math.isclose(confidence, SUMMARY_CONFIDENCE):
        return float(row["ci_low"]), float(row["ci_high"])
    return wilson_interval(int(row["passes"]), int(row["n"]), confidence)


def _rows_at_level(summary: pd.DataFrame, noise_level: str) -> pd.DataFrame:
    if noise_level == ALL_LEVELS:
        return summary[summary["slice"] == "region"]
    return summary[(summary["slice"] == "cell") & (summary["noise_level"] == noise_level)]


def _region_names(summary: pd.DataFrame) -> list[str]:
    regions = summary["region"].astype(str)
    return sorted(set(regions[regions != ALL_LEVELS]))


def _level_label(noise_level: str) -> str:
    if noise_level == ALL_LEVELS:
        return "pass rate over all noise levels"
    return f"{noise_level} pass rate"


def _missing_columns(frame: pd.DataFrame, columns: Sequence[str]) -> str:
    return ", ".join(column for column in columns if column not in frame.columns)


def _absent_metrics(row: pd.Series, columns: Sequence[str]) -> str:
    absent = [column for column in columns if _is_absent(row.get(column))]
    return ", ".join(absent)


def _is_absent(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _json_float(value: float | None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _rate(value: float) -> str:
    return f"{value:.3f}"


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def _p(value: float) -> str:
    return f"{value:.3g}"
