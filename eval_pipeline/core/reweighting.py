"""Offline accuracy re-weighted by the live traffic mix: what accuracy do real users see?

The benchmark weighs every region and noise level alike. Production does not: most requests
may come from one region and be clean. Weighting each region x noise level cell of the offline
summary by its share of live requests estimates the pass rate that users experience.
"""

from __future__ import annotations

import math

import pandas as pd
from scipy.stats import norm

from eval_pipeline.core.monitoring import UNKNOWN_REGION


def traffic_mix(requests: pd.DataFrame) -> pd.DataFrame:
    """Return the share of requests per (region, noise_level) from Silver request rows.

    ``region`` is the resolved region and ``noise_level`` the estimated one. Requests of
    region ``UNKNOWN`` are spread over the known regions in proportion to their requests at
    the same noise level, because the region of a request does not change how noisy it is.
    """
    levels = requests.rename(columns={"estimated_noise_level": "noise_level"})
    counts = levels.groupby(["region", "noise_level"]).size().rename("requests").reset_index()
    known = counts[counts["region"] != UNKNOWN_REGION].copy()
    unknown = counts[counts["region"] == UNKNOWN_REGION].set_index("noise_level")["requests"]
    known["requests"] = known["requests"].astype("float64")
    for level, extra in unknown.items():
        at_level = known["noise_level"] == level
        if known.loc[at_level, "requests"].sum() > 0:
            share = known.loc[at_level, "requests"] / known.loc[at_level, "requests"].sum()
            known.loc[at_level, "requests"] += share * extra
    total = known["requests"].sum()
    known["share"] = known["requests"] / total if total else math.nan
    return known.reset_index(drop=True)


def reweighted_pass_rate(
    cells: pd.DataFrame, mix: pd.DataFrame, confidence: float = 0.95
) -> dict[str, float]:
    """Return the pass rate of the offline ``cells`` weighted by the live ``mix``.

    ``cells`` are the summary rows of slice ``cell`` (``region``, ``noise_level``, ``n``,
    ``passes``) and ``mix`` the output of ``traffic_mix``. Traffic in a cell that the
    benchmark lacks (a region it does not cover) is left out and reported as
    ``uncovered_share``. The interval is a normal approximation whose variance sums
    ``w^2 p (1 - p) / n`` over cells, with the Agresti-Coull estimate ``p = (passes + 2) /
    (n + 4)`` so that a cell with every item passed still adds uncertainty.
    """
    joined = mix.merge(cells, on=["region", "noise_level"], how="left")
    covered = joined[joined["n"].notna() & (joined["n"] > 0)]
    covered_share = float(covered["share"].sum()) if len(covered) else 0.0
    if covered_share <= 0:
        return {
            "pass_rate": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "covered_share": 0.0,
            "uncovered_share": 1.0 if len(mix) else math.nan,
        }
    weights = covered["share"] / covered_share
    rates = covered["passes"] / covered["n"]
    estimate = float((weights * rates).sum())
    adjusted = (covered["passes"] + 2) / (covered["n"] + 4)
    variance = float((weights**2 * adjusted * (1 - adjusted) / covered["n"]).sum())
    half_width = norm.ppf(0.5 + confidence / 2) * math.sqrt(variance)
    return {
        "pass_rate": estimate,
        "ci_low": max(0.0, estimate - half_width),
        "ci_high": min(1.0, estimate + half_width),
        "covered_share": covered_share,
        "uncovered_share": 1.0 - covered_share,
    }
