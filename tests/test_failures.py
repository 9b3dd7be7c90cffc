"""Errors no retry can fix fail the task for good (``AACFinalError``); retryable ones keep its retries.

In-process at the operator, sensor and trigger boundaries here; under Airflow's real
task runner, with retries configured, in ``tests/test_failures_dag.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_aac.errors import (
    AACApiError,
    AACClientRejectedError,
    AACConfigError,
    AACError,
    AACFinalError,
    AACLockTimeoutError,
    AACNotFoundError,
    AACRefreshNotPublishedError,
    AACResponseCheckError,
    AACRunError,
    AACRunFailedError,
    AACRunOutcomeUnknownError,
    AACRunTimeoutError,
    AACStoreError,
    AACTokenChainBrokenError,
    AACTransientError,
    failing_fast,
)
from airflow_provider_aac.operators.aac import AACApiOperator, AACRunFlowOperator, AACRunPlanOperator
from airflow_provider_aac.sensors.aac import AACPlanRunSensor
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.triggers.aac import AACRunTrigger
from tests.operators.aac_env import aac_conn, context_for, start_run

__all__ = ["aac_conn"]


def _task_id() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (AACTokenChainBrokenError("dead"), False),
        (AACClientRejectedError("bad client"), False),
        (AACConfigError("wrong"), False),
        (AACNotFoundError("gone", status_code=404), False),
        (AACApiError("bad request", status_code=400), False),
        (AACApiError("forbidden", status_code=403), False),
        (AACApiError("rejected after refresh", status_code=401), False),
        (AACApiError("rate limited", status_code=429), True),
        (AACApiError("server", status_code=503), True),
        (AACApiError("conflict", status_code=409), True),
        (AACApiError("no status"), True),
        (AACTransientError("blip"), True),
        (AACLockTimeoutError("lock"), True),
        (AACRefreshNotPublishedError("late"), True),
        (AACStoreError("store"), True),
        (AACRunError("gave up following"), True),
        (AACRunTimeoutError("timeout"), True),
        (AACRunFailedError("failed"), True),
    ],
)
def test_which_errors_a_retry_can_fix(error: AACError, retryable: bool) -> None:
    assert error.retryable is retryable


def test_the_boundary_keeps_the_error_words_and_attributes() -> None:
    original = AACNotFoundError("AAC answered 404: Plan 9 not found", status_code=404, request_id="r-1")
    with pytest.raises(AACFinalError) as caught, failing_fast():
        raise original
    made = caught.value
    assert isinstance(made, AirflowFailException) and made.retryable is False
    assert made.error is original and made.__cause__ is original
    assert str(made) == str(original)
    assert (original.status_code, original.request_id) == (404, "r-1")


def test_errors_already_final_for_airflow_pass_unchanged() -> None:
    outcome_unknown = AACRunOutcomeUnknownError("304")
    with pytest.raises(AACRunOutcomeUnknownError) as caught, failing_fast():
        raise outcome_unknown
    assert caught.value is outcome_unknown and outcome_unknown.retryable is False


def test_failing_fast_leaves_retryable_errors_alone() -> None:
    with pytest.raises(AACTransientError) as caught, failing_fast():
        raise AACTransientError("blip")
    assert not isinstance(caught.value, AirflowFailException)
    with pytest.raises(AACRunFailedError) as failed, failing_fast():
        raise AACRunFailedError("run failed")
    assert not isinstance(failed.value, AirflowFailException)
    with pytest.raises(AACFinalError, match="run failed") as final, failing_fast(run_failure_is_final=True):
        raise AACRunFailedError("run failed")
    assert isinstance(final.value.error, AACRunFailedError) and final.value.error.retryable is False
    with pytest.raises(ValueError), failing_fast():
        raise ValueError("not ours")


def test_unknown_plan_fails_for_good_with_the_404_words(aac_conn: AACSimulator) -> None:
    op = AACRunPlanOperator(task_id=_task_id(), plan_id=424242, poll_interval=0.05)
    with pytest.raises(AACFinalError, match=r"404.*Plan 424242 not found.*check the id") as caught:
        op.execute(context_for())
    assert isinstance(caught.value.error, AACNotFoundError)
    assert aac_conn.stats()["api_calls"] == 1


def test_api_operator_404_is_final_but_a_rejected_check_keeps_the_retries(aac_conn: AACSimulator) -> None:
    missing = AACApiOperator(task_id=_task_id(), endpoint="/v4/planSnapshotRuns/424242")
    with pytest.raises(AACFinalError) as caught:
        missing.execute(context_for())
    assert isinstance(caught.value.error, AACNotFoundError)
    rejecting = AACApiOperator(task_id=_task_id(), endpoint="/v4/plans", response_check=lambda data: False)
    with pytest.raises(AACResponseCheckError) as rejected:
        rejecting.execute(context_for())
    assert rejected.value.retryable and not isinstance(rejected.value, AirflowFailException)


def test_a_connection_that_cannot_refresh_fails_for_good(aac_conn: AACSimulator) -> None:
    aac_conn.fail_api(401)  # the env-var connection cannot store a refreshed pair
    op = AACRunPlanOperator(task_id=_task_id(), plan_id=1, poll_interval=0.05)
    with pytest.raises(AACFinalError, match="environment variable") as caught:
        op.execute(context_for())
    assert isinstance(caught.value.error, AACConfigError)
    assert aac_conn.stats()["token_requests"] == 0 and aac_conn.stats()["runs_started"] == 0


@pytest.mark.aac_simulator(run_duration=0.2)
def test_failed_run_is_final_only_when_asked(aac_conn: AACSimulator) -> None:
    retried = AACRunPlanOperator(task_id=_task_id(), plan_id=2, poll_interval=0.05)
    with pytest.raises(AACRunFailedError) as caught:
        retried.execute(context_for())
    assert not isinstance(caught.value, AirflowFailException)

    final_op = AACRunPlanOperator(task_id=_task_id(), plan_id=2, poll_interval=0.05, retry_failed_runs=False)
    with pytest.raises(AACFinalError, match=r"ended Failed.*failed \(simulated\)") as caught:
        final_op.execute(context_for())
    assert isinstance(caught.value.error, AACRunFailedError)


@pytest.mark.aac_simulator(run_duration=30)
def test_transient_errors_keep_the_retries(aac_conn: AACSimulator) -> None:
    aac_conn.fail_api(503, times=5, method="POST")
    op = AACRunFlowOperator(task_id=_task_id(), flow_id=10, poll_interval=0.05)
    with pytest.raises(AACApiError, match="503") as caught:
        op.execute(context_for())
    assert caught.value.retryable and not isinstance(caught.value, AirflowFailException)


def test_deferred_failures_keep_their_class() -> None:
    op = AACRunPlanOperator(task_id=_task_id(), plan_id=2, retry_failed_runs=False, deferrable=True)
    base = {"kind": "plan", "run_id": 5001, "run_url": "u", "canceled": False}
    with pytest.raises(AACFinalError, match="ended Failed") as failed:
        op.execute_complete(context_for(), {**base, "status": "failed", "run_status": "Failed"})
    assert isinstance(failed.value.error, AACRunFailedError)
    with pytest.raises(AACFinalError, match="404") as unknown:
        op.execute_complete(context_for(), {**base, "status": "error", "message": "404", "retryable": False})
    assert isinstance(unknown.value.error, AACRunError)
    with pytest.raises(AACRunError) as caught:
        op.execute_complete(
            context_for(), {**base, "status": "error", "message": "Gave up", "retryable": True}
        )
    assert not isinstance(caught.value, AirflowFailException)


@pytest.mark.aac_simulator(run_duration=0.2)
def test_sensor_on_a_failed_or_unknown_run_fails_for_good(aac_conn: AACSimulator) -> None:
    failed_run = start_run("plan", 2)
    sensor = AACPlanRunSensor(
        task_id=_task_id(), plan_snapshot_run_id=failed_run, poke_interval=0.05, timeout=10
    )
    with pytest.raises(AACFinalError) as caught:
        sensor.execute(context_for())
    assert isinstance(caught.value.error, AACRunFailedError)
    unknown = AACPlanRunSensor(
        task_id=_task_id(), plan_snapshot_run_id=424242, poke_interval=0.05, timeout=10
    )
    with pytest.raises(AACFinalError, match="404") as not_found:
        unknown.execute(context_for())
    assert isinstance(not_found.value.error, AACNotFoundError)
    with pytest.raises(AACFinalError, match="404"):
        unknown.execute_complete(context_for(), {"status": "error", "message": "404", "retryable": False})


def _first_event(trigger: AACRunTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    return asyncio.run(asyncio.wait_for(first(), 15))


@pytest.mark.aac_simulator(run_duration=30)
def test_trigger_error_events_say_whether_a_retry_helps(aac_conn: AACSimulator) -> None:
    unknown = _first_event(AACRunTrigger("plan", 424242, end_time=time.time() + 10, poll_interval=0.05))
    assert unknown["status"] == "error" and unknown["retryable"] is False

    run_id = start_run("plan", 1)
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    flaky = _first_event(
        AACRunTrigger("plan", run_id, end_time=time.time() + 10, poll_interval=0.05, max_poll_errors=1)
    )
    assert flaky["status"] == "error" and flaky["retryable"] is True


def test_a_final_error_survives_pickling_with_its_cause_error() -> None:
    import pickle

    made = AACFinalError(AACApiError("AAC answered 403", status_code=403, request_id="r-2"))
    back = pickle.loads(pickle.dumps(made))
    assert type(back.error) is AACApiError and back.error.status_code == 403 and str(back) == str(made)
