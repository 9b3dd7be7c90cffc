"""AACRunTrigger driven with asyncio against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from airflow.executors.workloads import TaskInstanceDTO
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult
from airflow.triggers.base import TriggerEvent
from airflow.utils.state import TaskInstanceState

from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.triggers.aac import AACRunTrigger, RunEvent
from tests.operators.aac_env import aac_conn, route_through, start_run, status_of
from tests.support.fault_fixtures import FaultProxyFactory
from tests.support.processes import poll_until

__all__ = ["aac_conn"]


def _trigger(
    kind: str, run_id: int, *, timeout: float = 30.0, cls: type[AACRunTrigger] = AACRunTrigger, **kwargs: Any
) -> AACRunTrigger:
    return cls(
        kind=kind,
        run_id=run_id,
        aac_conn_id="aac_default",
        poll_interval=kwargs.pop("poll_interval", 0.05),
        end_time=time.time() + timeout,
        run_url=f"http://aac.example/{kind}/{run_id}",
        **kwargs,
    )


async def _first_event(trigger: AACRunTrigger, limit: float = 15.0) -> dict[str, Any]:
    async def first() -> TriggerEvent:
        async for event in trigger.run():
            return event
        raise AssertionError("the trigger ended without an event")

    event = await asyncio.wait_for(first(), limit)
    json.dumps(event.payload)  # the triggerer stores it as JSON
    return dict(event.payload)


def _event(trigger: AACRunTrigger) -> dict[str, Any]:
    return asyncio.run(_first_event(trigger))


def test_an_event_stored_by_the_previous_version_parses_and_round_trips() -> None:
    """The triggerer keeps events in the database: the old payload format must still parse."""
    stored = json.loads(
        '{"status": "error", "kind": "plan", "run_id": 7001, "run_status": null,'
        ' "aac_message": null, "message": "Gave up following AAC plan run 7001.",'
        ' "canceled": false, "run_url": "http://aac.example/plan/7001",'
        ' "job_group_ids": [11, 12], "retryable": false}'
    )
    event = RunEvent.from_payload(stored)
    assert event == RunEvent(
        status="error",
        run_id=7001,
        kind="plan",
        message="Gave up following AAC plan run 7001.",
        run_status=None,
        aac_message=None,
        canceled=False,
        run_url="http://aac.example/plan/7001",
        job_group_ids=(11, 12),
        retryable=False,
    )
    assert event.to_payload() == stored
    assert RunEvent.from_payload(event.to_payload()) == event
    success = {**stored, "status": "success", "run_status": "Complete", "message": "ok"}
    del success["retryable"]
    assert RunEvent.from_payload(success).to_payload() == success


def test_serialize_round_trips_through_json() -> None:
    original = AACRunTrigger(
        kind="flow",
        run_id=9001,
        aac_conn_id="aac_other",
        poll_interval=2.5,
        end_time=1_900_000_000.25,
        cancel_on_timeout=False,
        cancel_on_kill=False,
        run_url="http://aac.example/flow-runs/9001",
        job_group_ids=[7001, 7002],
        max_poll_errors=5,
    )
    classpath, kwargs = original.serialize()
    assert classpath == "airflow_provider_aac.triggers.aac.AACRunTrigger"
    restored_kwargs = json.loads(json.dumps(kwargs))
    assert restored_kwargs == kwargs
    rebuilt = AACRunTrigger(**restored_kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["end_time"] == 1_900_000_000.25 and kwargs["kind"] == "flow"


@pytest.mark.aac_simulator(run_duration=0.5)
@pytest.mark.parametrize(("kind", "target"), [("plan", 1), ("flow", 10), ("job_group", 100)])
def test_success_event_after_statuses_progress(aac_conn: AACSimulator, kind: str, target: int) -> None:
    run_id = start_run(kind, target)
    calls_before = aac_conn.stats()["api_calls"]
    event = _event(_trigger(kind, run_id))
    assert event["status"] == "success" and event["run_status"] == "Complete"
    assert event["run_id"] == run_id and event["kind"] == kind
    assert event["run_url"] == f"http://aac.example/{kind}/{run_id}"
    assert aac_conn.stats()["api_calls"] - calls_before >= 3  # it polled while the run went on


@pytest.mark.aac_simulator(run_duration=0.3)
@pytest.mark.parametrize(("kind", "target"), [("plan", 2), ("flow", 11), ("job_group", 101)])
def test_failed_event_carries_aacs_message(aac_conn: AACSimulator, kind: str, target: int) -> None:
    event = _event(_trigger(kind, start_run(kind, target)))
    assert event["status"] == "failed" and event["run_status"] == "Failed"
    assert "failed (simulated)" in event["aac_message"]


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize(("kind", "target"), [("plan", 1), ("flow", 10), ("job_group", 100)])
def test_timeout_cancels_the_run(aac_conn: AACSimulator, kind: str, target: int) -> None:
    run_id = start_run(kind, target)
    started = time.monotonic()
    event = _event(_trigger(kind, run_id, timeout=0.4, poll_interval=0.1))
    assert time.monotonic() - started < 3
    assert event["status"] == "timeout" and event["canceled"] is True
    assert "did not finish" in event["message"] and "canceled it" in event["message"]
    assert status_of(kind, run_id) == "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_timeout_without_cancel_leaves_the_run_alone(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    event = _event(_trigger("plan", run_id, timeout=0.2, cancel_on_timeout=False))
    assert event["status"] == "timeout" and event["canceled"] is False
    assert "may still be running" in event["message"]
    assert aac_conn.stats()["runs_canceled"] == 0


@pytest.mark.aac_simulator(run_duration=30)
def test_deadline_in_the_past_still_checks_once_then_times_out(aac_conn: AACSimulator) -> None:
    run_id = start_run("job_group", 100)
    event = _event(_trigger("job_group", run_id, timeout=-5, cancel_on_timeout=False))
    assert event["status"] == "timeout"


@pytest.mark.aac_simulator(run_duration=0.5)
def test_unknown_status_keeps_waiting(
    aac_conn: AACSimulator, monkeypatch: pytest.MonkeyPatch, fault_proxy_factory: FaultProxyFactory
) -> None:
    proxy = fault_proxy_factory(aac_conn.base_url)
    route_through(monkeypatch, proxy.base_url)
    run_id = start_run("plan", 1)
    unknown = proxy.on("GET", "/v4/planSnapshotRuns/", times=2).respond(200, {"status": "SomethingNew"})
    event = _event(_trigger("plan", run_id, poll_interval=0.01))
    assert event["status"] == "success" and unknown.count == 2


@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_unknown_run_fails_at_once(aac_conn: AACSimulator, kind: str) -> None:
    before = aac_conn.stats()["api_calls"]
    event = _event(_trigger(kind, 424242, poll_interval=5))
    assert aac_conn.stats()["api_calls"] - before == 1, "a 404 ends the wait at the first poll"
    assert event["status"] == "error" and "404" in event["message"] and "check the id" in event["message"]


@pytest.mark.aac_simulator(run_duration=0.3)
def test_transient_poll_errors_are_tolerated_within_the_budget(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    # Five 429s exhaust the hook's own retries once: one failed poll, then success.
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    event = _event(_trigger("plan", run_id, max_poll_errors=2))
    assert event["status"] == "success"
    assert aac_conn.stats()["rate_limited"] == 5


@pytest.mark.aac_simulator(run_duration=30)
def test_too_many_transient_poll_errors_end_with_an_error_event(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    event = _event(_trigger("plan", run_id, max_poll_errors=1))
    assert event["status"] == "error"
    assert "Gave up following" in event["message"] and "check it in AAC" in event["message"]
    assert aac_conn.stats()["runs_canceled"] == 0


@pytest.mark.aac_simulator(run_duration=0.8)
def test_polling_never_blocks_the_event_loop(aac_conn: AACSimulator) -> None:
    run_id = start_run("flow", 10)
    gaps: list[float] = []

    async def main() -> dict[str, Any]:
        stop = asyncio.Event()

        async def heartbeat() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        try:
            return await _first_event(_trigger("flow", run_id, poll_interval=0.02))
        finally:
            stop.set()
            await beat

    assert asyncio.run(main())["status"] == "success"
    assert len(gaps) > 20
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f}s"


async def _running_trigger(trigger: AACRunTrigger, simulator: AACSimulator) -> asyncio.Task[Any]:
    """Start the trigger and return once it has polled the live run a few times."""
    calls = simulator.stats()["api_calls"]
    task = asyncio.create_task(_first_event(trigger))
    deadline = time.monotonic() + 10
    while simulator.stats()["api_calls"] < calls + 3:
        assert time.monotonic() < deadline, "the trigger never polled"
        await asyncio.sleep(0.02)
    assert not task.done()
    return task


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize(("kind", "target"), [("plan", 1), ("flow", 10), ("job_group", 100)])
def test_user_kill_cancels_the_run_but_a_triggerer_restart_does_not(
    aac_conn: AACSimulator, kind: str, target: int
) -> None:
    """Airflow 3.3+: the triggerer cancels the task in both cases, but calls on_kill only for a user."""
    run_id = start_run(kind, target)

    async def main() -> None:
        restarted = _trigger(kind, run_id)
        await _cancel(await _running_trigger(restarted, aac_conn))
        await restarted.cleanup()
        assert aac_conn.stats()["runs_canceled"] == 0, "a triggerer restart must not cancel the run"

        killed = _trigger(kind, run_id)
        await _cancel(await _running_trigger(killed, aac_conn))
        await killed.on_kill()
        await killed.cleanup()

    asyncio.run(main())
    assert status_of(kind, run_id) == "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_on_kill_respects_cancel_on_kill_false(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    trigger = _trigger("plan", run_id, cancel_on_kill=False)
    asyncio.run(trigger.on_kill())
    assert status_of("plan", run_id) != "Canceled"


@pytest.mark.aac_simulator(run_duration=0.2)
def test_on_kill_after_the_event_does_nothing(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    trigger = _trigger("plan", run_id)
    assert _event(trigger)["status"] == "success"
    calls = aac_conn.stats()["api_calls"]
    asyncio.run(trigger.on_kill())
    assert aac_conn.stats()["api_calls"] == calls


class BeforeAirflow33(AACRunTrigger):
    """The trigger as Airflow 3.0 to 3.2 run it: their triggerer calls ``cleanup``, never ``on_kill``."""

    triggerer_calls_on_kill = False


class Supervisor:
    """Answers the trigger's state question as the triggerer's supervisor does, with Airflow's own message."""

    def __init__(self, state: str | None) -> None:
        self.state = state
        self.asked: list[GetTaskStates] = []

    def send(self, msg: Any) -> TaskStatesResult | None:
        if not isinstance(msg, GetTaskStates):
            return None  # e.g. MaskSecret, which the provider sends for each token it holds
        self.asked.append(msg)
        states = {} if self.state is None else {TI.run_id: {TI.task_id: TaskInstanceState(self.state)}}
        return TaskStatesResult(task_states=states)


