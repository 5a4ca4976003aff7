import math

import pandas as pd
import pytest

from eval_pipeline.core.reweighting import reweighted_pass_rate, traffic_mix

CELLS = pd.DataFrame(
    [
        {"region": "MX", "noise_level": "clean", "n": 10, "passes": 10},
        {"region": "MX", "noise_level": "ocr", "n": 10, "passes": 5},
        {"region": "SV", "noise_level": "clean", "n": 20, "passes": 10},
    ]
)


def requests(*rows):
    return pd.DataFrame(rows, columns=["region", "estimated_noise_level"])


def test_mix_shares():
    mix = traffic_mix(requests(*[("MX", "clean")] * 3, ("MX", "ocr")))
    shares = mix.set_index(["region", "noise_level"])["share"]
    assert shares[("MX", "clean")] == 0.75
    assert shares[("MX", "ocr")] == 0.25


def test_unknown_region_spread_by_level():
    mix = traffic_mix(
        requests(("MX", "clean"), ("SV", "clean"), ("SV", "clean"), ("UNKNOWN", "clean"))
    )
    shares = mix.set_index("region")["share"]
    assert "UNKNOWN" not in shares.index
    assert shares["MX"] == pytest.approx((1 + 1 / 3) / 4)
    assert shares["SV"] == pytest.approx((2 + 2 / 3) / 4)


def test_reweighted_hand_computed():
    mix = traffic_mix(requests(*[("MX", "clean")] * 3, ("MX", "ocr")))
    result = reweighted_pass_rate(CELLS, mix)
    # 0.75 x 1.0 + 0.25 x 0.5
    assert result["pass_rate"] == pytest.approx(0.875)
    assert result["covered_share"] == 1.0
    # Agresti-Coull: (12/14)(2/14)/10 x 0.75^2 + (7/14)(7/14)/10 x 0.25^2
    variance = 0.75**2 * (12 / 14) * (2 / 14) / 10 + 0.25**2 * 0.25 / 10
    half_width = 1.959964 * math.sqrt(variance)
    assert result["ci_low"] == pytest.approx(0.875 - half_width, abs=1e-6)
    assert result["ci_high"] == pytest.approx(min(1.0, 0.875 + half_width), abs=1e-6)


def test_uncovered_region_left_out():
    mix = traffic_mix(requests(("SV", "clean"), ("GT", "clean")))
    result = reweighted_pass_rate(CELLS, mix)
    assert result["pass_rate"] == pytest.approx(0.5)
    assert result["uncovered_share"] == pytest.approx(0.5)


def test_nothing_covered_is_nan():
    result = reweighted_pass_rate(CELLS, traffic_mix(requests(("GT", "typo"))))
    assert math.isnan(result["pass_rate"])
    assert result["covered_share"] == 0.0
