import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep

from eval_pipeline.core.gates import (
    GATES,
    GateResult,
    Outcome,
    check_error_rate,
    check_latency,
    check_non_regression,
    check_region_gap,
    check_region_minimums,
    check_robustness,
    decide,
    evaluate_gates,
    mcnemar_one_sided,
)
from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.core.policy import GatePolicy
from eval_pipeline.core.stats import robustness_gaps, summarize, wilson_interval

NOISY = NOISE_LEVELS[1:]


def _row(item_id, region, level, passed, latency=100.0, error_code=None):
    return {
        "item_id": item_id,
        "region": region,
        "noise_level": level,
        "passed": passed,
        "exact_match": passed,
        "chrf": 90.0 if passed else 20.0,
        "semantic_similarity": 0.9 if passed else 0.3,
        "latency_ms": latency,
        "error_code": error_code,
    }


def _region(region, n_items, clean_passes, noisy_passes=None, latency=100.0):
    """Rows for n_items items: the first clean_passes pass clean, noisy_passes pass noisy."""
    if noisy_passes is None:
        noisy_passes = clean_passes
    rows = []
    for index in range(n_items):
        item_id = f"{region.lower()}-{index}"
        rows.append(_row(item_id, region, "clean", index < clean_passes, latency))
        for level in NOISY:
            rows.append(_row(item_id, region, level, index < noisy_passes, latency))
    return rows


def _items(*regions):
    return pd.DataFrame([row for rows in regions for row in rows])


def _strong_items():
    """Three regions of 60 items that clear every default threshold gate."""
    return _items(_region("SV", 60, 60), _region("PE", 60, 60), _region("MX", 60, 60))


def _policy(section=None, /, **changes):
    """Return the default policy with top-level or one section's fields changed."""
    policy = GatePolicy()
    if section is None:
        return policy.model_copy(update=changes)
    updated = getattr(policy, section).model_copy(update=changes)
    return policy.model_copy(update={section: updated})


def _by_slice(results):
    return {result.slice: result for result in results}


# ---------------------------------------------------------------------------------------
# Region minimum
# ---------------------------------------------------------------------------------------


def test_region_minimum_passes():
    results = check_region_minimums(summarize(_strong_items()), _policy())
    assert [result.slice for result in results] == ["MX", "PE", "SV"]
    for result in results:
        assert result.outcome is Outcome.PASS, result.reason
        assert result.blocking is False


def test_region_minimum_fails_low_region():
    items = _items(_region("SV", 60, 45), _region("PE", 60, 60), _region("MX", 60, 60))
    result = _by_slice(check_region_minimums(summarize(items), _policy()))["SV"]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True
    assert result.threshold == 0.80
    assert result.observed == pytest.approx(0.75)
    assert "SV clean pass rate 0.750" in result.reason
    assert "< minimum 0.800" in result.reason


def test_region_minimum_uses_default_threshold():
    # 52 of 60: lower bound about 0.758, which clears 0.70 but would miss SV's 0.80.
    items = _items(_region("SV", 60, 60), _region("PE", 60, 60), _region("MX", 60, 52))
    result = _by_slice(check_region_minimums(summarize(items), _policy()))["MX"]
    assert result.threshold == 0.70
    assert result.bound_used < 0.80
    assert result.outcome is Outcome.PASS


def test_region_minimum_policy_region_missing():
    items = _items(_region("MX", 60, 60))
    results = _by_slice(check_region_minimums(summarize(items), _policy()))
    assert results["SV"].outcome is Outcome.FAIL
    assert results["SV"].blocking is True
    assert "missing" in results["SV"].reason
    assert results["MX"].outcome is Outcome.PASS


def test_region_minimum_missing_cell():
    # SV has only noisy rows, so there is no clean cell to judge.
    rows = [row for row in _region("SV", 60, 60) if row["noise_level"] != "clean"]
    items = _items(rows, _region("PE", 60, 60), _region("MX", 60, 60))
    result = _by_slice(check_region_minimums(summarize(items), _policy()))["SV"]
    assert result.outcome is Outcome.FAIL
    assert "no clean pass rate row" in result.reason