# The task instance the triggerer hands the trigger.
TI = TaskInstanceDTO(
    id=uuid.uuid4(),
    task_id="run_plan",
    dag_id="aac_cleanup",
    run_id="manual__1",
    try_number=1,
    dag_version_id=uuid.uuid4(),
    map_index=-1,
    pool_slots=1,
    queue="default",
    priority_weight=1,
)


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize(
    ("task_state", "cancelled"), [("deferred", False), ("failed", True), ("success", True), (None, False)]
)
def test_before_airflow_3_3_cleanup_cancels_only_a_stopped_task(
    aac_conn: AACSimulator, monkeypatch: pytest.MonkeyPatch, task_state: str | None, cancelled: bool
) -> None:
    supervisor = Supervisor(task_state)
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", supervisor, raising=False)
    run_id = start_run("job_group", 100)
    trigger = _trigger("job_group", run_id, cls=BeforeAirflow33)
    trigger.task_instance = TI

    async def main() -> None:
        await _cancel(await _running_trigger(trigger, aac_conn))
        await trigger.cleanup()

    asyncio.run(main())
    assert (status_of("job_group", run_id) == "Canceled") is cancelled
    [asked] = supervisor.asked
    assert (asked.dag_id, asked.task_ids, asked.run_ids, asked.map_index) == (
        TI.dag_id,
        [TI.task_id],
        [TI.run_id],
        TI.map_index,
    )


