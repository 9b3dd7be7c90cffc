"""The sensors in poke, reschedule and deferrable modes against the simulator over real HTTP.

A run through the real task runner (templated id from XCom, deferrable sensor inline)
is part of ``tests/operators/test_aac.py::test_dag_end_to_end_*``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowRescheduleException, AirflowSensorTimeout, TaskDeferred

from airflow_provider_aac.errors import AACConfigError, AACNotFoundError, AACRunError, AACRunFailedError
from airflow_provider_aac.sensors.aac import (
    AACFlowRunSensor,
    AACJobGroupSensor,
    AACPlanRunSensor,
    AACRunSensorBase,
)
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.triggers.aac import AACRunTrigger
from tests.operators.aac_env import FakeTI, aac_conn, context_for, fails_for_good, start_run, status_of

__all__ = ["aac_conn"]

SENSORS: dict[str, tuple[type[AACRunSensorBase], str, int, int]] = {
    "plan": (AACPlanRunSensor, "plan_snapshot_run_id", 1, 2),
    "flow": (AACFlowRunSensor, "flow_run_id", 10, 11),
    "job_group": (AACJobGroupSensor, "job_group_id", 100, 101),
}
URL_PART = {"plan": "plan-runs", "flow": "flow-runs", "job_group": "jobs"}


def _sensor(kind: str, run_id: Any, **kwargs: Any) -> AACRunSensorBase:
    cls, field, _, _ = SENSORS[kind]
    options = {"poke_interval": 0.05, "timeout": 30, **kwargs}
    return cls(task_id=f"s_{uuid.uuid4().hex[:8]}", **{field: run_id}, **options)


@pytest.mark.aac_simulator(run_duration=0.5)
@pytest.mark.parametrize("kind", list(SENSORS))
def test_poke_mode_waits_for_complete(aac_conn: AACSimulator, kind: str) -> None:
    run_id = start_run(kind, SENSORS[kind][2])
    ti = FakeTI()
    calls = aac_conn.stats()["api_calls"]
    _sensor(kind, run_id).execute(context_for(ti))
    assert status_of(kind, run_id) == "Complete"
    assert aac_conn.stats()["api_calls"] - calls >= 4
    assert ti.xcom == {"run_id": run_id, "run_url": f"{aac_conn.base_url}/{URL_PART[kind]}/{run_id}"}


@pytest.mark.aac_simulator(run_duration=0.3)
@pytest.mark.parametrize("kind", list(SENSORS))
def test_failed_run_fails_the_sensor_with_aacs_message(aac_conn: AACSimulator, kind: str) -> None:
    run_id = start_run(kind, SENSORS[kind][3])
    with fails_for_good(AACRunFailedError, match=rf"{run_id} ended Failed: .*failed \(simulated\).*See http"):
        _sensor(kind, run_id).execute(context_for())


@pytest.mark.aac_simulator(run_duration=30)
def test_canceled_run_fails_the_sensor(aac_conn: AACSimulator) -> None:
    from airflow_provider_aac.hooks.aac import AACHook

    run_id = start_run("plan", 1)
    AACHook().request("POST", f"/v4/planSnapshotRuns/{run_id}/cancel")
    with fails_for_good(AACRunFailedError, match="ended Canceled"):
        _sensor("plan", run_id).execute(context_for())


@pytest.mark.parametrize("kind", list(SENSORS))
def test_unknown_run_fails_at_once(aac_conn: AACSimulator, kind: str) -> None:
    before = aac_conn.stats()["api_calls"]
    with fails_for_good(AACNotFoundError, match="404"):
        _sensor(kind, 424242, poke_interval=5).execute(context_for())
    assert aac_conn.stats()["api_calls"] - before == 1, "a 404 ends the wait at the first poke"


@pytest.mark.aac_simulator(run_duration=30)
def test_poke_mode_timeout_never_cancels_the_run(aac_conn: AACSimulator) -> None:
    run_id = start_run("flow", 10)
    with pytest.raises(AirflowSensorTimeout):
        _sensor("flow", run_id, timeout=0.2).execute(context_for())
    assert status_of("flow", run_id) != "Canceled"


@pytest.mark.aac_simulator(run_duration=0.4)
def test_reschedule_mode(aac_conn: AACSimulator) -> None:
    run_id = start_run("job_group", 100)
    sensor = _sensor("job_group", run_id, mode="reschedule")
    with pytest.raises(AirflowRescheduleException):
        sensor.execute(context_for())
    deadline = time.monotonic() + 10
    while True:
        try:
            sensor.execute(context_for())
            break
        except AirflowRescheduleException:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert status_of("job_group", run_id) == "Complete"


@pytest.mark.aac_simulator(run_duration=0.2)
def test_transient_errors_within_the_budget_keep_poking(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    _sensor("plan", run_id).execute(context_for())
    assert aac_conn.stats()["rate_limited"] == 5


@pytest.mark.aac_simulator(run_duration=0.6)
@pytest.mark.parametrize("kind", list(SENSORS))
def test_deferrable_mode_through_its_trigger(aac_conn: AACSimulator, kind: str) -> None:
    run_id = start_run(kind, SENSORS[kind][2])
    ti = FakeTI()
    sensor = _sensor(kind, str(run_id), deferrable=True, timeout=45)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context_for(ti))
    assert ti.xcom["run_id"] == run_id
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["cancel_on_kill"] is False and kwargs["cancel_on_timeout"] is False
    assert before + 45 <= kwargs["end_time"] <= time.time() + 45
    trigger = AACRunTrigger(**json.loads(json.dumps(kwargs)))

    async def first_event() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "success"
    assert getattr(sensor, deferred.value.method_name)(context_for(ti), event=event) is None


@pytest.mark.aac_simulator(run_duration=0)
def test_deferrable_sensor_on_an_ended_run_does_not_defer(aac_conn: AACSimulator) -> None:
    _sensor("plan", start_run("plan", 1), deferrable=True).execute(context_for())
    with fails_for_good(AACRunFailedError):
        _sensor("plan", start_run("plan", 2), deferrable=True).execute(context_for())


@pytest.mark.aac_simulator(run_duration=30)
def test_deferrable_timeout_is_a_sensor_timeout_and_keeps_the_run(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    sensor = _sensor("plan", run_id, deferrable=True, timeout=0.3)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context_for())

    async def first_event() -> dict[str, Any]:
        async for event in deferred.value.trigger.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    assert event["status"] == "timeout" and event["canceled"] is False
    with pytest.raises(AirflowSensorTimeout, match="did not finish"):
        sensor.execute_complete(context_for(), event)
    assert status_of("plan", run_id) != "Canceled"
    soft = _sensor("plan", run_id, deferrable=True, soft_fail=True)
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(AirflowSkipException):
        soft.resume_execution("execute_complete", {"event": event}, context_for())


def test_execute_complete_failures() -> None:
    sensor = _sensor("job_group", 7001, deferrable=True)
    failed = {
        "status": "failed",
        "run_id": 7001,
        "run_status": "Failed",
        "aac_message": "disk full",
        "run_url": "u",
    }
    with fails_for_good(AACRunFailedError, match=r"job group 7001 ended Failed: disk full\. See u"):
        sensor.execute_complete(context_for(), failed)
    with pytest.raises(AACRunError, match="Gave up"):
        sensor.execute_complete(context_for(), {"status": "error", "run_id": 7001, "message": "Gave up."})


@pytest.mark.aac_simulator(run_duration=0.2)
def test_templated_id_renders_then_validates(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    sensor = _sensor("plan", "{{ params.run }}")
    context = context_for(params={"run": run_id})
    sensor.render_template_fields(context)
    sensor.execute(context)
    bad = _sensor("plan", "{{ params.run }}")
    context = context_for(params={"run": "abc"})
    bad.render_template_fields(context)
    with fails_for_good(AACConfigError, match="plan_snapshot_run_id must be a positive integer"):
        bad.execute(context)


@pytest.mark.parametrize("value", ["abc", 0, -1, True])
@pytest.mark.parametrize("kind", list(SENSORS))
def test_bad_ids_are_rejected_when_the_dag_is_parsed(kind: str, value: object) -> None:
    with pytest.raises(AACConfigError, match=f"{SENSORS[kind][1]} must be a positive integer AAC id"):
        _sensor(kind, value)


def test_zero_poke_interval_or_timeout_is_rejected() -> None:
    with pytest.raises(AACConfigError, match="poke_interval must be a number of seconds greater than 0"):
        _sensor("plan", 1, poke_interval=0)
    with pytest.raises(AACConfigError, match="timeout must be a number of seconds greater than 0"):
        _sensor("plan", 1, timeout=0)