def test_region_minimum_nan_interval_fails():
    summary = summarize(_strong_items())
    summary.loc[(summary["slice"] == "cell") & (summary["region"] == "PE"), "ci_low"] = math.nan
    result = _by_slice(check_region_minimums(summary, _policy()))["PE"]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True
    assert "ci_low" in result.reason


def test_region_minimum_missing_column_fails():
    summary = summarize(_strong_items()).drop(columns=["ci_high"])
    results = check_region_minimums(summary, _policy())
    assert len(results) == 1
    assert results[0].outcome is Outcome.FAIL
    assert "ci_high" in results[0].reason


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_region_minimum_small_n_never_passes(setting):
    items = _items(_region("SV", 10, 10), _region("PE", 60, 60), _region("MX", 60, 60))
    policy = _policy(insufficient_evidence=setting)
    result = _by_slice(check_region_minimums(summarize(items), policy))["SV"]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")
    assert "n=10 < min_n 30" in result.reason


def test_region_minimum_bound_choice():
    # 85 of 100 clean passes: point 0.85, Wilson 95% interval about [0.767, 0.907].
    items = _items(_region("SV", 100, 85), _region("PE", 60, 60), _region("MX", 60, 60))
    summary = summarize(items)
    outcomes = {
        bound: _by_slice(check_region_minimums(summary, _policy(bound=bound)))["SV"]
        for bound in ("conservative", "point", "optimistic")
    }
    assert outcomes["conservative"].outcome is Outcome.FAIL
    assert outcomes["point"].outcome is Outcome.PASS
    assert outcomes["optimistic"].outcome is Outcome.PASS
    assert outcomes["conservative"].bound_used == pytest.approx(outcomes["conservative"].ci_low)
    assert outcomes["optimistic"].bound_used == pytest.approx(outcomes["optimistic"].ci_high)


def test_region_minimum_optimistic_needs_evidence_to_fail():
    # 78 of 100: the point estimate misses 0.80, but the upper bound clears it.
    items = _items(_region("SV", 100, 78), _region("PE", 60, 60), _region("MX", 60, 60))
    summary = summarize(items)
    point = _by_slice(check_region_minimums(summary, _policy(bound="point")))["SV"]
    optimistic = _by_slice(check_region_minimums(summary, _policy(bound="optimistic")))["SV"]
    assert point.outcome is Outcome.FAIL
    assert optimistic.outcome is Outcome.PASS


def test_region_minimum_recomputes_interval():
    items = _items(_region("SV", 100, 85), _region("PE", 60, 60), _region("MX", 60, 60))
    result = _by_slice(check_region_minimums(summarize(items), _policy(confidence=0.5)))["SV"]
    low, high = wilson_interval(85, 100, 0.5)
    assert result.ci_low == pytest.approx(low)
    assert result.ci_high == pytest.approx(high)
    assert result.outcome is Outcome.PASS


def test_region_minimum_all_levels():
    items = _items(_region("SV", 60, 60, 30), _region("PE", 60, 60), _region("MX", 60, 60))
    policy = _policy("region_minimum", noise_level="ALL")
    result = _by_slice(check_region_minimums(summarize(items), policy))["SV"]
    assert result.n == 240
    assert result.observed == pytest.approx(150 / 240)
    assert result.outcome is Outcome.FAIL


# ---------------------------------------------------------------------------------------
# Robustness
# ---------------------------------------------------------------------------------------


def test_robustness_passes():
    results = check_robustness(robustness_gaps(_strong_items()), _policy())
    assert [result.slice for result in results] == ["MX", "PE", "SV"]
    for result in results:
        assert result.outcome is Outcome.PASS, result.reason


def test_robustness_fails_large_gap():
    items = _items(_region("SV", 60, 60, 30), _region("PE", 60, 60), _region("MX", 60, 60))
    result = _by_slice(check_robustness(robustness_gaps(items), _policy()))["SV"]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True
    assert result.observed == pytest.approx(0.5)
    assert "> tolerance 0.150" in result.reason


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_robustness_small_n_never_passes(setting):
    items = _items(_region("SV", 12, 12), _region("PE", 60, 60))
    policy = _policy(insufficient_evidence=setting)
    result = _by_slice(check_robustness(robustness_gaps(items), policy))["SV"]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")
    assert result.n == 12