@pytest.mark.aac_simulator(run_duration=30)
def test_before_airflow_3_3_an_unreadable_task_state_keeps_the_run(
    aac_conn: AACSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No supervisor to ask (Airflow's lookup raises): the run is kept, not cancelled on a guess."""
    monkeypatch.delattr(task_runner, "SUPERVISOR_COMMS", raising=False)
    run_id = start_run("plan", 1)
    trigger = _trigger("plan", run_id, cls=BeforeAirflow33)
    trigger.task_instance = TI
    asyncio.run(trigger.cleanup())
    assert status_of("plan", run_id) != "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 0


def test_airflow_3_3_is_detected() -> None:
    assert AACRunTrigger.triggerer_calls_on_kill is True  # the suite pins apache-airflow 3.3.2


@pytest.mark.aac_simulator(run_duration=0.1)
def test_the_first_poll_waits_the_interval_after_the_operators_own_check(aac_conn: AACSimulator) -> None:
    """A run that ends right after the deferral is reported one interval later, not at once:
    an event fired seconds after a deferral can be failed by Airflow's scheduler."""
    run_id = start_run("plan", 1)
    poll_until(
        lambda: status_of("plan", run_id) == "Complete" or None, timeout=30, what="the plan run to end"
    )
    calls_before = aac_conn.stats()["api_calls"]
    started = time.monotonic()
    event = _event(_trigger("plan", run_id, first_poll_at=time.time() + 0.8))
    assert event["status"] == "success"
    assert time.monotonic() - started >= 0.75
    assert aac_conn.stats()["api_calls"] - calls_before == 1, "one poll, after the wait"
    kwargs = _trigger("plan", run_id, first_poll_at=12.5).serialize()[1]
    assert kwargs["first_poll_at"] == 12.5
