import hashlib
from pathlib import Path

import pytest

from eval_pipeline.core.policy import (
    DEFAULT_POLICY_PATH,
    GatePolicy,
    PolicyError,
    load_policy,
    parse_policy,
)

REPO_POLICY = Path(__file__).resolve().parents[2] / "gate_policy.yaml"


def test_default_path_is_repo_file():
    assert DEFAULT_POLICY_PATH == REPO_POLICY


def test_repo_policy_loads():
    loaded = load_policy(REPO_POLICY)
    assert loaded.source == str(REPO_POLICY)
    assert len(loaded.content_hash) == 16


def test_repo_defaults_match_code_defaults():
    # The file documents the defaults, so it must not drift from the built-in values.
    loaded = load_policy(REPO_POLICY)
    assert loaded.file.defaults == GatePolicy()


def test_repo_explainer_override():
    policy = load_policy(REPO_POLICY).for_model("regional-explainer")
    thresholds = policy.region_minimum.thresholds
    assert thresholds["SV"] == 0.85
    assert thresholds["PE"] == 0.80
    assert thresholds["default"] == 0.70


def test_repo_echo_baseline_override():
    policy = load_policy(REPO_POLICY).for_model("echo-baseline")
    assert policy.insufficient_evidence == "report_only"
    assert policy.bound == "conservative"


def test_unlisted_model_gets_defaults():
    loaded = load_policy(REPO_POLICY)
    assert loaded.for_model("some-other-model") == loaded.file.defaults


def test_partial_override_keeps_siblings():
    loaded = parse_policy(
        "defaults:\n"
        "  non_regression: {margin: 0.04}\n"
        "models:\n"
        "  m:\n"
        "    non_regression: {alpha: 0.01}\n"
    )
    policy = loaded.for_model("m")
    assert policy.non_regression.alpha == 0.01
    assert policy.non_regression.margin == 0.04
    assert policy.non_regression.method == "bootstrap"
    assert loaded.for_model("other").non_regression.alpha == 0.05


def test_list_override_replaces_list():
    loaded = parse_policy("models:\n  m:\n    non_regression: {slices: [overall]}\n")
    assert loaded.for_model("m").non_regression.slices == ["overall"]
    assert loaded.file.defaults.non_regression.slices == ["overall", "region"]


def test_empty_model_entry_uses_defaults():
    loaded = parse_policy("models:\n  m:\n")
    assert loaded.for_model("m") == GatePolicy()


def test_empty_text_gives_defaults():
    assert parse_policy("").file.defaults == GatePolicy()


