"""Reading AAC's rate-limit headers: the wait a 429 asks for, and the gate that honours a dry window."""

from __future__ import annotations

import time

import pytest

from airflow_provider_aac.core.api import ApiCall
from airflow_provider_aac.core.exchange import HttpAnswer, Wait
from airflow_provider_aac.core.rate_limits import RateGate, exhausted_wait, rate_limit_wait, reset_in
from airflow_provider_aac.core.retry import Backoff

NOW = 1_800_000_000.0


def now() -> float:
    return NOW


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (str(NOW + 12), 12.0),  # epoch seconds
        (str(int((NOW + 12.5) * 1000)), 12.5),  # epoch milliseconds
        ("42", 42.0),  # seconds from now
        ("0.25", 0.25),
        (str(NOW - 5), 0.0),  # already past
        ("soon", None),
        ("nan", None),
        (None, None),
    ],
)
def test_reset_in_reads_every_unit(raw: str | None, expected: float | None) -> None:
    result = reset_in(raw, NOW)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_the_specs_own_example_reads_as_epoch_milliseconds() -> None:
    """AAC's OpenAPI spec v2025.23.2: its table calls the user reset "epoch seconds" but its examples
    (1631095033096, 1631096271696) are milliseconds, as is the workspace reset; both units read right."""
    at = 1631096271696 / 1000 - 57
    example = {"x-rate-limit-user-remaining": "0", "x-rate-limit-user-reset": "1631096271696"}
    assert rate_limit_wait(example, lambda: at) == pytest.approx(57.0)
    assert rate_limit_wait({**example, "x-rate-limit-user-reset": str(at + 57)}, lambda: at) == pytest.approx(
        57
    )
    assert rate_limit_wait({**example, "x-retry-after": "57"}, lambda: at) == 57.0


def test_exhausted_wait_takes_the_latest_dry_window() -> None:
    headers = {
        "X-Rate-Limit-User-Remaining": "0",
        "x-rate-limit-user-reset": str(NOW + 20),
        "x-rate-limit-workspace-remaining": "0",
        "x-rate-limit-workspace-reset": str(NOW + 35),
    }
    assert exhausted_wait(headers, NOW) == pytest.approx(35.0)
    headers["x-rate-limit-workspace-remaining"] = "4"
    assert exhausted_wait(headers, NOW) == pytest.approx(20.0)
    headers["X-Rate-Limit-User-Remaining"] = "1"
    assert exhausted_wait(headers, NOW) is None


def test_a_429_waits_for_x_retry_after_first_then_for_the_reset() -> None:
    dry = {"x-rate-limit-user-remaining": "0", "x-rate-limit-user-reset": str(NOW + 17)}
    assert rate_limit_wait({**dry, "x-retry-after": "3"}, now) == 3.0
    assert rate_limit_wait(dry, now) == pytest.approx(17.0)
    assert rate_limit_wait({"x-rate-limit-user-remaining": "5"}, now) is None


def test_api_call_waits_for_the_exhausted_window_on_a_429() -> None:
    call = ApiCall("POST", "/v4/plans/1/run", {"x-execution-id": "e"}, backoff=Backoff(attempts=5, cap=1.0))
    call.start_attempt()
    reset = time.time() + 9
    decision = call.after_response(
        HttpAnswer(429, {"x-rate-limit-user-remaining": "0", "x-rate-limit-user-reset": str(reset)}, b"{}")
    )
    assert isinstance(decision, Wait) and 8.5 <= decision.delay <= 9.5
    # A 503 does not read rate-limit headers: its wait is a plain backoff.
    call.start_attempt()
    decision = call.after_response(
        HttpAnswer(503, {"x-rate-limit-user-remaining": "0", "x-rate-limit-user-reset": str(reset)}, b"{}")
    )
    assert isinstance(decision, Wait) and decision.delay <= 1.0


def test_gate_holds_starts_until_the_reset_and_lets_go_after() -> None:
    clock = [NOW]
    gate = RateGate(max_wait=60.0, clock=lambda: clock[0])
    assert gate.wait_time("plans") == 0.0
    gate.observe("plans", {"x-rate-limit-user-remaining": "0", "x-rate-limit-user-reset": str(NOW + 10)})
    assert gate.wait_time("plans") == pytest.approx(10.0)
    assert gate.wait_time("flows") == 0.0
    clock[0] += 4
    assert gate.wait_time("plans") == pytest.approx(6.0)
    gate.observe("plans", {"x-rate-limit-user-remaining": "7", "x-rate-limit-user-reset": str(NOW + 70)})
    assert gate.wait_time("plans") == 0.0


def test_gate_never_holds_longer_than_its_bound() -> None:
    gate = RateGate(max_wait=5.0, clock=now)
    gate.observe(
        "plans", {"x-rate-limit-workspace-remaining": "0", "x-rate-limit-workspace-reset": str(NOW + 3600)}
    )
    assert gate.wait_time("plans") == pytest.approx(5.0)
