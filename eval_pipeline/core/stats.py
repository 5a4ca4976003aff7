"""Confidence intervals, latency percentiles and per-slice summaries of scored results.

``results`` frames have one row per (item_id, noise_level) with the columns ``item_id``,
``region``, ``noise_level``, ``passed``, ``exact_match``, ``chrf``, ``semantic_similarity``,
``latency_ms`` and ``error_code``. Errored rows stay in every count as failures, because
``score_frame`` gives them ``passed == False``, while their NaN latencies are skipped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.stats import norm

from eval_pipeline.core.noise import NOISE_LEVELS

ALL = "ALL"

SLICES = ("cell", "region", "noise_level", "overall")

SUMMARY_COLUMNS = (
    "slice",
    "region",
    "noise_level",
    "n",
    "passes",
    "pass_rate",
    "ci_low",
    "ci_high",
    "exact_match_rate",
    "mean_chrf",
    "mean_semantic_similarity",
    "latency_p50_ms",
    "latency_p95_ms",
    "errors",
    "error_rate",
)

NOISY_LEVELS = tuple(level for level in NOISE_LEVELS if level != "clean")

GAP_COLUMNS = (
    "region",
    "clean_pass_rate",
    "noisy_pass_rate",
    "gap",
    "gap_ci_low",
    "gap_ci_high",
    "n_items",
    *(f"gap_{level}" for level in NOISY_LEVELS),
)

_REQUIRED_COLUMNS = (
    "item_id",
    "region",
    "noise_level",
    "passed",
    "exact_match",
    "chrf",
    "semantic_similarity",
    "latency_ms",
    "error_code",
)

# Resamples drawn per block, which bounds the index matrix to this many rows times the item
# count instead of n_resamples rows.
_BOOTSTRAP_BLOCK = 256


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Return the two-sided Wilson score interval for a binomial proportion.

    The bounds lie in [0, 1]. ``n == 0`` returns ``(nan, nan)``. Raises ValueError when
    ``successes`` is outside 0..n or ``confidence`` is outside (0, 1).
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(
            f"invalid counts successes={successes} and n={n}: expected 0 <= successes <= n"
        )
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"invalid confidence {confidence!r}: expected a value in (0, 1)")
    if n == 0:
        return (math.nan, math.nan)

    z = float(norm.ppf(1.0 - (1.0 - confidence) / 2.0))
    proportion = successes / n
    z_squared = z * z
    denominator = 1.0 + z_squared / n
    center = (proportion + z_squared / (2.0 * n)) / denominator
    half_width = (
        z * math.sqrt(proportion * (1.0 - proportion) / n + z_squared / (4.0 * n * n))
    ) / denominator
    # The bounds are exactly 0 at successes == 0 and exactly 1 at successes == n, but the
    # floating-point formula can miss them by an ulp (10 of 10 gives 0.9999999999999999).
    low = 0.0 if successes == 0 else max(0.0, center - half_width)
    high = 1.0 if successes == n else min(1.0, center + half_width)
    return (low, high)


def latency_percentile(values: Iterable[float], q: float) -> float:
    """Return the q-th percentile (0..100) of the values with linear interpolation.

    NaN values are ignored, and an empty or all-NaN input returns NaN. Raises ValueError
    when ``q`` is outside 0..100.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"invalid percentile {q!r}: expected a value in 0..100")
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return math.nan
    return float(np.percentile(array, q, method="linear"))


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Return one summary row per slice of ``results``.

    The slices are every region x noise level cell, every region, every noise level and
    the overall pool, with ``"ALL"`` in the pooled dimension. Rows are ordered by slice
    (cell, region, noise_level, overall), then region, then noise level in
    ``NOISE_LEVELS`` order. The columns are ``SUMMARY_COLUMNS``. ``ci_low`` and ``ci_high``
    form the 95% Wilson interval of ``pass_rate``. Means skip NaN values, and latency
    percentiles skip NaN latencies. An empty input returns an empty frame with those
    columns. Raises ValueError on missing columns, unknown noise levels, a region named
    ``"ALL"``, nulls in ``item_id``, ``region``, ``noise_level``, ``passed`` or
    ``exact_match``, or duplicate (item_id, noise_level) rows.
    """
    _validate_results(results)
    if results.empty:
        return _empty_frame(SUMMARY_COLUMNS)

    groupings: tuple[tuple[str, list[str]], ...] = (
        ("cell", ["region", "noise_level"]),
        ("region", ["region"]),
        ("noise_level", ["noise_level"]),
        ("overall", []),
    )
    rows = []
    for slice_name, keys in groupings:
        groups = results.groupby(keys, sort=False) if keys else [((), results)]
        for key, group in groups:
            labels = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
            rows.append(
                {
                    "slice": slice_name,
                    "region": labels.get("region", ALL),
                    "noise_level": labels.get("noise_level", ALL),
                    **_summarize_group(group),
                }
            )

    summary = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return _sort_summary(summary)


def _summarize_group(group: pd.DataFrame) -> dict[str, float | int]:
    n = len(group)
    passes = int(group["passed"].astype(bool).sum())
    errors = int(group["error_code"].notna().sum())
    ci_low, ci_high = wilson_interval(passes, n)
    return {
        "n": n,
        "passes": passes,
        "pass_rate": passes / n,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "exact_match_rate": float(group["exact_match"].astype(bool).mean()),
        "mean_chrf": float(group["chrf"].astype(float).mean()),
        "mean_semantic_similarity": float(group["semantic_similarity"].astype(float).mean()),
        "latency_p50_ms": latency_percentile(group["latency_ms"].astype(float), 50.0),
        "latency_p95_ms": latency_percentile(group["latency_ms"].astype(float), 95.0),
        "errors": errors,
        "error_rate": errors / n,
    }


def _sort_summary(summary: pd.DataFrame) -> pd.DataFrame:
    # Within one slice the pooled column contains only "ALL", so "ALL" needs no special place
    # among regions. Among noise levels it gets the position after the last real level.
    order = pd.DataFrame(
        {
            "slice": summary["slice"].map(SLICES.index),
            "region": summary["region"].astype(str),
            "level": summary["noise_level"].map(
                lambda level: len(NOISE_LEVELS) if level == ALL else NOISE_LEVELS.index(level)
            ),
        }
    )
    positions = order.sort_values(["slice", "region", "level"], kind="stable").index
    summary = summary.loc[positions].reset_index(drop=True)
    return summary.astype({"n": "int64", "passes": "int64", "errors": "int64"})


def robustness_gaps(
    results: pd.DataFrame,
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Return the clean-minus-noisy pass-rate gap per region and pooled over regions.

    Only items that have a clean row and at least one noisy row count, and each of them
    weighs equally. ``noisy_pass_rate`` averages each item's mean pass over its noisy levels,
    which equals the pooled pass rate of the noisy rows when every item has every level.
    ``gap_ci_low`` and ``gap_ci_high`` form a percentile interval from a paired bootstrap
    that resamples items with replacement, so the clean and noisy results of one item stay
    together. ``gap_<level>`` is the point gap for one noisy level over the counted items
    that have that level, and NaN when none do. Regions come first in sorted order, followed
    by ``"ALL"``. Each region draws from ``numpy.random.default_rng`` seeded by ``seed`` and
    the region name, so the output is deterministic for a seed and one region's interval
    does not change when other regions are added. An empty input returns an empty frame
    with ``GAP_COLUMNS``. Raises ValueError on the inputs that ``summarize`` rejects and on
    invalid ``n_resamples``, ``seed`` or ``confidence``.
    """
    _validate_results(results)
    if n_resamples < 1:
        raise ValueError(f"invalid n_resamples {n_resamples!r}: expected an integer >= 1")
    if seed < 0:
        raise ValueError(f"invalid seed {seed!r}: expected an integer >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"invalid confidence {confidence!r}: expected a value in (0, 1)")
    if results.empty:
        return _empty_frame(GAP_COLUMNS)

    regions = sorted(results["region"].astype(str).unique())
    rows = []
    for region in [*regions, ALL]:
        subset = results if region == ALL else results[results["region"].astype(str) == region]
        rows.append(_region_gap(subset, region, n_resamples, seed, confidence))
    gaps = pd.DataFrame(rows, columns=list(GAP_COLUMNS))
    return gaps.astype({"n_items": "int64"})


def _region_gap(
    subset: pd.DataFrame, region: str, n_resamples: int, seed: int, confidence: float
) -> dict[str, object]:
    # Rows are items, columns are noise levels, values are 1.0/0.0 and NaN for a missing level.
    table = subset.pivot(index="item_id", columns="noise_level", values="passed").astype(float)
    noisy_columns = [level for level in NOISY_LEVELS if level in table.columns]
    if "clean" in table.columns and noisy_columns:
        paired = table[table["clean"].notna() & table[noisy_columns].notna().any(axis=1)]
    else:
        paired = table.iloc[0:0]

    row: dict[str, object] = {"region": region, "n_items": len(paired)}
    for level in NOISY_LEVELS:
        row[f"gap_{level}"] = _level_gap(paired, level)
    if paired.empty:
        row.update(
            clean_pass_rate=math.nan,
            noisy_pass_rate=math.nan,
            gap=math.nan,
            gap_ci_low=math.nan,
            gap_ci_high=math.nan,
        )
        return row

    clean = paired["clean"].to_numpy()
    noisy = paired[noisy_columns].mean(axis=1, skipna=True).to_numpy()
    rng = np.random.default_rng([seed, _region_key(region)])
    ci_low, ci_high = _bootstrap_gap_interval(clean, noisy, n_resamples, rng, confidence)
    row.update(
        clean_pass_rate=float(clean.mean()),
        noisy_pass_rate=float(noisy.mean()),
        gap=float(clean.mean() - noisy.mean()),
        gap_ci_low=ci_low,
        gap_ci_high=ci_high,
    )
    return row


def _level_gap(paired: pd.DataFrame, level: str) -> float:
    if level not in paired.columns:
        return math.nan
    with_level = paired[paired[level].notna()]
    if with_level.empty:
        return math.nan
    return float(with_level["clean"].mean() - with_level[level].mean())


def _bootstrap_gap_interval(
    clean: np.ndarray,
    noisy: np.ndarray,
    n_resamples: int,
    rng: np.random.Generator,
    confidence: float,
) -> tuple[float, float]:
    """Return the percentile interval of the mean paired difference over item resamples."""
    differences = clean - noisy
    count = differences.size
    resampled = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _BOOTSTRAP_BLOCK):
        size = min(_BOOTSTRAP_BLOCK, n_resamples - start)
        indices = rng.integers(0, count, size=(size, count))
        resampled[start : start + size] = differences[indices].mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.percentile(resampled, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return (float(low), float(high))


def _region_key(region: str) -> int:
    # hash() of a string changes between processes, so the stream key comes from SHA-256.
    return int.from_bytes(hashlib.sha256(region.encode("utf-8")).digest()[:8], "big")


def _validate_results(results: pd.DataFrame) -> None:
    missing = [column for column in _REQUIRED_COLUMNS if column not in results.columns]
    if missing:
        raise ValueError(f"missing required columns in results: {', '.join(missing)}")

    for column in ("item_id", "region", "noise_level", "passed", "exact_match"):
        nulls = int(results[column].isna().sum())
        if nulls:
            raise ValueError(f"invalid {column}: {nulls} rows are null")

    unknown = sorted(set(results["noise_level"].astype(str)) - set(NOISE_LEVELS))
    if unknown:
        raise ValueError(
            f"unknown noise levels {', '.join(unknown)}: expected values from "
            f"{', '.join(NOISE_LEVELS)}"
        )
    if results["region"].astype(str).eq(ALL).any():
        raise ValueError(f"invalid region {ALL!r}: the name is reserved for pooled rows")

    duplicated = results.duplicated(["item_id", "noise_level"])
    if duplicated.any():
        first = results.loc[duplicated, ["item_id", "noise_level"]].iloc[0]
        raise ValueError(
            f"duplicate results: {int(duplicated.sum())} repeated (item_id, noise_level) "
            f"pairs, the first is ({first['item_id']!r}, {first['noise_level']!r})"
        )


def _empty_frame(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=_column_dtype(column)) for column in columns})


def _column_dtype(column: str) -> str:
    if column in ("slice", "region", "noise_level"):
        return "object"
    if column in ("n", "passes", "errors", "n_items"):
        return "int64"
    return "float64"
