"""Simulated error rate and power of the non-regression gate at the repository's policy.

Each item gets a pass probability p_i ~ Beta(1.5, 0.5) (mean 0.75, most items easy, a tail
of hard ones), scaled per noise level by ``LEVEL_FACTORS``. Both versions draw their
outcomes independently from these probabilities, so they are correlated only through
the shared item difficulty. This model is an assumption, not fitted to real results.

Shares of runs measured with ``_simulate`` (1000 runs, 2000 resamples, seeds 1 and 2)
with min_n set to each item count:

    items  A/A blocked  A/A fail  drop-of-margin fail
    150    0.986        0.050     0.640
    200    0.521        0.043     0.759
    250    0.044        0.038     0.861
    300    0.045        0.045     0.901

With fewer than about 250 items the mde often exceeds the margin, so A/A runs are blocked as
insufficient evidence, which is why the policy's min_n is 250.
"""

import math

import numpy as np
import pandas as pd
import pytest

from eval_pipeline.core.gates import Outcome, check_non_regression
from eval_pipeline.core.noise import NOISE_LEVELS
from eval_pipeline.core.policy import DEFAULT_POLICY_PATH, GatePolicy, load_policy

RUNS = 1000
BETA_A, BETA_B = 1.5, 0.5
LEVEL_FACTORS = np.array([1.0, 0.92, 0.88, 0.85])


def _simulation_policy() -> GatePolicy:
    # Only the overall slice is tested, so min_n items make up the whole sample and Holm
    # has a single p-value. The policy's own n_resamples (2000) fits the time budget.
    policy = load_policy(DEFAULT_POLICY_PATH).file.defaults
    settings = policy.non_regression.model_copy(update={"slices": ["overall"]})
    return policy.model_copy(update={"non_regression": settings})


def _frame(item_ids: np.ndarray, probabilities: np.ndarray, rng) -> pd.DataFrame:
    passed = rng.random(probabilities.shape) < probabilities
    return pd.DataFrame(
        {
            "item_id": np.repeat(item_ids, len(NOISE_LEVELS)),
            "region": "SV",
            "noise_level": np.tile(NOISE_LEVELS, len(item_ids)),
            "passed": passed.ravel(),
        }
    )


def _simulate(policy: GatePolicy, drop: float, seed: int) -> dict[str, int]:
    """Count the gate's outcomes, keyed by Outcome, and the blocked runs, keyed by "blocked".

    The candidate is worse than the champion by ``drop`` in expected pass rate.
    """
    rng = np.random.default_rng(seed)
    n_items = policy.non_regression.min_n
    item_ids = np.array([f"item-{index}" for index in range(n_items)])
    counts = dict.fromkeys(Outcome, 0)
    blocked = 0
    for _ in range(RUNS):
        champion = rng.beta(BETA_A, BETA_B, size=n_items)[:, None] * LEVEL_FACTORS
        # Scaling every probability by one factor makes the expected delta exactly -drop.
        candidate = champion * (1.0 - drop / champion.mean())
        result = check_non_regression(
            _frame(item_ids, candidate, rng), _frame(item_ids, champion, rng), policy
        )[0]
        counts[result.outcome] += 1
        blocked += result.blocking
    counts["blocked"] = blocked
    return counts


@pytest.mark.slow
def test_equal_versions_blocked_at_alpha():
    policy = _simulation_policy()
    alpha = policy.non_regression.alpha
    counts = _simulate(policy, drop=0.0, seed=1)
    share = counts["blocked"] / RUNS
    standard_error = math.sqrt(alpha * (1.0 - alpha) / RUNS)
    assert share > 0.0
    assert share <= alpha + 3.0 * standard_error, counts
    assert counts[Outcome.INSUFFICIENT_EVIDENCE] <= 0.02 * RUNS, counts


@pytest.mark.slow
def test_drop_of_margin_is_caught():
    policy = _simulation_policy()
    counts = _simulate(policy, drop=policy.non_regression.margin, seed=2)
    # Only a significant regression counts as caught, not a block for low power.
    assert counts[Outcome.FAIL] / RUNS >= policy.non_regression.power, counts
