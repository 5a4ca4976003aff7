"""Gates, decisions and promotion through Dagster on real Spark, Delta and MLflow."""

import json
import sys

import cloudpickle
import dagster as dg
import pytest
from mlflow.pyfunc import PythonModel

from eval_pipeline.core.demo_models import ConstantModel, FaultyModel
from eval_pipeline.core.promotion import OUTCOME_TAG, alias_version
from eval_pipeline.core.registry import register_pyfunc_model
from eval_pipeline.gates.decisions import GATE_DECISIONS, read_decision
from eval_pipeline.gates.promotion import promotion_job
from eval_pipeline.ingestion.assets import benchmark_bronze
from eval_pipeline.items.assets import evaluation_items
from eval_pipeline.partitions import model_versions_partitions
from eval_pipeline.results.assets import EVAL_SUMMARY, evaluation_summary, item_results

pytestmark = pytest.mark.slow

MODEL = "explainer"

# Small evidence needs small minimum sizes; the statistics are exercised in the core tests.
POLICY = """
defaults:
  bound: point
  insufficient_evidence: fail
  region_minimum: {min_n: 2, noise_level: clean, thresholds: {default: 0.5}}
  non_regression: {min_n: 2, margin: 0.9, alpha: 0.05, no_baseline: pass, n_resamples: 200}
  robustness: {tolerance: 0.5, min_n: 2}
  region_gap: {max_gap: 1.0, min_n: 2}
  latency: {p95_ms_max: 60000, min_n: 2}
  error_rate: {max: 0.5, min_n: 2}
"""


class RegionAnswerModel(PythonModel):
    """Return the reference of the small benchmark for each region, except in `wrong_regions`."""

    def __init__(self, wrong_regions=()):
        self.wrong_regions = set(wrong_regions)

    def predict(self, context, model_input, params=None):
        answers = {"SV": "niño", "PE": "casa", "MX": "dinero"}
        return [
            "no sé" if region in self.wrong_regions else answers[region]
            for region in model_input["region"]
        ]


# Spark's Python workers cannot import this test module, so MLflow pickles the class by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture
def resources(make_resources, small_benchmark, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    built = make_resources(
        EVAL_PIPELINE_DATASET_FILES=str(small_benchmark), EVAL_PIPELINE_POLICY=str(policy)
    )
    return built


@pytest.fixture
def prepared(resources, instance):
    assert dg.materialize(
        [benchmark_bronze, evaluation_items], resources=resources, instance=instance
    ).success
    return resources


def register(resources, instance, model):
    ref = register_pyfunc_model(resources["mlflow"].settings, MODEL, model)
    instance.add_dynamic_partitions(model_versions_partitions.name, [ref.partition_key])
    return ref


def evaluate(resources, instance, ref):
    return dg.materialize(
        [item_results, evaluation_summary],
        resources=resources,
        instance=instance,
        partition_key=ref.partition_key,
        raise_on_error=False,
    )


def promote(resources, instance, ref):
    job = dg.Definitions(jobs=[promotion_job], resources=resources).resolve_job_def("promotion_job")
    return job.execute_in_process(
        instance=instance, partition_key=ref.partition_key, raise_on_error=False
    )


def decision_of(resources, ref):
    session = resources["spark"].get_session()
    return read_decision(session, resources["lakehouse"], "regional_es", ref.partition_key)


def check_outcomes(result):
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }


def test_good_version_passes_and_is_promoted(prepared, instance):
    ref = register(prepared, instance, RegionAnswerModel())
    result = evaluate(prepared, instance, ref)
    assert result.success
    assert all(check_outcomes(result).values()), check_outcomes(result)

    decision = decision_of(prepared, ref)
    assert decision["outcome"] == "pass"
    assert decision["policy_hash"]
    assert decision["item_results_delta_version"] is not None

    assert promote(prepared, instance, ref).success
    assert alias_version(prepared["mlflow"].settings, MODEL, "champion") == ref.version