def test_robustness_nan_gap_fails():
    gaps = robustness_gaps(_strong_items())
    gaps.loc[gaps["region"] == "MX", "gap_ci_high"] = math.nan
    result = _by_slice(check_robustness(gaps, _policy()))["MX"]
    assert result.outcome is Outcome.FAIL
    assert "gap_ci_high" in result.reason


def test_robustness_region_without_clean_fails():
    rows = [row for row in _region("SV", 60, 60) if row["noise_level"] != "clean"]
    items = _items(rows, _region("PE", 60, 60))
    result = _by_slice(check_robustness(robustness_gaps(items), _policy()))["SV"]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True


def test_robustness_bound_choice():
    # 6 of 60 items fail every noisy level: gap 0.10, upper bound about 0.18.
    items = _items(_region("SV", 60, 60, 54), _region("PE", 60, 60))
    gaps = robustness_gaps(items)
    conservative = _by_slice(check_robustness(gaps, _policy()))["SV"]
    point = _by_slice(check_robustness(gaps, _policy(bound="point")))["SV"]
    assert conservative.ci_high > 0.15
    assert conservative.outcome is Outcome.FAIL
    assert point.outcome is Outcome.PASS
    assert point.bound_used == pytest.approx(0.10)


def test_robustness_skips_pooled_row():
    results = check_robustness(robustness_gaps(_strong_items()), _policy())
    assert "ALL" not in [result.slice for result in results]


# ---------------------------------------------------------------------------------------
# Region gap
# ---------------------------------------------------------------------------------------


def test_region_gap_passes():
    results = check_region_gap(summarize(_strong_items()), _policy())
    assert len(results) == 1
    assert results[0].outcome is Outcome.PASS, results[0].reason


def test_region_gap_fails_and_names_regions():
    items = _items(_region("SV", 60, 30), _region("PE", 60, 57), _region("MX", 60, 60))
    result = check_region_gap(summarize(items), _policy())[0]
    assert result.slice == "MX-SV"
    assert result.outcome is Outcome.FAIL
    assert result.observed == pytest.approx(0.5)


def test_region_gap_uses_newcombe_interval():
    items = _items(_region("SV", 60, 42), _region("MX", 50, 45))
    result = check_region_gap(summarize(items), _policy())[0]
    low, high = confint_proportions_2indep(45, 50, 42, 60, method="newcomb", compare="diff")
    assert result.ci_low == pytest.approx(low)
    assert result.ci_high == pytest.approx(high)


