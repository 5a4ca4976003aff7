import math

import numpy as np
import pandas as pd
import pytest

from eval_pipeline.core.stats import (
    GAP_COLUMNS,
    SUMMARY_COLUMNS,
    latency_percentile,
    robustness_gaps,
    summarize,
    wilson_interval,
)

LEVELS = ("clean", "ocr", "typo", "no_accents")


def _row(item_id, region, level, passed, latency=100.0, error_code=None, chrf=None):
    if chrf is None:
        chrf = 100.0 if passed else 20.0
    return {
        "item_id": item_id,
        "region": region,
        "noise_level": level,
        "passed": passed,
        "exact_match": passed,
        "chrf": chrf,
        "semantic_similarity": 0.9 if passed else 0.3,
        "latency_ms": latency,
        "error_code": error_code,
    }


def _gap_frame(clean_passes, noisy_pattern, region="MX", prefix="mx"):
    """Build results where item i passes clean per clean_passes[i] and noisy per pattern."""
    rows = []
    for index, (clean_passed, noisy_passed) in enumerate(
        zip(clean_passes, noisy_pattern, strict=True)
    ):
        item_id = f"{prefix}-{index}"
        rows.append(_row(item_id, region, "clean", clean_passed))
        for level in LEVELS[1:]:
            rows.append(_row(item_id, region, level, noisy_passed))
    return pd.DataFrame(rows)


@pytest.fixture
def small_results():
    # Region AR: 2 items at clean and ocr. Region MX: 2 items at clean and typo, one of them
    # errored at typo with no latency.
    rows = [
        _row("ar-1", "AR", "clean", True, latency=100.0),
        _row("ar-2", "AR", "clean", True, latency=300.0),
        _row("ar-1", "AR", "ocr", True, latency=200.0),
        _row("ar-2", "AR", "ocr", False, latency=400.0),
        _row("mx-1", "MX", "clean", True, latency=50.0),
        _row("mx-2", "MX", "clean", False, latency=150.0),
        _row("mx-1", "MX", "typo", False, latency=250.0),
        _row("mx-2", "MX", "typo", False, latency=np.nan, error_code="timeout", chrf=0.0),
    ]
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("successes", "n", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (5, 10, (0.2366, 0.7634)),
        (1, 1, (0.2065, 1.0)),
    ],
)
def test_wilson_known_values(successes, n, expected):
    low, high = wilson_interval(successes, n)
    assert round(low, 4) == expected[0]
    assert round(high, 4) == expected[1]


def test_wilson_exact_bounds():
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == 1.0


def test_wilson_confidence_widens():
    narrow = wilson_interval(8, 10, confidence=0.90)
    wide = wilson_interval(8, 10, confidence=0.99)
    assert wide[0] < narrow[0]
    assert wide[1] > narrow[1]
    # By hand with z = 1.6449: center 0.7361, half-width 0.1953.
    assert round(narrow[0], 4) == 0.5408
    assert round(narrow[1], 4) == 0.9314


def test_wilson_zero_n_nan():
    low, high = wilson_interval(0, 0)
    assert math.isnan(low)
    assert math.isnan(high)


@pytest.mark.parametrize(
    ("successes", "n", "confidence"), [(11, 10, 0.95), (-1, 10, 0.95), (5, 10, 1.0)]
)
def test_wilson_rejects_invalid(successes, n, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, n, confidence)


def test_percentile_linear_interpolation():
    assert latency_percentile([10.0, 20.0, 30.0, 40.0], 50) == 25.0
    assert latency_percentile([10.0, 20.0, 30.0, 40.0], 95) == pytest.approx(38.5)


def test_percentile_ignores_nan():
    assert latency_percentile([np.nan, 10.0, 30.0, np.nan], 50) == 20.0


def test_percentile_empty_nan():
    assert math.isnan(latency_percentile([], 50))
    assert math.isnan(latency_percentile([np.nan], 50))


def test_percentile_rejects_out_of_range():
    with pytest.raises(ValueError):
        latency_percentile([1.0], 101)


def test_summarize_columns_and_order(small_results):
    summary = summarize(small_results)

    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    keys = list(zip(summary["slice"], summary["region"], summary["noise_level"], strict=True))
    assert keys == [
        ("cell", "AR", "clean"),
        ("cell", "AR", "ocr"),
        ("cell", "MX", "clean"),
        ("cell", "MX", "typo"),
        ("region", "AR", "ALL"),
        ("region", "MX", "ALL"),
        ("noise_level", "ALL", "clean"),
        ("noise_level", "ALL", "ocr"),
        ("noise_level", "ALL", "typo"),
        ("overall", "ALL", "ALL"),
    ]


