import math

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from eval_pipeline.core.drift import (
    PSI_EPSILON,
    bin_shares,
    categorical_drift,
    embedding_drift,
    jensen_shannon_distance,
    numeric_drift,
    population_stability_index,
    quantile_edges,
)

# (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
PSI_HALF_TO_QUARTER = 0.25 * math.log(2) + 0.25 * math.log(1.5)


def test_psi_hand_computed():
    assert math.isclose(PSI_HALF_TO_QUARTER, 0.274653, abs_tol=1e-6)
    psi = population_stability_index([0.5, 0.5], [0.25, 0.75])
    assert psi == pytest.approx(PSI_HALF_TO_QUARTER)


def test_psi_identical_is_zero():
    assert population_stability_index([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0


def test_psi_empty_bin_uses_epsilon():
    expected = (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON) * 2
    assert population_stability_index([1.0, 0.0], [0.0, 1.0]) == pytest.approx(expected)


def test_psi_rejects_different_bins():
    with pytest.raises(ValueError, match="same bins"):
        population_stability_index([0.5, 0.5], [1.0])


def test_js_distance_hand_computed():
    # m = [0.75, 0.25]; KL(p||m) = 0.5 log2(2/3) + 0.5 log2(2) = 0.2075;
    # KL(q||m) = log2(4/3) = 0.4150; JSD = 0.3113, distance = sqrt(JSD).
    divergence = (0.5 * math.log2(2 / 3) + 0.5 + math.log2(4 / 3)) / 2
    distance = jensen_shannon_distance([0.5, 0.5], [1.0, 0.0])
    assert distance == pytest.approx(math.sqrt(divergence))
    assert distance == pytest.approx(0.557923, abs=1e-6)


def test_js_distance_matches_scipy():
    p = [0.1, 0.4, 0.5]
    q = [0.3, 0.3, 0.4]
    assert jensen_shannon_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))


def test_js_distance_bounds():
    assert jensen_shannon_distance([0.3, 0.7], [0.3, 0.7]) == 0.0
    assert jensen_shannon_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)


def test_quantile_bins_split_at_median():
    edges = quantile_edges([1, 2, 3, 4], bins=2)
    assert edges.tolist() == [2.5]
    assert bin_shares([1, 2, 3, 4], edges).tolist() == [0.5, 0.5]
    assert bin_shares([1, 1, 1, 4], edges).tolist() == [0.75, 0.25]


def test_quantile_edges_collapse_on_zeros():
    # A feature that is mostly zero keeps one bin for zero instead of repeated edges.
    # The 20%, 40% and 60% quantiles are 0; the 80% quantile interpolates to 0.1.
    edges = quantile_edges([0, 0, 0, 0, 0, 0, 0, 0, 0.5, 1.0], bins=5)
    assert edges.tolist() == pytest.approx([0.0, 0.1])
    assert bin_shares([0.0, 0.0, 0.1, 0.9], edges).tolist() == [0.5, 0.25, 0.25]


def test_bin_shares_weighted_and_nan():
    edges = np.array([2.5])
    shares = bin_shares([1, 2, 3, float("nan")], edges, weights=[1, 1, 2, 5])
    assert shares.tolist() == [0.5, 0.5]


def test_numeric_drift_hand_computed():
    psi, js = numeric_drift([1, 2, 3, 4], [1, 1, 1, 4], bins=2)
    assert psi == pytest.approx(PSI_HALF_TO_QUARTER)
    assert js == pytest.approx(jensenshannon([0.5, 0.5], [0.75, 0.25], base=2))


def test_numeric_drift_reference_weights():
    # Weights 3:1 on the low half make the reference [0.75, 0.25], equal to the current.
    psi, js = numeric_drift([1, 2, 3, 4], [1, 1, 1, 4], bins=2, reference_weights=[3, 3, 1, 1])
    assert psi == pytest.approx(0.0)
    assert js == pytest.approx(0.0)


def test_categorical_drift_hand_computed():
    psi, _ = categorical_drift(["MX", "MX", "SV", "SV"], ["MX", "SV", "SV", "SV", None])
    assert psi == pytest.approx(PSI_HALF_TO_QUARTER)


def test_embedding_drift_cosine():
    assert embedding_drift(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0]])) == 1.0
    distance = embedding_drift(np.array([[1.0, 0.0]]), np.array([[1.0, 1.0]]))
    assert distance == pytest.approx(1 - 1 / math.sqrt(2))


def test_embedding_drift_weighted_reference():
    reference = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert embedding_drift(reference, np.array([[0.0, 1.0]]), [0.0, 1.0]) == pytest.approx(0.0)


def test_embedding_drift_rejects_shapes():
    with pytest.raises(ValueError, match="same number of columns"):
        embedding_drift(np.zeros((2, 3)), np.zeros((2, 4)))
