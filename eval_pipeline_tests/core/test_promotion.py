import json

import pytest

from eval_pipeline.core.demo_models import ConstantModel
from eval_pipeline.core.promotion import (
    OUTCOME_TAG,
    PREVIOUS_CHAMPION_TAG,
    REASONS_TAG,
    PromotionError,
    alias_version,
    apply_decision,
    check_decision_is_current,
    record_approval,
    record_regression,
    rollback,
)
from eval_pipeline.core.registry import MlflowSettings, register_pyfunc_model

MODEL = "explainer"


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    return MlflowSettings(
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        registry_uri=f"sqlite:///{folder / 'mlflow.db'}",
        experiment_name="promotion-tests",
        artifact_location=(folder / "artifacts").as_uri(),
    )


@pytest.fixture
def model_name(request):
    return f"{MODEL}-{request.node.name}"


def decision(outcome="pass", decision_id="d1", reasons=(), champion=None):
    return {
        "decision_id": decision_id,
        "outcome": outcome,
        "reasons": json.dumps(list(reasons)),
        "policy_hash": "p1",
        "dataset_version": "v1",
        "champion_version": champion,
    }


def versions(settings, name, count):
    return [register_pyfunc_model(settings, name, ConstantModel("x")) for _ in range(count)]


def test_pass_moves_both_aliases(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    result = apply_decision(settings, ref, decision())
    assert result.action == "promoted"
    assert alias_version(settings, model_name, "champion") == ref.version
    assert alias_version(settings, model_name, "challenger") == ref.version
    tags = settings.client().get_model_version(model_name, ref.version).tags
    assert tags[OUTCOME_TAG] == "promoted"


def test_blocked_version_gets_no_alias(settings, model_name):
    first, second = versions(settings, model_name, 2)
    apply_decision(settings, first, decision())
    result = apply_decision(
        settings, second, decision("fail", "d2", ["SV below minimum"], champion=first.version)
    )
    assert result.action == "blocked"
    assert alias_version(settings, model_name, "champion") == first.version
    assert alias_version(settings, model_name, "challenger") == first.version
    tags = settings.client().get_model_version(model_name, second.version).tags
    assert tags[OUTCOME_TAG] == "blocked"
    assert "SV below minimum" in tags[REASONS_TAG]


def test_promotion_records_previous_and_rolls_back(settings, model_name):
    first, second = versions(settings, model_name, 2)
    apply_decision(settings, first, decision())
    apply_decision(settings, second, decision(decision_id="d2", champion=first.version))
    tags = settings.client().get_model_version(model_name, second.version).tags
    assert tags[PREVIOUS_CHAMPION_TAG] == first.version
    assert rollback(settings, model_name) == (second.version, first.version)
    assert alias_version(settings, model_name, "champion") == first.version


def test_rollback_without_previous_rejected(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    apply_decision(settings, ref, decision())
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(settings, model_name)


def test_approval_required_waits(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    waiting = apply_decision(settings, ref, decision(), require_approval=True)
    assert waiting.action == "awaiting_approval"
    assert alias_version(settings, model_name, "champion") is None
    assert alias_version(settings, model_name, "challenger") == ref.version

    record_approval(settings, ref, "d1", "release-manager")
    approved = apply_decision(settings, ref, decision(), require_approval=True)
    assert approved.action == "promoted"
    assert alias_version(settings, model_name, "champion") == ref.version


def test_approval_of_other_decision_does_not_count(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    record_approval(settings, ref, "old-decision", "release-manager")
    result = apply_decision(settings, ref, decision(), require_approval=True)
    assert result.action == "awaiting_approval"


def test_missing_decision_rejected(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    with pytest.raises(PromotionError, match="No gate decision"):
        check_decision_is_current(None, ref, "v1", "p1", None)


@pytest.mark.parametrize(
    ("dataset_version", "policy_hash", "champion", "message"),
    [
        ("v2", "p1", None, "dataset version v1 differs"),
        ("v1", "p2", None, "policy hash p1 differs"),
        ("v1", "p1", "7", "champion is now version 7"),
    ],
)
def test_stale_decision_rejected(settings, dataset_version, policy_hash, champion, message):
    from eval_pipeline.core.partition_keys import ModelVersionRef

    ref = ModelVersionRef(MODEL, "3")
    with pytest.raises(PromotionError, match=message):
        check_decision_is_current(decision(), ref, dataset_version, policy_hash, champion)


def test_current_decision_accepted():
    from eval_pipeline.core.partition_keys import ModelVersionRef

    ref = ModelVersionRef(MODEL, "3")
    check_decision_is_current(decision(champion="2"), ref, "v1", "p1", "2")
    check_decision_is_current(decision(), ref, "v1", "p1", "3")


def test_record_regression_tags_without_moving_aliases(settings, model_name):
    (ref,) = versions(settings, model_name, 1)
    apply_decision(settings, ref, decision())
    failed = {
        **decision("fail", "d2", reasons=["region_minimum: SV below 0.7"]),
        "failed_gates": json.dumps(["region_minimum"]),
    }

    tags = record_regression(settings, ref, failed, trigger="nightly", evaluation_run_id="r-1")

    stored = settings.client().get_model_version(model_name, ref.version).tags
    assert stored["eval_pipeline.regression.outcome"] == "fail"
    assert stored["eval_pipeline.regression.failed_gates"] == "region_minimum"
    assert stored["eval_pipeline.regression.trigger"] == "nightly"
    assert stored["eval_pipeline.regression.dagster_run_id"] == "r-1"
    assert stored["eval_pipeline.regression.dataset_version"] == "v1"
    assert tags["decision_id"] == "d2"
    assert alias_version(settings, model_name, "champion") == ref.version
    assert stored[OUTCOME_TAG] == "promoted"
