"""Distribution drift between a reference sample and a current sample.

Numeric features are binned on the reference's quantiles and compared with the population
stability index (PSI) and the Jensen-Shannon distance. Categorical values (regions) are
compared on their shares. Sentence embeddings are compared through the cosine distance of
their mean vectors. Every function accepts weights for the reference rows, so the benchmark,
which holds every noise level in equal parts, can stand for the mix of inputs that production
is expected to see.

Conventional readings of PSI: below 0.1 no change, 0.1 to 0.25 a moderate change, above 0.25
a large change. The Jensen-Shannon distance uses base 2 logarithms and lies in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Share given to an empty bin, so that PSI stays finite when one sample has no value there.
PSI_EPSILON = 1e-4


def quantile_edges(reference: Sequence[float], bins: int = 10) -> np.ndarray:
    """Return the inner bin edges at the reference's quantiles, without repeats.

    Values ``<= edges[0]`` fall into the first bin and values ``> edges[-1]`` into the last,
    so a feature that is mostly zero gets a bin of its own for zero. NaN values are ignored.
    """
    if bins < 2:
        raise ValueError(f"invalid bins {bins!r}: expected an integer >= 2")
    values = np.asarray(reference, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("reference has no values that are not NaN, so it has no quantiles")
    quantiles = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(quantiles)


def bin_shares(
    values: Sequence[float], edges: np.ndarray, weights: Sequence[float] | None = None
) -> np.ndarray:
    """Return the (weighted) share of values in each of the ``len(edges) + 1`` bins.

    NaN values and their weights are ignored. Returns NaN shares when nothing is left.
    """
    array = np.asarray(values, dtype=np.float64)
    weight = np.ones_like(array) if weights is None else np.asarray(weights, dtype=np.float64)
    if weight.shape != array.shape:
        raise ValueError(f"got {weight.size} weights for {array.size} values; expected one each")
    keep = ~np.isnan(array)
    # side="left" puts a value equal to an edge into the bin that ends at that edge.
    indexes = np.searchsorted(edges, array[keep], side="left")
    totals = np.bincount(indexes, weights=weight[keep], minlength=len(edges) + 1)
    total = totals.sum()
    if total <= 0:
        return np.full(len(edges) + 1, np.nan)
    return totals / total


def category_shares(
    values: Sequence[object],
    categories: Sequence[object],
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """Return the (weighted) share of each category; values outside ``categories`` are ignored."""
    frame = pd.DataFrame({"value": list(values)})
    frame["weight"] = 1.0 if weights is None else np.asarray(weights, dtype=np.float64)
    totals = frame.groupby("value", dropna=True)["weight"].sum()
    counts = np.array([float(totals.get(category, 0.0)) for category in categories])
    total = counts.sum()
    if total <= 0:
        return np.full(len(categories), np.nan)
    return counts / total


def population_stability_index(
    reference_shares: Sequence[float],
    current_shares: Sequence[float],
    epsilon: float = PSI_EPSILON,
) -> float:
    """Return PSI = sum over bins of (current - reference) * ln(current / reference).

    Shares below ``epsilon`` are raised to it first. Returns NaN when either side is NaN.
    """
    reference = np.asarray(reference_shares, dtype=np.float64)
    current = np.asarray(current_shares, dtype=np.float64)
    if reference.shape != current.shape:
        raise ValueError(
            f"got {reference.size} reference shares and {current.size} current shares; "
            "expected the same bins on both sides"
        )
    if np.isnan(reference).any() or np.isnan(current).any():
        return float("nan")
    reference = np.maximum(reference, epsilon)
    current = np.maximum(current, epsilon)
    return float(np.sum((current - reference) * np.log(current / reference)))


def jensen_shannon_distance(reference_shares: Sequence[float], current_shares: Sequence[float]):
    """Return the Jensen-Shannon distance (base 2, in [0, 1]) between two distributions.

    It is the square root of the Jensen-Shannon divergence, so it is a metric. Returns NaN when
    either side is NaN.
    """
    p = np.asarray(reference_shares, dtype=np.float64)
    q = np.asarray(current_shares, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"got {p.size} and {q.size} shares; expected the same bins")
    if np.isnan(p).any() or np.isnan(q).any():
        return float("nan")
    p = p / p.sum()
    q = q / q.sum()
    m = (p + q) / 2.0

    def kl_to_mixture(shares: np.ndarray) -> float:
        nonzero = shares > 0
        return float(np.sum(shares[nonzero] * np.log2(shares[nonzero] / m[nonzero])))

    divergence = (kl_to_mixture(p) + kl_to_mixture(q)) / 2.0
    # Rounding can leave a divergence of -1e-17 for identical inputs.
    return float(np.sqrt(max(divergence, 0.0)))


def numeric_drift(
    reference: Sequence[float],
    current: Sequence[float],
    bins: int = 10,
    reference_weights: Sequence[float] | None = None,
) -> tuple[float, float]:
    """Return (PSI, Jensen-Shannon distance) of ``current`` against ``reference``."""
    edges = quantile_edges(reference, bins)
    reference_shares = bin_shares(reference, edges, reference_weights)
    current_shares = bin_shares(current, edges)
    return (
        population_stability_index(reference_shares, current_shares),
        jensen_shannon_distance(reference_shares, current_shares),
    )


def categorical_drift(
    reference: Sequence[object],
    current: Sequence[object],
    reference_weights: Sequence[float] | None = None,
) -> tuple[float, float]:
    """Return (PSI, Jensen-Shannon distance) of category shares; None values are ignored."""
    categories = sorted({value for value in [*reference, *current] if value is not None})
    reference_shares = category_shares(reference, categories, reference_weights)
    current_shares = category_shares(current, categories)
    return (
        population_stability_index(reference_shares, current_shares),
        jensen_shannon_distance(reference_shares, current_shares),
    )


def embedding_drift(
    reference: np.ndarray,
    current: np.ndarray,
    reference_weights: Sequence[float] | None = None,
) -> float:
    """Return the cosine distance between the (weighted) mean embeddings, in [0, 2].

    0 means both samples point the same way on average. The score reacts to a shift of the
    whole population and not to a few outliers.
    """
    reference = np.asarray(reference, dtype=np.float64)
    current = np.asarray(current, dtype=np.float64)
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"got embeddings of shapes {reference.shape} and {current.shape}; expected two "
            "matrices with the same number of columns"
        )
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    reference_mean = np.average(reference, axis=0, weights=reference_weights)
    current_mean = current.mean(axis=0)
    norms = np.linalg.norm(reference_mean) * np.linalg.norm(current_mean)
    if norms == 0:
        return float("nan")
    cosine = float(np.dot(reference_mean, current_mean) / norms)
    return 1.0 - min(max(cosine, -1.0), 1.0)