def test_summarize_order_uses_level_order():
    rows = [_row("a", "MX", level, True) for level in reversed(LEVELS)]
    summary = summarize(pd.DataFrame(rows))
    cells = summary[summary["slice"] == "cell"]
    assert cells["noise_level"].tolist() == list(LEVELS)


def test_summarize_counts_and_rates(small_results):
    summary = summarize(small_results).set_index(["slice", "region", "noise_level"])

    mx_typo = summary.loc[("cell", "MX", "typo")]
    assert mx_typo["n"] == 2
    assert mx_typo["passes"] == 0
    assert mx_typo["pass_rate"] == 0.0
    assert mx_typo["errors"] == 1
    assert mx_typo["error_rate"] == 0.5
    assert mx_typo["latency_p50_ms"] == 250.0
    assert mx_typo["latency_p95_ms"] == 250.0
    assert mx_typo["mean_chrf"] == pytest.approx(10.0)

    ar_region = summary.loc[("region", "AR", "ALL")]
    assert ar_region["n"] == 4
    assert ar_region["passes"] == 3
    assert ar_region["pass_rate"] == 0.75
    assert ar_region["exact_match_rate"] == 0.75
    assert ar_region["latency_p50_ms"] == 250.0
    assert ar_region["latency_p95_ms"] == pytest.approx(385.0)

    clean_level = summary.loc[("noise_level", "ALL", "clean")]
    assert clean_level["n"] == 4
    assert clean_level["passes"] == 3

    overall = summary.loc[("overall", "ALL", "ALL")]
    assert overall["n"] == 8
    assert overall["passes"] == 4
    assert overall["pass_rate"] == 0.5
    assert overall["errors"] == 1
    assert overall["error_rate"] == 0.125
    # Seven latencies (NaN skipped): 50 100 150 200 250 300 400.
    assert overall["latency_p50_ms"] == 200.0
    assert overall["latency_p95_ms"] == pytest.approx(370.0)
    assert overall["mean_semantic_similarity"] == pytest.approx(0.6)


def test_summarize_wilson_matches(small_results):
    summary = summarize(small_results).set_index(["slice", "region", "noise_level"])
    overall = summary.loc[("overall", "ALL", "ALL")]
    low, high = wilson_interval(4, 8)
    assert overall["ci_low"] == low
    assert overall["ci_high"] == high


def test_summarize_dtypes(small_results):
    summary = summarize(small_results)
    assert summary["n"].dtype == np.int64
    assert summary["passes"].dtype == np.int64
    assert summary["errors"].dtype == np.int64
    assert summary["pass_rate"].dtype == np.float64


def test_summarize_empty_frame(small_results):
    summary = summarize(small_results.iloc[0:0])
    assert summary.empty
    assert list(summary.columns) == list(SUMMARY_COLUMNS)


def test_summarize_rejects_duplicates(small_results):
    doubled = pd.concat([small_results, small_results.iloc[[0]]])
    with pytest.raises(ValueError, match="duplicate"):
        summarize(doubled)


def test_summarize_rejects_unknown_level(small_results):
    changed = small_results.copy()
    changed.loc[0, "noise_level"] = "blur"
    with pytest.raises(ValueError, match="blur"):
        summarize(changed)


def test_summarize_rejects_reserved_region(small_results):
    changed = small_results.copy()
    changed.loc[0, "region"] = "ALL"
    with pytest.raises(ValueError, match="reserved"):
        summarize(changed)


def test_summarize_rejects_missing_column(small_results):
    with pytest.raises(ValueError, match="latency_ms"):
        summarize(small_results.drop(columns=["latency_ms"]))


def test_gap_half_when_noisy_half_pass():
    results = _gap_frame([True] * 4, [True, False, True, False])
    gaps = robustness_gaps(results).set_index("region")

    assert list(gaps.reset_index().columns) == list(GAP_COLUMNS)
    assert gaps.index.tolist() == ["MX", "ALL"]
    mx = gaps.loc["MX"]
    assert mx["clean_pass_rate"] == 1.0
    assert mx["noisy_pass_rate"] == 0.5
    assert mx["gap"] == 0.5
    assert mx["n_items"] == 4
    assert mx["gap_ocr"] == 0.5
    assert mx["gap_typo"] == 0.5
    assert mx["gap_no_accents"] == 0.5
    assert mx["gap_ci_low"] <= 0.5 <= mx["gap_ci_high"]


def test_gap_per_level_differs():
    rows = []
    for index in range(4):
        item_id = f"cl-{index}"
        rows.append(_row(item_id, "CL", "clean", True))
        rows.append(_row(item_id, "CL", "ocr", False))
        rows.append(_row(item_id, "CL", "typo", index < 2))
        rows.append(_row(item_id, "CL", "no_accents", True))
    gaps = robustness_gaps(pd.DataFrame(rows)).set_index("region")

    cl = gaps.loc["CL"]
    assert cl["gap_ocr"] == 1.0
    assert cl["gap_typo"] == 0.5
    assert cl["gap_no_accents"] == 0.0
    assert cl["noisy_pass_rate"] == pytest.approx(0.5)
    assert cl["gap"] == pytest.approx(0.5)


