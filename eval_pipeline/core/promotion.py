"""Registry actions that follow a gate decision: move aliases, tag, approve and roll back.

These functions use MLflow model-version aliases and tags only; registry stages are deprecated
in MLflow and are never set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.exceptions import MlflowException

from eval_pipeline.core.partition_keys import ModelVersionRef
from eval_pipeline.core.registry import TAG_PREFIX, MlflowSettings

logger = logging.getLogger(__name__)

OUTCOME_TAG = f"{TAG_PREFIX}.gate.outcome"
DECISION_TAG = f"{TAG_PREFIX}.gate.decision_id"
POLICY_TAG = f"{TAG_PREFIX}.gate.policy_hash"
REASONS_TAG = f"{TAG_PREFIX}.gate.reasons"
PREVIOUS_CHAMPION_TAG = f"{TAG_PREFIX}.previous_champion"
APPROVED_DECISION_TAG = f"{TAG_PREFIX}.approval.decision_id"
APPROVED_BY_TAG = f"{TAG_PREFIX}.approval.by"
# MLflow stores tag values of up to 5000 characters (MLflow 3 limit for model version tags).
_MAX_TAG_VALUE = 5000


class PromotionError(RuntimeError):
    """Raised when a promotion is rejected: no decision, a stale one, or nothing to roll back."""


@dataclass(frozen=True)
class PromotionResult:
    """The registry changes that one promotion made."""

    action: str  # "promoted", "blocked" or "awaiting_approval"
    model_name: str
    model_version: str
    aliases: tuple[str, ...]
    previous_champion: str | None
    message: str


def alias_version(settings: MlflowSettings, name: str, alias: str) -> str | None:
    """Return the version that `alias` points to, or None when the alias is not set."""
    try:
        return str(settings.client().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _tag(settings: MlflowSettings, ref: ModelVersionRef, key: str, value: object) -> None:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    settings.client().set_model_version_tag(ref.name, ref.version, key, text[:_MAX_TAG_VALUE])


def check_decision_is_current(
    decision: dict | None,
    ref: ModelVersionRef,
    dataset_version: str,
    policy_hash: str,
    champion_version: str | None,
) -> None:
    """Raise PromotionError unless `decision` exists and still matches its evidence."""
    if decision is None:
        raise PromotionError(
            f"No gate decision exists for {ref.uri}; run model_evaluation_job for partition "
            f"{ref.partition_key} (or `eval-pipeline gate --model {ref.name} --version "
            f"{ref.version}`) first."
        )
    stale = []
    if decision["dataset_version"] != dataset_version:
        stale.append(
            f"dataset version {decision['dataset_version']} differs from current {dataset_version}"
        )
    if decision["policy_hash"] != policy_hash:
        stale.append(f"policy hash {decision['policy_hash']} differs from current {policy_hash}")
    decided_against = decision.get("champion_version") or None
    if champion_version not in (decided_against, ref.version):
        stale.append(
            f"it compared against champion version {decided_against or 'none'} but the champion "
            f"is now version {champion_version}"
        )
    if stale:
        raise PromotionError(
            f"Gate decision {decision['decision_id']} for {ref.uri} is stale: "
            + "; ".join(stale)
            + f". Decide again with `eval-pipeline gate --model {ref.name} --version "
            f"{ref.version}` (or model_evaluation_job for partition {ref.partition_key})."
        )


def apply_decision(
    settings: MlflowSettings,
    ref: ModelVersionRef,
    decision: dict,
    *,
    challenger_alias: str = "challenger",
    champion_alias: str = "champion",
    require_approval: bool = False,
) -> PromotionResult:
    """Tag the version with the decision and, when it passed, move the aliases.

    A failed decision tags the version as blocked with its reasons and changes nothing else. A
    passing one gets the challenger alias, then the champion alias unless approval is required
    and no approval of this decision is recorded. The replaced champion is stored in a tag on
    the new one, so `rollback` can restore it.
    """
    client = settings.client()
    _tag(settings, ref, DECISION_TAG, decision["decision_id"])
    _tag(settings, ref, POLICY_TAG, decision["policy_hash"])

    if decision["outcome"] != "pass":
        _tag(settings, ref, OUTCOME_TAG, "blocked")
        _tag(settings, ref, REASONS_TAG, json.loads(decision["reasons"]))
        logger.info("Blocked %s by decision %s", ref.uri, decision["decision_id"])
        return PromotionResult(
            "blocked", ref.name, ref.version, (), None,
            f"{ref.uri} is blocked: {'; '.join(json.loads(decision['reasons']))}",
        )  # fmt: skip

    client.set_registered_model_alias(ref.name, challenger_alias, ref.version)
    version = client.get_model_version(ref.name, ref.version)
    approved = version.tags.get(APPROVED_DECISION_TAG) == decision["decision_id"]
    if require_approval and not approved:
        _tag(settings, ref, OUTCOME_TAG, "awaiting_approval")
        return PromotionResult(
            "awaiting_approval", ref.name, ref.version, (challenger_alias,), None,
            f"{ref.uri} passed its gates and is {challenger_alias}; production promotion waits "
            f"for `eval-pipeline approve --model {ref.name} --version {ref.version}`.",
        )  # fmt: skip

    previous = alias_version(settings, ref.name, champion_alias)
    if previous is not None and previous != ref.version:
        _tag(settings, ref, PREVIOUS_CHAMPION_TAG, previous)
    client.set_registered_model_alias(ref.name, champion_alias, ref.version)
    _tag(settings, ref, OUTCOME_TAG, "promoted")
    _tag(settings, ref, f"{TAG_PREFIX}.promoted_at", datetime.now(UTC).isoformat())
    logger.info("Promoted %s to %s (previous %s)", ref.uri, champion_alias, previous)
    return PromotionResult(
        "promoted", ref.name, ref.version, (challenger_alias, champion_alias), previous,
        f"{ref.uri} is now {champion_alias} (previous champion: {previous or 'none'}).",
    )  # fmt: skip


def record_approval(
    settings: MlflowSettings, ref: ModelVersionRef, decision_id: str, approver: str
) -> None:
    """Record that `approver` approved production promotion of `ref` under `decision_id`."""
    _tag(settings, ref, APPROVED_DECISION_TAG, decision_id)
    _tag(settings, ref, APPROVED_BY_TAG, approver)


def rollback(settings: MlflowSettings, name: str, champion_alias: str = "champion") -> tuple:
    """Point the champion alias back at the version it replaced; return (from, to) versions."""
    current = alias_version(settings, name, champion_alias)
    if current is None:
        raise PromotionError(f"Model {name!r} has no {champion_alias!r} alias to roll back.")
    version = settings.client().get_model_version(name, current)
    previous = version.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise PromotionError(
            f"{name} version {current} is {champion_alias} but records no previous champion "
            f"(tag {PREVIOUS_CHAMPION_TAG}); set the alias by hand if a rollback is needed."
        )
    settings.client().set_registered_model_alias(name, champion_alias, previous)
    _tag(settings, ModelVersionRef(name, current), OUTCOME_TAG, "rolled_back")
    logger.info("Rolled back %s %s from version %s to %s", name, champion_alias, current, previous)
    return current, previous


REGRESSION_TAG_PREFIX = f"{TAG_PREFIX}.regression"


def record_regression(
    settings: MlflowSettings,
    ref: ModelVersionRef,
    decision: dict,
    *,
    trigger: str,
    evaluation_run_id: str,
) -> dict[str, str]:
    """Tag a re-evaluated version (a nightly run or a dataset change) with its gate outcome.

    Aliases are left alone: a champion that fails a re-check keeps serving until someone rolls
    back or promotes another version, and the tags say that it failed, when and why.
    """
    tags = {
        "outcome": decision["outcome"],
        "decision_id": decision["decision_id"],
        "dataset_version": decision["dataset_version"],
        "failed_gates": ",".join(json.loads(decision["failed_gates"])) or "none",
        "trigger": trigger,
        "dagster_run_id": evaluation_run_id,
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in tags.items():
        _tag(settings, ref, f"{REGRESSION_TAG_PREFIX}.{key}", value)
    logger.info("Recorded %s re-check of %s: %s", trigger, ref.uri, decision["outcome"])
    return tags
