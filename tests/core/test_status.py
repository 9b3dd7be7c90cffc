"""AAC run statuses: known values parse, anything else means "keep waiting"."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.core.status import (
    FAILURE_STATUSES,
    SUCCESS_STATUSES,
    TERMINAL_STATUSES,
    AACRunStatus,
)


@pytest.mark.parametrize(
    ("raw", "terminal"),
    [
        ("Created", False),
        ("Pending", False),
        ("InProgress", False),
        ("Complete", True),
        ("Failed", True),
        ("Canceled", True),
    ],
)
def test_documented_statuses_parse(raw: str, terminal: bool) -> None:
    status = AACRunStatus.parse(raw)
    assert status is not None and status.value == raw
    assert status.is_terminal is terminal


@pytest.mark.parametrize(
    "raw", ["Queued", "complete", "COMPLETE", "", " Complete", None, 3, {}, [], {"status": "Complete"}]
)
def test_unknown_values_parse_to_none(raw: Any) -> None:
    assert AACRunStatus.parse(raw) is None


def test_status_sets() -> None:
    assert {AACRunStatus.COMPLETE} == SUCCESS_STATUSES
    assert {AACRunStatus.FAILED, AACRunStatus.CANCELED} == FAILURE_STATUSES
    assert TERMINAL_STATUSES == SUCCESS_STATUSES | FAILURE_STATUSES
    assert not SUCCESS_STATUSES & FAILURE_STATUSES
    assert AACRunStatus.IN_PROGRESS not in TERMINAL_STATUSES


def test_status_compares_with_its_wire_value() -> None:
    assert AACRunStatus.parse("Complete") == "Complete"
