"""The run operators' and sensors' argument checks: what passes, and the error that names the argument."""

from __future__ import annotations

import pytest

from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.operators.parameters import (
    check_id_or_name,
    check_name,
    is_templated,
    positive_int,
    positive_seconds,
)


@pytest.mark.parametrize(("value", "expected"), [(42, 42), ("42", 42), (" 7 ", 7)])
def test_positive_int_accepts(value: object, expected: int) -> None:
    assert positive_int(value, "plan_id") == expected


@pytest.mark.parametrize("value", ["abc", 0, -1, "0", "-3", True, None, 1.5, "4.2", ""])
def test_positive_int_rejects(value: object) -> None:
    with pytest.raises(AACConfigError, match="plan_id must be a positive integer AAC id"):
        positive_int(value, "plan_id")


@pytest.mark.parametrize("value", [0, -1, True, "5", None, float("inf"), float("nan")])
def test_positive_seconds_rejects(value: object) -> None:
    with pytest.raises(AACConfigError, match="poll_interval must be a number of seconds greater than 0"):
        positive_seconds(value, "poll_interval")


def test_is_templated() -> None:
    assert is_templated("{{ params.x }}") and is_templated(object())
    assert not is_templated("42") and not is_templated(42) and not is_templated(None)


@pytest.mark.parametrize(("plan_id", "plan_name"), [(None, None), (1, "Daily")])
def test_exactly_one_of_id_and_name(plan_id: object, plan_name: object) -> None:
    with pytest.raises(AACConfigError, match="Give exactly one of plan_id and plan_name") as caught:
        check_id_or_name(plan_id, plan_name, "plan_id", "plan_name")
    assert caught.value.retryable is False


def test_templates_are_checked_when_rendered() -> None:
    check_id_or_name("{{ params.plan }}", None, "plan_id", "plan_name")
    check_id_or_name(None, "{{ params.name }}", "plan_id", "plan_name")
    with pytest.raises(AACConfigError, match="plan_name must be the non-empty name"):
        check_name("  ", "plan_name")
