from datetime import date

import numpy as np
import pandas as pd
import pytest

from eval_pipeline.core.features import build_vocabulary, compute_features
from eval_pipeline.core.ingest import ingest_files
from eval_pipeline.core.items import build_evaluation_items
from eval_pipeline.core.monitoring import (
    CHECK_DEGRADATION,
    CHECK_ERROR_RATE,
    CHECK_INPUT_DRIFT,
    CHECK_LATENCY,
    CHECK_REGION_SHARE,
    ERROR,
    WARN,
    alert_rows,
    benchmark_weights,
    evaluate_rules,
    input_drift,
    resolve_regions,
    traffic_metrics,
    worst_severity,
)
from eval_pipeline.core.monitoring_policy import MonitoringPolicy
from eval_pipeline.core.noise import DEFAULT_NOISE_SPECS
from eval_pipeline.core.prompts import get_template
from eval_pipeline.core.traffic import TrafficScenario, generate_traffic
from eval_pipeline.resources import packaged_benchmark_path

DAY = "2025-03-01"


def requests_frame(latencies, regions, statuses=None, labels=None, day=DAY):
    count = len(latencies)
    return pd.DataFrame(
        {
            "request_date": day,
            "model_name": "m",
            "model_version": "1",
            "region": regions,
            "status": statuses or ["ok"] * count,
            "latency_ms": latencies,
            "label_passed": labels or [None] * count,
            "estimated_noise_level": ["clean"] * count,
        }
    )


def test_latency_percentiles_hand_computed():
    latencies = [float(value) for value in range(1, 101)] + [5000.0]
    regions = ["MX"] * 60 + ["SV"] * 41
    statuses = ["ok"] * 100 + ["error"]
    metrics = traffic_metrics(requests_frame(latencies, regions, statuses)).set_index("region")
    # Linear interpolation over 1..100: p50 = 50.5, p95 = 95.05, p99 = 99.01. The errored
    # request's latency is left out.
    assert metrics.loc["ALL", "latency_p50_ms"] == pytest.approx(50.5)
    assert metrics.loc["ALL", "latency_p95_ms"] == pytest.approx(95.05)
    assert metrics.loc["ALL", "latency_p99_ms"] == pytest.approx(99.01)
    assert metrics.loc["MX", "latency_p50_ms"] == pytest.approx(30.5)
    assert metrics.loc["ALL", "errors"] == 1
    assert metrics.loc["ALL", "error_rate"] == pytest.approx(1 / 101)
    assert metrics.loc["SV", "traffic_share"] == pytest.approx(41 / 101)
    assert metrics.loc["ALL", "traffic_share"] == 1.0


def test_labelled_pass_rate():
    labels = [True, True, False, None]
    metrics = traffic_metrics(requests_frame([1.0] * 4, ["MX"] * 4, labels=labels))
    pooled = metrics[metrics["region"] == "ALL"].iloc[0]
    assert pooled["labelled"] == 3
    assert pooled["labelled_pass_rate"] == pytest.approx(2 / 3)


def test_resolve_regions():
    resolved = resolve_regions(pd.Series(["MX", None, None]), pd.Series([None, "SV", None]))
    assert resolved.tolist() == ["MX", "SV", "UNKNOWN"]


def test_latency_rule_levels():
    policy = MonitoringPolicy.model_validate(
        {"latency": {"min_n": 10, "warn": 100.0, "error": 200.0}}
    )
    for latency, expected in ((90.0, None), (150.0, WARN), (250.0, ERROR)):
        metrics = traffic_metrics(requests_frame([latency] * 20, ["MX"] * 20))
        findings = [
            f for f in evaluate_rules(metrics, pd.DataFrame(), pd.DataFrame(columns=["feature"]),
                                      policy)
            if f.check_name == CHECK_LATENCY
        ]  # fmt: skip
        assert len(findings) == 2  # MX and ALL
        assert {f.severity for f in findings} == {expected}, latency


def test_rules_skip_small_slices():
    metrics = traffic_metrics(requests_frame([5000.0] * 5, ["MX"] * 5, ["error"] * 5))
    findings = evaluate_rules(
        metrics, pd.DataFrame(), pd.DataFrame(columns=["feature"]), MonitoringPolicy()
    )
    assert findings == []


def test_error_rate_rule():
    statuses = ["error"] * 5 + ["ok"] * 95
    metrics = traffic_metrics(requests_frame([1.0] * 100, ["MX"] * 100, statuses))
    findings = evaluate_rules(
        metrics, pd.DataFrame(), pd.DataFrame(columns=["feature"]), MonitoringPolicy()
    )
    errors = [f for f in findings if f.check_name == CHECK_ERROR_RATE]
    assert {f.severity for f in errors} == {WARN}
    assert errors[0].observed == pytest.approx(0.05)
    assert errors[0].threshold == 0.03