INVALID_CASES = [
    pytest.param(
        "defaults: {non_regression: {method: permutation}}",
        ["defaults.non_regression.method", "'bootstrap'", "'mcnemar'"],
        id="method",
    ),
    pytest.param(
        "defaults: {non_regression: {correction: bonferroni}}",
        ["defaults.non_regression.correction", "'holm'", "'bh'", "'none'"],
        id="correction",
    ),
    pytest.param(
        "defaults: {bound: strict}",
        ["defaults.bound", "'conservative'", "'point'", "'optimistic'"],
        id="bound",
    ),
    pytest.param(
        "defaults: {insufficient_evidence: warn}",
        ["defaults.insufficient_evidence", "'fail'", "'report_only'"],
        id="insufficient_evidence",
    ),
    pytest.param(
        "defaults: {non_regression: {no_baseline: skip}}",
        ["defaults.non_regression.no_baseline", "'pass'", "'fail'"],
        id="no_baseline",
    ),
    pytest.param(
        "defaults: {region_minimum: {noise_level: loud}}",
        ["defaults.region_minimum.noise_level", "'clean'", "'no_accents'", "'ALL'"],
        id="noise_level",
    ),
    pytest.param(
        "defaults: {non_regression: {slices: [item]}}",
        ["defaults.non_regression.slices", "'overall'", "'region'"],
        id="slices",
    ),
    pytest.param(
        "defaults: {non_regression: {slices: [overall, overall]}}",
        ["defaults.non_regression.slices", "distinct"],
        id="duplicate_slices",
    ),
    pytest.param(
        "defaults: {non_regression: {margin: 0}}",
        ["defaults.non_regression.margin", "(0, 1)"],
        id="margin_zero",
    ),
    pytest.param(
        "defaults: {non_regression: {margin: 1.0}}",
        ["defaults.non_regression.margin", "(0, 1)"],
        id="margin_one",
    ),
    pytest.param(
        "defaults: {non_regression: {alpha: 0.6}}",
        ["defaults.non_regression.alpha", "(0, 0.5]"],
        id="alpha",
    ),
    pytest.param(
        "defaults: {confidence: 1.0}",
        ["defaults.confidence", "(0, 1)"],
        id="confidence",
    ),
    pytest.param(
        "defaults: {error_rate: {max: 1.5}}",
        ["defaults.error_rate.max", "[0, 1]"],
        id="rate",
    ),
    pytest.param(
        "defaults: {region_minimum: {thresholds: {default: 0.7, SV: -0.1}}}",
        ["defaults.region_minimum.thresholds.SV", "[0, 1]"],
        id="threshold",
    ),
    pytest.param(
        "defaults: {region_minimum: {thresholds: {SV: 0.9}}}",
        ["defaults.region_minimum.thresholds", "'default'"],
        id="threshold_default",
    ),
    pytest.param(
        "defaults: {robustness: {min_n: 0}}",
        ["defaults.robustness.min_n", ">= 1"],
        id="min_n",
    ),
    pytest.param(
        "defaults: {latency: {p95_ms_max: 0}}",
        ["defaults.latency.p95_ms_max", "> 0"],
        id="p95",
    ),
    pytest.param(
        "defaults: {latency: {p95_ms_max: fast}}",
        ["defaults.latency.p95_ms_max", "> 0"],
        id="p95_type",
    ),
    pytest.param(
        "defaults: {non_regression: {n_resamples: 10}}",
        ["defaults.non_regression", "n_resamples", ">= 20"],
        id="resamples_below_alpha",
    ),
    pytest.param(
        "defaults: {region_minimum: {threshold: 0.7}}",
        ["defaults.region_minimum.threshold", "enabled", "noise_level", "thresholds"],
        id="unknown_key",
    ),
    pytest.param(
        "defaults: {latency: 5}",
        ["defaults.latency", "p95_ms_max"],
        id="section_type",
    ),
    pytest.param(
        "rules: {}",
        ["rules", "defaults", "models"],
        id="unknown_top_key",
    ),
    pytest.param(
        "models: {regional-explainer: {latency: {p99_ms_max: 100}}}",
        ["models.regional-explainer.latency.p99_ms_max", "p95_ms_max"],
        id="override_unknown_key",
    ),
    pytest.param(
        "models: {regional-explainer: {non_regression: {method: ttest}}}",
        ["models.regional-explainer.non_regression.method", "'bootstrap'"],
        id="override_value",
    ),
    pytest.param(
        "models: {regional-explainer: 3}",
        ["models.regional-explainer", "mapping"],
        id="override_type",
    ),
]


@pytest.mark.parametrize(("text", "fragments"), INVALID_CASES)
def test_invalid_policy_names_key(text, fragments):
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, source="test.yaml")
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_error_names_source():
    with pytest.raises(PolicyError, match=r"in test\.yaml"):
        parse_policy("defaults: {bound: strict}", source="test.yaml")


def test_string_number_rejected():
    with pytest.raises(PolicyError, match=r"defaults\.confidence"):
        parse_policy('defaults: {confidence: "0.9"}')


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert str(path) in message
    assert "gate_policy.yaml" in message
    assert "repository root" in message


def test_invalid_yaml_names_line():
    text = "defaults:\n  bound: point\n  confidence: [0.9\n"
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    assert "invalid YAML" in str(raised.value)
    assert "line 4" in str(raised.value)


def test_duplicate_key_rejected():
    text = "defaults:\n  bound: point\n  bound: optimistic\n"
    with pytest.raises(PolicyError) as raised:
        parse_policy(text)
    assert "duplicate key 'bound'" in str(raised.value)
    assert "line 3" in str(raised.value)


def test_non_mapping_top_level():
    with pytest.raises(PolicyError, match="expected a mapping"):
        parse_policy("- defaults\n")


def test_non_utf8_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"defaults: {bound: \xff}\n")
    with pytest.raises(PolicyError, match="UTF-8"):
        load_policy(path)


def test_hash_is_sha256_prefix(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_bytes(REPO_POLICY.read_bytes())
    expected = hashlib.sha256(REPO_POLICY.read_bytes()).hexdigest()[:16]
    assert load_policy(path).content_hash == expected


def test_hash_changes_with_one_byte(tmp_path):
    path = tmp_path / "policy.yaml"
    original = REPO_POLICY.read_bytes()
    path.write_bytes(original)
    first = load_policy(path).content_hash
    # Replace one character of a comment, so the policy itself stays the same.
    position = original.index(b"#")
    path.write_bytes(original[: position + 1] + b"!" + original[position + 2 :])
    second = load_policy(path)
    assert second.content_hash != first
    assert second.file == load_policy(REPO_POLICY).file


def test_parse_hash_matches_load(tmp_path):
    text = "defaults: {bound: point}\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    assert parse_policy(text).content_hash == load_policy(path).content_hash