def test_bad_version_is_blocked_without_alias(prepared, instance):
    ref = register(prepared, instance, ConstantModel("niño"))
    result = evaluate(prepared, instance, ref)
    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes["gate_region_minimum"] is False
    assert outcomes["gate_error_rate"] is True

    decision = decision_of(prepared, ref)
    assert decision["outcome"] == "fail"
    assert "region_minimum" in json.loads(decision["failed_gates"])
    event = instance.get_latest_materialization_event(GATE_DECISIONS)
    assert event.asset_materialization.metadata["outcome"].value == "fail"

    assert promote(prepared, instance, ref).success
    settings = prepared["mlflow"].settings
    assert alias_version(settings, MODEL, "champion") is None
    assert alias_version(settings, MODEL, "challenger") is None
    tags = settings.client().get_model_version(MODEL, ref.version).tags
    assert tags[OUTCOME_TAG] == "blocked"


def test_error_budget_blocks(prepared, instance):
    ref = register(prepared, instance, FaultyModel({"SV": "raise", "PE": "raise"}))
    result = evaluate(prepared, instance, ref)
    assert check_outcomes(result)["gate_error_rate"] is False


def test_equal_version_passes_against_champion(prepared, instance):
    good = register(prepared, instance, RegionAnswerModel())
    evaluate(prepared, instance, good)
    promote(prepared, instance, good)

    same = register(prepared, instance, RegionAnswerModel())
    assert evaluate(prepared, instance, same).success
    decision = decision_of(prepared, same)
    assert decision["champion_version"] == good.version
    regression = [r for r in json.loads(decision["gate_results"]) if r["gate"] == "non_regression"]
    assert regression
    assert all(r["outcome"] == "pass" for r in regression)


def test_regression_against_champion_blocks(prepared, instance):
    good = register(prepared, instance, RegionAnswerModel())
    evaluate(prepared, instance, good)
    promote(prepared, instance, good)

    # Wrong on every PE item: a regression of 1.0 on PE, paired item by item.
    worse = register(prepared, instance, RegionAnswerModel(wrong_regions=["PE"]))
    result = evaluate(prepared, instance, worse)
    assert check_outcomes(result)["gate_non_regression"] is False
    decision = decision_of(prepared, worse)
    regression = {
        r["slice"]: r for r in json.loads(decision["gate_results"]) if r["gate"] == "non_regression"
    }
    assert regression["PE"]["outcome"] == "fail"
    assert regression["PE"]["p_adjusted"] < 0.05
    assert regression["SV"]["outcome"] != "fail"


def test_promotion_without_decision_refused(prepared, instance):
    ref = register(prepared, instance, RegionAnswerModel())
    result = promote(prepared, instance, ref)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "No gate decision" in message


def test_stale_decision_refused(prepared, instance, small_benchmark):
    ref = register(prepared, instance, RegionAnswerModel())
    evaluate(prepared, instance, ref)
    with small_benchmark.open("a", encoding="utf-8") as handle:
        handle.write(
            '{"item_id": "mx-3", "region": "MX", "text": "Me prestas lana", "term": "lana", '
            '"reference": "dinero", "task_type": "define_term"}\n'
        )
    result = promote(prepared, instance, ref)
    assert not result.success
    message = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "stale" in message
    assert alias_version(prepared["mlflow"].settings, MODEL, "champion") is None


def test_checks_are_blocking_on_summary(prepared):
    specs = {spec.name: spec for spec in evaluation_summary.check_specs}
    assert set(specs) == {
        "gate_region_minimum",
        "gate_non_regression",
        "gate_robustness",
        "gate_region_gap",
        "gate_latency",
        "gate_error_rate",
    }
    assert all(spec.blocking for spec in specs.values())
    assert all(spec.asset_key == EVAL_SUMMARY for spec in specs.values())