def test_region_share_change():
    window = traffic_metrics(requests_frame([1.0] * 200, ["MX"] * 150 + ["SV"] * 50, day="x"))
    today = traffic_metrics(requests_frame([1.0] * 200, ["MX"] * 80 + ["SV"] * 120))
    findings = evaluate_rules(today, window, pd.DataFrame(columns=["feature"]), MonitoringPolicy())
    shares = {f.region: f for f in findings if f.check_name == CHECK_REGION_SHARE}
    # SV went from 0.25 to 0.60 of the traffic: a change of 0.35, above the ERROR level 0.25.
    assert shares["SV"].observed == pytest.approx(0.35)
    assert shares["SV"].severity == ERROR
    assert shares["MX"].severity == ERROR


def test_degradation_rule():
    window = traffic_metrics(requests_frame([1.0] * 40, ["MX"] * 40, labels=[True] * 40, day="x"))
    labels = [True] * 34 + [False] * 6
    today = traffic_metrics(requests_frame([1.0] * 40, ["MX"] * 40, labels=labels))
    findings = evaluate_rules(today, window, pd.DataFrame(columns=["feature"]), MonitoringPolicy())
    drops = [f for f in findings if f.check_name == CHECK_DEGRADATION]
    assert {f.severity for f in drops} == {ERROR}
    assert drops[0].observed == pytest.approx(0.15)


def test_alert_rows_only_flagged():
    statuses = ["error"] * 10 + ["ok"] * 90
    metrics = traffic_metrics(requests_frame([1.0] * 100, ["MX"] * 100, statuses))
    findings = evaluate_rules(
        metrics, pd.DataFrame(), pd.DataFrame(columns=["feature"]), MonitoringPolicy()
    )
    alerts = alert_rows(findings)
    assert len(alerts) == len([f for f in findings if f.severity])
    assert set(alerts["severity"]) == {ERROR}
    assert alerts["alert_id"].is_unique
    assert alerts["alert_id"].tolist() == alert_rows(findings)["alert_id"].tolist()
    assert worst_severity(findings) == ERROR


def test_benchmark_weights_follow_mix():
    levels = pd.Series(["clean", "clean", "ocr", "typo"])
    weights = benchmark_weights(levels, {"clean": 0.5, "ocr": 0.5})
    assert weights.tolist() == [0.25, 0.25, 0.5, 0.0]


@pytest.fixture(scope="module")
def week():
    """Seven days of synthetic traffic whose inputs and regions drift from day 5."""
    accepted = ingest_files("regional_es", [packaged_benchmark_path()]).accepted
    vocabulary = build_vocabulary(accepted)
    items = build_evaluation_items(accepted, get_template("define_term@1"), DEFAULT_NOISE_SPECS, 0)
    benchmark = pd.concat(
        [
            items[["region", "noise_level"]].reset_index(drop=True),
            compute_features(items["text"], vocabulary),
        ],
        axis=1,
    ).assign(input_text=items["text"].to_numpy())
    scenario = TrafficScenario(start_date=date(2025, 3, 1), days=7, drift_start_day=5)
    traffic = generate_traffic(scenario, accepted)
    requests = pd.concat([traffic, compute_features(traffic["input_text"], vocabulary)], axis=1)
    requests["request_date"] = requests["timestamp"].str.slice(0, 10)
    requests["region"] = resolve_regions(requests["region"], requests["detected_region"])
    requests["label_passed"] = None
    return scenario, requests, benchmark


def test_drift_detected_on_day_five_not_before(week):
    scenario, requests, benchmark = week
    policy = MonitoringPolicy()
    flagged = {}
    for index in range(1, 8):
        day = scenario.day(index).isoformat()
        current = requests[requests["request_date"] == day]
        window = requests[requests["request_date"] < day]
        drift = input_drift(current, window, benchmark, policy)
        window_metrics = traffic_metrics(window) if len(window) else pd.DataFrame()
        findings = evaluate_rules(traffic_metrics(current), window_metrics, drift, policy)
        flagged[index] = worst_severity(findings)
        if index == 5:
            drifted = {
                f.feature for f in findings if f.check_name == CHECK_INPUT_DRIFT and f.severity
            }
            assert "oov_share" in drifted
            assert any(f.check_name == CHECK_REGION_SHARE and f.severity for f in findings)
    assert flagged == {1: None, 2: None, 3: None, 4: None, 5: ERROR, 6: ERROR, 7: ERROR}


def test_drift_rows_per_reference(week):
    scenario, requests, benchmark = week
    day = scenario.day(2).isoformat()
    current = requests[requests["request_date"] == day]
    window = requests[requests["request_date"] < day]
    drift = input_drift(current, window, benchmark, MonitoringPolicy())
    pooled = drift[drift["region"] == "ALL"]
    assert set(pooled["reference"]) == {"benchmark", "window"}
    assert "region" in set(pooled.loc[pooled["reference"] == "window", "feature"])
    assert (pooled["n_current"] == 400).all()
    assert np.isfinite(pooled["psi"]).all()
