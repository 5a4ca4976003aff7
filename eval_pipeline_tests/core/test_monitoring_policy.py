import pytest

from eval_pipeline.core.monitoring_policy import (
    DEFAULT_MONITORING_POLICY_PATH,
    MonitoringPolicy,
    load_monitoring_policy,
    parse_monitoring_policy,
)
from eval_pipeline.core.policy import PolicyError


def test_repository_policy_loads():
    loaded = load_monitoring_policy(DEFAULT_MONITORING_POLICY_PATH)
    assert loaded.policy.latency.percentile == 95
    assert loaded.policy.input_drift.warn < loaded.policy.input_drift.error
    assert len(loaded.content_hash) == 16


def test_repository_policy_matches_defaults():
    # The file spells out every default, so editing one of them is a visible change.
    assert load_monitoring_policy(DEFAULT_MONITORING_POLICY_PATH).policy == MonitoringPolicy()


def test_empty_policy_uses_defaults():
    assert parse_monitoring_policy("").policy == MonitoringPolicy()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency: {p95: 3}", r"latency\.p95"),
        ("error_rate: {warn: 0.2, error: 0.1}", "below warn threshold"),
        ("input_drift: {benchmark_noise_mix: {blurry: 1.0}}", "unknown noise levels"),
        ("input_drift: {features: [shoe_size]}", r"input_drift\.features\.0"),
        ("reference_window_days: 0", "reference_window_days"),
        ("latency: [1, 2", "invalid YAML"),
    ],
)
def test_invalid_policy_rejected(text, message):
    with pytest.raises(PolicyError, match=message):
        parse_monitoring_policy(text, "test.yaml")


def test_missing_file_names_default(tmp_path):
    with pytest.raises(PolicyError, match="EVAL_PIPELINE_MONITORING_POLICY"):
        load_monitoring_policy(tmp_path / "absent.yaml")
