"""Detection of registered model versions that are new since the registry sensor's last tick.

The cursor maps each watched model to the highest version number already handled. MLflow
numbers a model's versions 1, 2, 3, ... in registration order and never reuses a number, so
every version above the cursor is new, however many were registered between two ticks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from eval_pipeline.core.partition_keys import ModelVersionRef

READY = "READY"
PENDING_REGISTRATION = "PENDING_REGISTRATION"
FAILED_REGISTRATION = "FAILED_REGISTRATION"


class InvalidCursorError(ValueError):
    """Raised when a stored sensor cursor is not the JSON object this module writes."""


@dataclass(frozen=True)
class RegisteredVersion:
    """One model version as the registry lists it."""

    name: str
    version: int
    status: str = READY

    @property
    def ref(self) -> ModelVersionRef:
        return ModelVersionRef(self.name, str(self.version))


@dataclass
class WatchPlan:
    """Findings of one sensor tick: versions to evaluate, versions to wait for, and gaps."""

    ready: list[RegisteredVersion] = field(default_factory=list)
    pending: list[RegisteredVersion] = field(default_factory=list)
    failed: list[RegisteredVersion] = field(default_factory=list)
    missing: list[tuple[str, int]] = field(default_factory=list)
    """Version numbers between the cursor and the newest listed version that are not listed,
    because they were deleted from the registry before the sensor saw them."""
    cursor: dict[str, int] = field(default_factory=dict)


def parse_cursor(text: str | None) -> dict[str, int]:
    """Return the per-model cursor stored as JSON; an empty cursor means nothing handled yet."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidCursorError(
            f"Invalid registry sensor cursor {text!r}: expected a JSON object of model name to "
            "version number. Reset the cursor in the Dagster UI (sensor page) to start over."
        ) from error
    if not isinstance(value, dict) or not all(
        isinstance(number, int) and not isinstance(number, bool) for number in value.values()
    ):
        raise InvalidCursorError(
            f"Invalid registry sensor cursor {text!r}: expected a JSON object of model name to "
            "version number. Reset the cursor in the Dagster UI (sensor page) to start over."
        )
    return {str(name): int(number) for name, number in value.items()}


def format_cursor(cursor: Mapping[str, int]) -> str:
    return json.dumps(dict(sorted(cursor.items())), separators=(",", ":"))


def plan_new_versions(
    versions: Iterable[RegisteredVersion], cursor: Mapping[str, int]
) -> WatchPlan:
    """Split the listed versions above the cursor into ready, pending and failed ones.

    A version still pending registration keeps the cursor below itself, so it and every later
    version of that model are looked at again on the next tick. A version listed twice counts
    once. A model with no cursor entry has all of its versions treated as new.
    """
    by_model: dict[str, dict[int, RegisteredVersion]] = {}
    for version in versions:
        by_model.setdefault(version.name, {})[version.version] = version

    plan = WatchPlan(cursor=dict(cursor))
    for name in sorted(by_model):
        start = cursor.get(name, 0)
        handled = start
        for number in sorted(n for n in by_model[name] if n > start):
            version = by_model[name][number]
            if version.status == PENDING_REGISTRATION:
                plan.pending.append(version)
                break
            if version.status == READY:
                plan.ready.append(version)
            else:
                plan.failed.append(version)
            plan.missing.extend((name, gap) for gap in range(handled + 1, number))
            handled = number
        if handled > start:
            plan.cursor[name] = handled
    return plan


def describe_plan(plan: WatchPlan) -> list[str]:
    """Return one sentence per finding that is not a version to evaluate."""
    lines = []
    for version in plan.pending:
        lines.append(
            f"{version.name} version {version.version} is still pending registration; it and "
            "later versions of that model are checked again on the next tick."
        )
    for version in plan.failed:
        lines.append(
            f"{version.name} version {version.version} failed registration "
            f"(status {version.status}); it is not evaluated."
        )
    for name, number in plan.missing:
        lines.append(
            f"{name} version {number} is not in the registry (deleted before this tick); "
            "nothing to evaluate for it."
        )
    return lines


def parse_version_spec(spec: str, available: Iterable[int]) -> list[int]:
    """Return the versions that a spec such as `1,3-5` or `all` selects among `available`.

    Raises ValueError naming any malformed part, and any requested version that is not
    registered, with the registered versions, so a typo never evaluates the wrong versions.
    """
    registered = sorted(set(available))
    if spec.strip().lower() == "all":
        return registered
    requested: set[int] = set()
    for part in (piece.strip() for piece in spec.split(",")):
        low, separator, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if separator else first
        except ValueError:
            raise ValueError(
                f"Invalid version selection {part!r} in {spec!r}: expected version numbers and "
                "ranges such as '1,3-5', or 'all'."
            ) from None
        if first < 1 or last < first:
            raise ValueError(
                f"Invalid version range {part!r} in {spec!r}: expected positive numbers with the "
                "lower bound first, such as '3-5'."
            )
        requested.update(range(first, last + 1))
    missing = sorted(requested - set(registered))
    if missing:
        raise ValueError(
            f"Versions {missing} are not registered (registered versions: {registered}); "
            "select registered versions only."
        )
    return sorted(requested)
