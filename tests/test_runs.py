"""runs.py: statuses, failure messages, cancels and URLs per run kind, against the simulator."""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_provider_aac.core.status import AACRunStatus
from airflow_provider_aac.errors import (
    AACApiError,
    AACConfigError,
    AACNotFoundError,
    AACRunError,
    AACTransientError,
)
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.runs import (
    PollErrors,
    RunKind,
    RunState,
    acancel,
    aget_status,
    cancel,
    failure_error,
    failure_message,
    get_status,
    run_url,
)
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.tokens.connection import AACConnectionConfig
from tests.operators.aac_env import aac_conn, start_run
from tests.support.processes import poll_until

__all__ = ["aac_conn"]

KINDS = [(RunKind.PLAN, 1, 2), (RunKind.FLOW, 10, 11), (RunKind.JOB_GROUP, 100, 101)]


@pytest.mark.aac_simulator(run_duration=0.4)
@pytest.mark.parametrize(("kind", "good", "bad"), KINDS)
def test_status_progresses_to_complete_sync_and_async(
    aac_conn: AACSimulator, kind: RunKind, good: int, bad: int
) -> None:
    hook = AACHook()
    run_id = start_run(kind.value, good)
    first = get_status(hook, kind, run_id)
    assert first.status in {AACRunStatus.CREATED, AACRunStatus.PENDING, AACRunStatus.IN_PROGRESS}
    assert not first.terminal
    seen = {first.raw}

    def complete() -> RunState | None:
        state = get_status(hook, kind, run_id)
        seen.add(state.raw)
        return state if state.terminal else None

    final = poll_until(complete, timeout=10, interval=0.02, what=f"{kind} run {run_id} to end")
    assert final.succeeded and final.message is None
    assert len(seen) >= 2
    assert asyncio.run(aget_status(hook, kind, run_id)) == final


@pytest.mark.aac_simulator(run_duration=0.2)
@pytest.mark.parametrize(("kind", "good", "bad"), KINDS)
def test_failed_run_carries_aacs_own_message(
    aac_conn: AACSimulator, kind: RunKind, good: int, bad: int
) -> None:
    hook = AACHook()
    run_id = start_run(kind.value, bad)

    def ended() -> RunState | None:
        state = get_status(hook, kind, run_id)
        return state if state.terminal else None

    state = poll_until(ended, timeout=10, interval=0.02, what="failure")
    assert state.failed and state.raw == "Failed"
    assert state.message and "failed (simulated)" in state.message
    assert asyncio.run(aget_status(hook, kind, run_id)).message == state.message

    error = failure_error(state, "http://aac/x")
    assert isinstance(error, AACRunError)
    assert str(run_id) in str(error) and "http://aac/x" in str(error) and state.message in str(error)
    assert "clear this task" in str(error)


@pytest.mark.parametrize("kind", list(RunKind))
def test_unknown_run_is_a_not_found_error(aac_conn: AACSimulator, kind: RunKind) -> None:
    with pytest.raises(AACNotFoundError, match="404"):
        get_status(AACHook(), kind, 424242)
    with pytest.raises(AACNotFoundError, match="check the id"):
        asyncio.run(aget_status(AACHook(), kind, 424242))


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize(("kind", "good", "bad"), KINDS)
def test_cancel_sync_and_async(aac_conn: AACSimulator, kind: RunKind, good: int, bad: int) -> None:
    hook = AACHook()
    first, second = start_run(kind.value, good), start_run(kind.value, good)
    cancelled = cancel(hook, kind, first)
    assert get_status(hook, kind, first).raw == "Canceled"
    assert cancelled
    asyncio.run(acancel(hook, kind, second))
    assert get_status(hook, kind, second).raw == "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 2


@pytest.mark.aac_simulator(run_duration=30)
def test_flow_cancel_uses_the_known_job_groups_without_reading_the_run(aac_conn: AACSimulator) -> None:
    hook = AACHook()
    started = hook.request("POST", "/v4/flows/10/run").data
    groups = [g["id"] for g in started["data"]]
    calls = aac_conn.stats()["api_calls"]
    assert cancel(hook, RunKind.FLOW, started["flowRunId"], groups) == groups
    assert aac_conn.stats()["api_calls"] == calls + len(groups)
    assert get_status(hook, RunKind.FLOW, started["flowRunId"]).raw == "Canceled"


