"""Which registry versions the sensor treats as new, and how version selections parse."""

import pytest

from eval_pipeline.core.watch import (
    FAILED_REGISTRATION,
    PENDING_REGISTRATION,
    InvalidCursorError,
    RegisteredVersion,
    describe_plan,
    format_cursor,
    parse_cursor,
    parse_version_spec,
    plan_new_versions,
)


def versions(name: str, *numbers: int, status: str = "READY") -> list[RegisteredVersion]:
    return [RegisteredVersion(name, number, status) for number in numbers]


def test_plan_without_cursor_takes_every_version():
    plan = plan_new_versions(versions("a", 1, 2) + versions("b", 1), {})
    assert [(v.name, v.version) for v in plan.ready] == [("a", 1), ("a", 2), ("b", 1)]
    assert plan.cursor == {"a": 2, "b": 1}


def test_plan_takes_all_versions_registered_between_ticks():
    plan = plan_new_versions(versions("a", 1, 2, 3, 4), {"a": 2})
    assert [v.version for v in plan.ready] == [3, 4]
    assert plan.cursor == {"a": 4}


def test_plan_counts_a_version_listed_twice_once():
    plan = plan_new_versions(versions("a", 1, 2) + versions("a", 2), {"a": 1})
    assert [v.version for v in plan.ready] == [2]


def test_plan_reports_deleted_versions_as_missing():
    plan = plan_new_versions(versions("a", 1, 4), {})
    assert [v.version for v in plan.ready] == [1, 4]
    assert plan.missing == [("a", 2), ("a", 3)]
    assert "a version 2 is not in the registry" in " ".join(describe_plan(plan))


def test_plan_waits_at_a_pending_version():
    listed = versions("a", 1) + versions("a", 2, status=PENDING_REGISTRATION) + versions("a", 3)
    plan = plan_new_versions(listed, {})
    assert [v.version for v in plan.ready] == [1]
    assert [v.version for v in plan.pending] == [2]
    assert plan.cursor == {"a": 1}


def test_plan_skips_failed_registration_and_moves_on():
    listed = versions("a", 1, status=FAILED_REGISTRATION) + versions("a", 2)
    plan = plan_new_versions(listed, {})
    assert [v.version for v in plan.ready] == [2]
    assert [v.version for v in plan.failed] == [1]
    assert plan.cursor == {"a": 2}


def test_plan_keeps_cursor_of_models_no_longer_listed():
    plan = plan_new_versions(versions("a", 1), {"gone": 7})
    assert plan.cursor == {"a": 1, "gone": 7}


def test_cursor_round_trip():
    assert parse_cursor(format_cursor({"b": 2, "a": 10})) == {"a": 10, "b": 2}
    assert parse_cursor(None) == {}
    assert parse_cursor("") == {}


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"a": "3"}', '{"a": true}'])
def test_invalid_cursor_is_rejected(text):
    with pytest.raises(InvalidCursorError, match="Reset the cursor"):
        parse_cursor(text)


def test_version_spec_lists_and_ranges():
    assert parse_version_spec("1,3-5", range(1, 7)) == [1, 3, 4, 5]
    assert parse_version_spec(" 2 , 2-3 ", [1, 2, 3]) == [2, 3]
    assert parse_version_spec("all", [3, 1, 2]) == [1, 2, 3]


def test_version_spec_rejects_unregistered_versions():
    with pytest.raises(ValueError, match=r"Versions \[4, 5\] are not registered"):
        parse_version_spec("3-5", [1, 2, 3])


@pytest.mark.parametrize("spec", ["x", "1-", "5-3", "0", "1,,2"])
def test_version_spec_rejects_malformed_parts(spec):
    with pytest.raises(ValueError, match="Invalid version"):
        parse_version_spec(spec, [1, 2, 3, 4, 5])