def test_region_gap_bound_choice():
    # MX 54/60 against SV 48/60: gap 0.10, upper bound above 0.15.
    items = _items(_region("SV", 60, 48), _region("MX", 60, 54))
    summary = summarize(items)
    conservative = check_region_gap(summary, _policy())[0]
    point = check_region_gap(summary, _policy(bound="point"))[0]
    assert conservative.outcome is Outcome.FAIL
    assert point.outcome is Outcome.PASS


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_region_gap_small_region_never_passes(setting):
    items = _items(_region("SV", 10, 10), _region("MX", 60, 60))
    result = check_region_gap(summarize(items), _policy(insufficient_evidence=setting))[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")
    assert "SV" in result.reason


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_region_gap_single_region(setting):
    items = _items(_region("MX", 60, 60))
    result = check_region_gap(summarize(items), _policy(insufficient_evidence=setting))[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")


def test_region_gap_missing_cell_fails():
    rows = [row for row in _region("SV", 60, 60) if row["noise_level"] != "clean"]
    result = check_region_gap(summarize(_items(rows, _region("MX", 60, 60))), _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert result.slice == "SV"


# ---------------------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------------------


def test_latency_passes():
    result = check_latency(_strong_items(), _policy())[0]
    assert result.outcome is Outcome.PASS, result.reason
    assert result.observed == pytest.approx(100.0)


def test_latency_fails_slow():
    items = _items(_region("SV", 60, 60, latency=2500.0))
    result = check_latency(items, _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True
    assert "p95 latency 2500 ms" in result.reason


def test_latency_skips_errored_rows():
    items = _items(_region("SV", 60, 60))
    items.loc[:9, "latency_ms"] = math.nan
    items.loc[:9, "error_code"] = "timeout"
    result = check_latency(items, _policy())[0]
    assert result.outcome is Outcome.PASS
    assert result.n == len(items) - 10


def test_latency_nan_without_error_fails():
    items = _items(_region("SV", 60, 60))
    items.loc[3, "latency_ms"] = math.nan
    result = check_latency(items, _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "latency_ms" in result.reason


def test_latency_all_errored_fails():
    items = _items(_region("SV", 20, 20))
    items["error_code"] = "timeout"
    result = check_latency(items, _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "missing" in result.reason


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_latency_small_n_never_passes(setting):
    items = _items(_region("SV", 5, 5))
    result = check_latency(items, _policy(insufficient_evidence=setting))[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")


def _borderline_latency_items():
    """60 items whose p95 is just below 2000 ms while a few items take 2400 ms."""
    rows = []
    for index in range(60):
        latency = 2400.0 if index < 3 else 1000.0 + 15.0 * index
        rows += _region(f"R{index}", 1, 1, latency=latency)
    return _items(rows)


def test_latency_bound_choice():
    items = _borderline_latency_items()
    conservative = check_latency(items, _policy())[0]
    point = check_latency(items, _policy(bound="point"))[0]
    assert point.observed < 2000.0
    assert point.outcome is Outcome.PASS
    assert conservative.ci_high > 2000.0
    assert conservative.outcome is Outcome.FAIL


def test_latency_interval_is_seeded():
    items = _borderline_latency_items()
    first = check_latency(items, _policy())[0]
    second = check_latency(items, _policy())[0]
    other = check_latency(items, _policy("latency", seed=5))[0]
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)


# ---------------------------------------------------------------------------------------
# Error rate
# ---------------------------------------------------------------------------------------


def _with_errors(n_items, n_errors):
    items = _items(_region("SV", n_items, n_items))
    errored = items.index[:n_errors]
    items.loc[errored, "error_code"] = "timeout"
    items.loc[errored, "latency_ms"] = math.nan
    items.loc[errored, "passed"] = False
    return items


def test_error_rate_passes():
    # 0 errors in 240 rows: Wilson upper bound about 0.016.
    result = check_error_rate(summarize(_with_errors(60, 0)), _policy())[0]
    assert result.outcome is Outcome.PASS, result.reason


def test_error_rate_fails():
    result = check_error_rate(summarize(_with_errors(60, 12)), _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert result.observed == pytest.approx(12 / 240)
    assert "12 of 240 rows" in result.reason


def test_error_rate_bound_choice():
    # 2 errors in 240 rows: point 0.008, Wilson upper bound about 0.030.
    summary = summarize(_with_errors(60, 2))
    assert check_error_rate(summary, _policy())[0].outcome is Outcome.FAIL
    assert check_error_rate(summary, _policy(bound="point"))[0].outcome is Outcome.PASS


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_error_rate_small_n_never_passes(setting):
    summary = summarize(_with_errors(5, 0))
    result = check_error_rate(summary, _policy(insufficient_evidence=setting))[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")


def test_error_rate_missing_overall_fails():
    summary = summarize(_with_errors(60, 0))
    summary = summary[summary["slice"] != "overall"]
    result = check_error_rate(summary, _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "overall" in result.reason


def test_error_rate_nan_errors_fails():
    summary = summarize(_with_errors(60, 0))
    summary["errors"] = summary["errors"].astype(float)
    summary.loc[summary["slice"] == "overall", "errors"] = math.nan
    result = check_error_rate(summary, _policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "errors" in result.reason


# ---------------------------------------------------------------------------------------
# Non-regression
# ---------------------------------------------------------------------------------------


def _champion(n_items, region="SV", prefix=None):
    """Champion rows where item i passes level j unless (i + j) % 4 == 0 (75% pass)."""
    prefix = prefix or region.lower()
    rows = []
    for index in range(n_items):
        for position, level in enumerate(NOISE_LEVELS):
            passed = (index + position) % 4 != 0
            rows.append(_row(f"{prefix}-{index}", region, level, passed))
    return pd.DataFrame(rows)


def _candidate(champion, regressed_items=(), improved_items=()):
    """Copy champion results, failing one passing row of each regressed item and passing
    one failing row of each improved item."""
    candidate = champion.copy()
    for item_id in regressed_items:
        row = candidate.index[(candidate["item_id"] == item_id) & candidate["passed"]][0]
        candidate.loc[row, "passed"] = False
    for item_id in improved_items:
        row = candidate.index[(candidate["item_id"] == item_id) & ~candidate["passed"]][0]
        candidate.loc[row, "passed"] = True
    return candidate


def _item_ids(prefix, indices):
    return [f"{prefix}-{index}" for index in indices]


def _overall_policy(**changes):
    return _policy("non_regression", slices=["overall"], **changes)


def test_non_regression_passes_on_balanced_changes():
    champion = _champion(400)
    candidate = _candidate(
        champion, _item_ids("sv", range(0, 20)), _item_ids("sv", range(200, 220))
    )
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.outcome is Outcome.PASS, result.reason
    assert result.blocking is False
    assert result.observed == pytest.approx(0.0)
    assert result.mde <= 0.05


def test_non_regression_fails_on_regression():
    champion = _champion(400)
    candidate = _candidate(champion, _item_ids("sv", range(0, 80)))
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.outcome is Outcome.FAIL
    assert result.blocking is True
    assert result.observed == pytest.approx(-80 / 1600)
    assert result.p_adjusted < 0.05
    assert "worse than the champion" in result.reason


def test_non_regression_identical_versions_pass():
    champion = _champion(400)
    result = check_non_regression(champion.copy(), champion, _overall_policy())[0]
    assert result.outcome is Outcome.PASS, result.reason
    assert result.p_value == 1.0


def test_non_regression_fills_every_number():
    champion = _champion(400)
    candidate = _candidate(champion, _item_ids("sv", range(0, 30)))
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.statistic is not None
    assert result.p_value is not None
    assert result.p_adjusted is not None
    assert result.ci_low is not None
    assert result.ci_high is not None
    assert result.mde is not None
    assert result.n == 400
    assert result.threshold == 0.05


def test_bootstrap_p_all_regressed():
    # Every item loses a row, so no resample has a mean >= 0 and p = 1 / (B + 1).
    champion = _champion(400)
    candidate = _candidate(champion, _item_ids("sv", range(400)))
    policy = _overall_policy(n_resamples=999)
    result = check_non_regression(candidate, champion, policy)[0]
    assert result.p_value == pytest.approx(1 / 1000)
    assert result.ci_high < 0


def test_bootstrap_p_all_improved():
    champion = _champion(400)
    candidate = _candidate(champion, improved_items=_item_ids("sv", range(400)))
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.p_value == 1.0
    assert result.outcome is Outcome.PASS


def test_bootstrap_is_seeded():
    champion = _champion(400)
    candidate = _candidate(
        champion, _item_ids("sv", range(0, 30)), _item_ids("sv", range(200, 220))
    )
    first = check_non_regression(candidate, champion, _overall_policy())[0]
    second = check_non_regression(candidate, champion, _overall_policy())[0]
    other = check_non_regression(candidate, champion, _overall_policy(seed=9))[0]
    assert first.p_value == second.p_value
    assert (first.ci_low, first.ci_high) == (second.ci_low, second.ci_high)
    assert first.p_value != other.p_value


@pytest.mark.parametrize("setting", ["fail", "report_only"])
def test_non_regression_small_n_never_passes(setting):
    champion = _champion(100)
    policy = _overall_policy().model_copy(update={"insufficient_evidence": setting})
    result = check_non_regression(champion.copy(), champion, policy)[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.blocking is (setting == "fail")
    assert "100 items < min_n 250" in result.reason


def test_non_regression_low_power_is_insufficient():
    # Many changes in both directions give a large variance, so the mde exceeds the margin.
    champion = _champion(60)
    candidate = _candidate(champion, _item_ids("sv", range(0, 30)), _item_ids("sv", range(30, 60)))
    policy = _overall_policy(min_n=30)
    result = check_non_regression(candidate, champion, policy)[0]
    assert result.outcome is Outcome.INSUFFICIENT_EVIDENCE
    assert result.mde > 0.05
    assert "mde" in result.reason


@pytest.mark.parametrize(("setting", "blocking"), [("pass", False), ("fail", True)])
def test_non_regression_no_baseline(setting, blocking):
    items = _champion(50)
    result = check_non_regression(items, None, _policy("non_regression", no_baseline=setting))
    assert len(result) == 1
    assert result[0].outcome is Outcome.NO_BASELINE
    assert result[0].blocking is blocking
    assert "champion" in result[0].reason


def test_non_regression_reports_unmatched():
    champion = _champion(400)
    candidate = champion.copy()
    champion = champion.iloc[3:]
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.n == 400
    assert "3 candidate rows and 0 champion rows had no pair" in result.reason


def test_non_regression_no_pairs_fails():
    champion = _champion(400, prefix="old")
    candidate = _champion(400, prefix="new")
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "missing" in result.reason


def test_non_regression_null_passed_fails():
    champion = _champion(400)
    candidate = champion.copy().astype({"passed": object})
    candidate.loc[5, "passed"] = None
    result = check_non_regression(candidate, champion, _overall_policy())[0]
    assert result.outcome is Outcome.FAIL
    assert "passed" in result.reason


def test_non_regression_region_slices():
    champion = pd.concat([_champion(400, "SV"), _champion(400, "PE")], ignore_index=True)
    candidate = _candidate(champion, _item_ids("sv", range(0, 120)))
    results = _by_slice(check_non_regression(candidate, champion, _policy()))
    assert set(results) == {"overall", "SV", "PE"}
    assert results["SV"].outcome is Outcome.FAIL
    assert results["PE"].outcome is Outcome.PASS
    assert results["PE"].n == 400


def _three_region_frames():
    champion = pd.concat(
        [_champion(300, region) for region in ("SV", "PE", "MX")], ignore_index=True
    )
    regressed = [
        *_item_ids("sv", range(0, 45)),
        *_item_ids("pe", range(0, 25)),
        *_item_ids("mx", range(0, 10)),
    ]
    return _candidate(champion, regressed), champion


@pytest.mark.parametrize(("correction", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_correction_matches_multipletests(correction, method):
    candidate, champion = _three_region_frames()
    policy = _policy("non_regression", correction=correction)
    results = check_non_regression(candidate, champion, policy)
    raw = [result.p_value for result in results]
    expected = multipletests(raw, alpha=0.05, method=method)[1]
    assert [result.slice for result in results] == ["overall", "MX", "PE", "SV"]
    assert [result.p_adjusted for result in results] == pytest.approx(list(expected))


def test_no_correction_keeps_p():
    candidate, champion = _three_region_frames()
    results = check_non_regression(
        candidate, champion, _policy("non_regression", correction="none")
    )
    for result in results:
        assert result.p_adjusted == result.p_value


def _mcnemar_frames(both_pass, regressed, improved, both_fail):
    """One row per item at the clean level, with the four cells of a paired 2x2 table."""
    cells = [(True, True)] * both_pass + [(True, False)] * regressed
    cells += [(False, True)] * improved + [(False, False)] * both_fail
    champion_rows, candidate_rows = [], []
    for index, (champion_passed, candidate_passed) in enumerate(cells):
        champion_rows.append(_row(f"sv-{index}", "SV", "clean", champion_passed))
        candidate_rows.append(_row(f"sv-{index}", "SV", "clean", candidate_passed))
    return pd.DataFrame(candidate_rows), pd.DataFrame(champion_rows)


def _mcnemar_policy():
    return _overall_policy(method="mcnemar", correction="none", min_n=1)


def test_mcnemar_exact_matches_statsmodels():
    candidate, champion = _mcnemar_frames(10, 9, 2, 20)
    result = check_non_regression(candidate, champion, _mcnemar_policy())[0]
    two_sided = mcnemar([[10, 9], [2, 20]], exact=True).pvalue
    assert result.method == "mcnemar_exact"
    assert result.p_value == pytest.approx(two_sided / 2)
    assert result.statistic == 7


def test_mcnemar_exact_matches_binomtest():
    candidate, champion = _mcnemar_frames(10, 9, 2, 20)
    result = check_non_regression(candidate, champion, _mcnemar_policy())[0]
    expected = binomtest(9, 11, 0.5, alternative="greater").pvalue
    assert result.p_value == pytest.approx(expected)


def test_mcnemar_normal_matches_statsmodels():
    candidate, champion = _mcnemar_frames(100, 30, 12, 80)
    result = check_non_regression(candidate, champion, _mcnemar_policy())[0]
    chi2 = mcnemar([[100, 30], [12, 80]], exact=False, correction=True)
    assert result.method == "mcnemar_normal"
    assert result.statistic**2 == pytest.approx(chi2.statistic)
    assert result.p_value == pytest.approx(chi2.pvalue / 2)


def test_mcnemar_improvement_is_not_regression():
    assert mcnemar_one_sided(2, 9)[1] > 0.5
    assert mcnemar_one_sided(0, 0) == (0.0, 1.0)


def test_mcnemar_interval_contains_delta():
    candidate, champion = _mcnemar_frames(100, 30, 12, 80)
    result = check_non_regression(candidate, champion, _mcnemar_policy())[0]
    assert result.observed == pytest.approx((12 - 30) / 222)
    assert result.ci_low < result.observed < result.ci_high


# ---------------------------------------------------------------------------------------
# All gates and the decision
# ---------------------------------------------------------------------------------------


def _all_inputs(items):
    return summarize(items), items, robustness_gaps(items)


def test_evaluate_gates_runs_enabled():
    items = _strong_items()
    summary, items, gaps = _all_inputs(items)
    results = evaluate_gates(summary, items, gaps, None, _policy())
    assert {result.gate for result in results} == set(GATES)


def test_evaluate_gates_skips_disabled():
    summary, items, gaps = _all_inputs(_strong_items())
    policy = _policy("latency", enabled=False)
    results = evaluate_gates(summary, items, gaps, None, policy)
    assert "latency" not in {result.gate for result in results}


def test_decide_passes_strong_candidate():
    summary, items, gaps = _all_inputs(_strong_items())
    decision = decide(evaluate_gates(summary, items, gaps, None, _policy()))
    assert decision.outcome == "pass", decision.reasons
    assert decision.failed_gates == []


def test_decide_fails_and_lists_gates():
    items = _items(_region("SV", 60, 30, 10), _region("PE", 60, 60), _region("MX", 60, 60))
    summary, items, gaps = _all_inputs(items)
    policy = _policy("non_regression", no_baseline="fail")
    decision = decide(evaluate_gates(summary, items, gaps, None, policy))
    assert decision.outcome == "fail"
    assert decision.failed_gates == ["region_minimum", "non_regression", "robustness", "region_gap"]
    assert len(decision.reasons) == 4
    assert decision.reasons[0].startswith("region_minimum: SV")


def test_decide_report_only_does_not_block():
    items = _items(_region("SV", 10, 10), _region("PE", 60, 60), _region("MX", 60, 60))
    summary, items, gaps = _all_inputs(items)
    policy = _policy(insufficient_evidence="report_only")
    results = evaluate_gates(summary, items, gaps, None, policy)
    outcomes = {result.outcome for result in results}
    assert Outcome.INSUFFICIENT_EVIDENCE in outcomes
    assert decide(results).outcome == "pass"


def test_result_to_dict_is_json_safe():
    result = GateResult(
        gate="latency",
        slice="overall",
        outcome=Outcome.FAIL,
        blocking=True,
        observed=np.float64(math.nan),
        threshold=2000.0,
        bound_used=math.inf,
        ci_low=None,
        ci_high=np.float64(1.5),
        n=np.int64(3),
        reason="x",
    )
    data = result.to_dict()
    assert data["outcome"] == "fail"
    assert data["observed"] is None
    assert data["bound_used"] is None
    assert data["ci_high"] == 1.5
    assert json.loads(json.dumps(data, allow_nan=False)) == data


def test_decision_to_dict_is_json_safe():
    summary, items, gaps = _all_inputs(_strong_items())
    decision = decide(evaluate_gates(summary, items, gaps, None, _policy()))
    text = json.dumps(decision.to_dict(), allow_nan=False)
    assert json.loads(text)["outcome"] == "pass"