def test_flow_cancel_of_an_unknown_run_fails_clearly(aac_conn: AACSimulator) -> None:
    with pytest.raises(AACNotFoundError):
        cancel(AACHook(), RunKind.FLOW, 424242)


def test_status_as_object_and_unknown_values() -> None:
    assert RunState(RunKind.PLAN, 1, "Queued").status is None
    assert not RunState(RunKind.PLAN, 1, "Queued").terminal
    assert not RunState(RunKind.PLAN, 1, None).terminal
    assert RunState(RunKind.PLAN, 1, "Canceled").failed
    assert "canceled" in str(failure_error(RunState(RunKind.JOB_GROUP, 3, "Canceled"), None)).lower()
    assert "gave no message" in str(failure_error(RunState(RunKind.FLOW, 3, "Failed"), None))


def test_failure_message_shapes() -> None:
    assert failure_message({"errorMessage": " boom "}) == "boom"
    assert failure_message({"error": {"message": "nested"}}) == "nested"
    assert failure_message({"exception": {"message": "from exception"}}) == "from exception"
    assert failure_message({"status": "Failed"}) is None
    assert failure_message("Failed") is None


def _config(**extra: str) -> AACConnectionConfig:
    return AACConnectionConfig("aac_x", "https://us1.alteryxcloud.com", dict(extra))


def test_run_url_defaults_and_overrides() -> None:
    assert run_url(_config(), RunKind.PLAN, 5) == "https://us1.alteryxcloud.com/plan-runs/5"
    assert run_url(_config(), RunKind.FLOW, 6) == "https://us1.alteryxcloud.com/flow-runs/6"
    assert run_url(_config(), RunKind.JOB_GROUP, 7) == "https://us1.alteryxcloud.com/jobs/7"
    custom = _config(job_group_url="https://ui.example/{run_id}?from={base_url}")
    assert run_url(custom, RunKind.JOB_GROUP, 7) == "https://ui.example/7?from=https://us1.alteryxcloud.com"
    with pytest.raises(AACConfigError, match=r"plan_run_url.*run_id"):
        run_url(_config(plan_run_url="{base_url}/{plan}"), RunKind.PLAN, 5)


def test_poll_errors_budget() -> None:
    errors = PollErrors(limit=3)
    errors.record(AACTransientError("blip"), "plan run 1")
    errors.reset()
    errors.record(AACTransientError("blip"), "plan run 1")
    errors.record(AACTransientError("blip"), "plan run 1")
    with pytest.raises(AACRunError, match=r"3 failed status checks in a row.*check it in AAC"):
        errors.record(AACTransientError("blip"), "plan run 1")
    with pytest.raises(AACNotFoundError):
        PollErrors().record(AACNotFoundError("gone", status_code=404), "plan run 1")
    with pytest.raises(AACApiError) as bad_request:
        PollErrors().record(AACApiError("bad", status_code=400), "plan run 1")
    assert bad_request.value.retryable is False


@pytest.mark.parametrize("status", [408, 409, 429, 503, None])
def test_a_poll_error_a_task_retry_could_fix_is_also_polled_through(status: int | None) -> None:
    """One answer to "may this pass?": what the task retries, polling tolerates (issue 17: a 409 did not)."""
    error = AACApiError("x", status_code=status)
    assert error.retryable
    errors = PollErrors(limit=2)
    errors.record(error, "plan run 1")
    with pytest.raises(AACRunError) as gave_up:
        errors.record(error, "plan run 1")
    assert gave_up.value.retryable and gave_up.value.__cause__ is error


def test_run_state_is_json_friendly() -> None:
    state = RunState(RunKind.PLAN, 1, "Complete")
    assert json.loads(json.dumps({"kind": state.kind.value, "raw": state.raw})) == {
        "kind": "plan",
        "raw": "Complete",
    }