def test_gap_missing_level_nan():
    rows = [_row("a", "PE", "clean", True), _row("a", "PE", "typo", False)]
    gaps = robustness_gaps(pd.DataFrame(rows)).set_index("region")
    assert gaps.loc["PE", "gap_typo"] == 1.0
    assert math.isnan(gaps.loc["PE", "gap_ocr"])


def test_gap_pools_regions_in_all():
    results = pd.concat(
        [
            _gap_frame([True] * 4, [True] * 4, region="AR", prefix="ar"),
            _gap_frame([True] * 4, [False] * 4, region="MX", prefix="mx"),
        ]
    )
    gaps = robustness_gaps(results).set_index("region")

    assert gaps.index.tolist() == ["AR", "MX", "ALL"]
    assert gaps.loc["AR", "gap"] == 0.0
    assert gaps.loc["MX", "gap"] == 1.0
    assert gaps.loc["ALL", "gap"] == 0.5
    assert gaps.loc["ALL", "n_items"] == 8


def test_gap_constant_difference_zero_width():
    gaps = robustness_gaps(_gap_frame([True] * 5, [False] * 5)).set_index("region")
    assert gaps.loc["MX", "gap_ci_low"] == 1.0
    assert gaps.loc["MX", "gap_ci_high"] == 1.0


def test_gap_skips_unpaired_items():
    results = pd.concat(
        [
            _gap_frame([True, True], [False, False]),
            pd.DataFrame([_row("orphan", "MX", "clean", False)]),
        ]
    )
    gaps = robustness_gaps(results).set_index("region")
    assert gaps.loc["MX", "n_items"] == 2
    assert gaps.loc["MX", "clean_pass_rate"] == 1.0


def _mixed_results(item_count=30):
    """Build results whose per-item noisy means take the values 0, 1/3, 2/3 and 1."""
    rows = []
    for index in range(item_count):
        item_id = f"co-{index}"
        rows.append(_row(item_id, "CO", "clean", index % 5 != 0))
        rows.append(_row(item_id, "CO", "ocr", index % 2 == 0))
        rows.append(_row(item_id, "CO", "typo", index % 3 == 0))
        rows.append(_row(item_id, "CO", "no_accents", index % 7 != 0))
    return pd.DataFrame(rows)


def test_bootstrap_deterministic_for_seed():
    results = _mixed_results()

    first = robustness_gaps(results, n_resamples=500, seed=7)
    second = robustness_gaps(results, n_resamples=500, seed=7)

    pd.testing.assert_frame_equal(first, second)


def test_bootstrap_seed_changes_interval():
    results = _mixed_results()

    first = robustness_gaps(results, n_resamples=500, seed=7).set_index("region")
    other = robustness_gaps(results, n_resamples=500, seed=8).set_index("region")

    assert first.loc["CO", "gap"] == other.loc["CO", "gap"]
    bounds = ("gap_ci_low", "gap_ci_high")
    assert any(first.loc["CO", bound] != other.loc["CO", bound] for bound in bounds)


def test_bootstrap_interval_brackets_gap():
    pattern = [True, False, True, True, False, False, True, False, True, True]
    gaps = robustness_gaps(_gap_frame([True] * 10, pattern), n_resamples=2000, seed=0)
    mx = gaps.set_index("region").loc["MX"]

    assert mx["gap"] == pytest.approx(0.4)
    assert 0.0 <= mx["gap_ci_low"] < 0.4 < mx["gap_ci_high"] <= 1.0


def test_bootstrap_region_independent_of_others():
    mx = _gap_frame([True] * 6, [True, False, True, False, False, True])
    ar = _gap_frame([True] * 6, [False] * 6, region="AR", prefix="ar")

    alone = robustness_gaps(mx, n_resamples=300).set_index("region").loc["MX"]
    together = robustness_gaps(pd.concat([mx, ar]), n_resamples=300).set_index("region")
    assert together.loc["MX", "gap_ci_low"] == alone["gap_ci_low"]
    assert together.loc["MX", "gap_ci_high"] == alone["gap_ci_high"]


def test_gap_empty_frame():
    empty = _gap_frame([True], [True]).iloc[0:0]
    gaps = robustness_gaps(empty)
    assert gaps.empty
    assert list(gaps.columns) == list(GAP_COLUMNS)


@pytest.mark.parametrize(
    "kwargs", [{"n_resamples": 0}, {"seed": -1}, {"confidence": 0.0}, {"confidence": 1.0}]
)
def test_gap_rejects_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        robustness_gaps(_gap_frame([True], [False]), **kwargs)
