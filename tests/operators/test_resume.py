"""A retry attaches to the run an earlier try started instead of starting another.

In-process: each "try" is a fresh operator (as in a new worker process) with the same
``FakeTI``, whose ``retry()`` clears XComs and keeps the task state store, as Airflow
does. The real thing, a try SIGKILLed under the task supervisor, is in
``tests/system/test_resume_crash.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_aac.core.api import EXECUTION_ID_HEADER
from airflow_provider_aac.errors import AACRunFailedError, AACRunOutcomeUnknownError, AACRunTimeoutError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.aac import (
    AACRunFlowOperator,
    AACRunJobGroupOperator,
    AACRunOperatorBase,
    AACRunPlanOperator,
)
from airflow_provider_aac.resume import RECORD_KEY, VARIABLE_PREFIX, RunRecord, VariableStore, store_for
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.triggers.aac import AACRunTrigger
from tests.operators.aac_env import FakeTI, aac_conn, context_for, status_of
from tests.support.processes import poll_until

__all__ = ["aac_conn"]

TARGETS = {"plan": 1, "flow": 10, "job_group": 100}
CLASSES: dict[str, type[AACRunOperatorBase]] = {
    "plan": AACRunPlanOperator,
    "flow": AACRunFlowOperator,
    "job_group": AACRunJobGroupOperator,
}
FIELDS = {"plan": "plan_id", "flow": "flow_id", "job_group": "wrangled_dataset_id"}


def _op(kind: str, ti: FakeTI, **kwargs: Any) -> AACRunOperatorBase:
    """The operator of one try; task_id is the FakeTI's, as Airflow builds it from the DAG."""
    options = {FIELDS[kind]: TARGETS[kind], "poll_interval": 0.05, **kwargs}
    return CLASSES[kind](task_id=ti.task_id, **options)


def _ti() -> FakeTI:
    return FakeTI(task_id=f"t_{uuid.uuid4().hex[:8]}")


def _first_try_times_out(aac_conn: AACSimulator, kind: str, ti: FakeTI) -> int:
    """Try 1 starts the run and dies waiting (a timeout that leaves the run running)."""
    with pytest.raises(AACRunTimeoutError):
        _op(kind, ti, timeout=0.2, cancel_on_timeout=False).execute(context_for(ti))
    return int(ti.xcom["run_id"])


@pytest.mark.aac_simulator(run_duration=1.5)
@pytest.mark.parametrize("kind", list(TARGETS))
def test_retry_attaches_to_the_running_run_and_waits_for_it(aac_conn: AACSimulator, kind: str) -> None:
    ti = _ti()
    run_id = _first_try_times_out(aac_conn, kind, ti)
    assert status_of(kind, run_id) != "Complete"
    first = ti.xcom
    ti.retry()
    assert ti.xcom == {}

    assert _op(kind, ti).execute(context_for(ti)) == run_id
    assert status_of(kind, run_id) == "Complete"
    assert aac_conn.stats()["runs_started"] == 1
    assert [s.run_id for s in aac_conn.runs.starts()] == [run_id]
    assert ti.xcom["run_id"] == run_id and ti.xcom["run_url"] == first["run_url"]
    if kind == "flow":
        assert ti.xcom["job_group_ids"] == first["job_group_ids"]


@pytest.mark.aac_simulator(run_duration=0.5)
@pytest.mark.parametrize("kind", list(TARGETS))
def test_retry_returns_a_run_that_completed_without_waiting(aac_conn: AACSimulator, kind: str) -> None:
    ti = _ti()
    run_id = _first_try_times_out(aac_conn, kind, ti)
    poll_until(
        lambda: status_of(kind, run_id) == "Complete" or None,
        timeout=10,
        interval=0.02,
        what="the run to complete",
    )
    ti.retry()
    calls = aac_conn.stats()["api_calls"]
    started = time.monotonic()

    assert _op(kind, ti, poll_interval=30).execute(context_for(ti)) == run_id
    assert time.monotonic() - started < 5, "it must not have waited a poll interval"
    assert aac_conn.stats()["runs_started"] == 1
    assert aac_conn.stats()["api_calls"] - calls <= 2  # the status (and a flow's detail), nothing else


@pytest.mark.aac_simulator(run_duration=0.2)
@pytest.mark.parametrize("kind", list(TARGETS))
def test_retry_after_a_failed_run_starts_a_new_one(aac_conn: AACSimulator, kind: str) -> None:
    bad = {"plan": 2, "flow": 11, "job_group": 101}[kind]
    ti = _ti()
    with pytest.raises(AACRunFailedError):
        _op(kind, ti, **{FIELDS[kind]: bad}).execute(context_for(ti))
    first = ti.xcom["run_id"]
    ti.retry()
    with pytest.raises(AACRunFailedError):
        _op(kind, ti, **{FIELDS[kind]: bad}).execute(context_for(ti))
    starts = aac_conn.runs.starts()
    assert [s.run_id for s in starts] == [first, ti.xcom["run_id"]] and first != ti.xcom["run_id"]
    assert starts[0].execution_id != starts[1].execution_id


@pytest.mark.aac_simulator(run_duration=30)
def test_retry_after_a_canceled_run_starts_a_new_one(aac_conn: AACSimulator) -> None:
    ti = _ti()
    with pytest.raises(AACRunTimeoutError, match="canceled it"):
        _op("plan", ti, timeout=0.2).execute(context_for(ti))
    ti.retry()
    assert (
        _op("plan", ti, wait_for_completion=False).execute(context_for(ti))
        != aac_conn.runs.starts()[0].run_id
    )
    assert aac_conn.stats()["runs_started"] == 2


@pytest.mark.aac_simulator(run_duration=0.2)
def test_clearing_the_task_starts_a_new_run_even_after_success(aac_conn: AACSimulator) -> None:
    ti = _ti()
    first = _op("plan", ti).execute(context_for(ti))
    ti.retry()
    assert _op("plan", ti).execute(context_for(ti)) == first  # a retry: the run is done
    ti.clear()
    second = _op("plan", ti).execute(context_for(ti))
    assert second != first and aac_conn.stats()["runs_started"] == 2


@pytest.mark.aac_simulator(run_duration=30)
def test_resume_false_starts_a_run_per_try(aac_conn: AACSimulator) -> None:
    ti = _ti()
    _op("plan", ti, wait_for_completion=False, resume=False).execute(context_for(ti))
    ti.retry()
    _op("plan", ti, wait_for_completion=False, resume=False).execute(context_for(ti))
    assert aac_conn.stats()["runs_started"] == 2
    assert ti.state_store.values == {}


@pytest.mark.aac_simulator(run_duration=30)
def test_a_different_target_after_a_retry_is_a_new_run(aac_conn: AACSimulator) -> None:
    aac_conn.add_plan(7)
    ti = _ti()
    _op("plan", ti, wait_for_completion=False).execute(context_for(ti))
    ti.retry()
    _op("plan", ti, wait_for_completion=False, plan_id=7).execute(context_for(ti))
    assert [(s.target) for s in aac_conn.runs.starts()] == [1, 7]


@pytest.mark.aac_simulator(run_duration=30)
def test_the_run_id_is_persisted_before_any_waiting(aac_conn: AACSimulator) -> None:
    ti = _ti()
    run_id = _op("plan", ti, wait_for_completion=False).execute(context_for(ti))
    record = RunRecord.from_json(ti.state_store.values[RECORD_KEY])
    assert record is not None
    assert (record.kind, record.target, record.run_id, record.try_number, record.generation) == (
        "plan",
        1,
        run_id,
        1,
        ti.max_tries,
    )
    assert record.execution_id == aac_conn.runs.starts()[0].execution_id
    assert "token" not in json.dumps(ti.state_store.values).lower()


@pytest.mark.aac_simulator(run_duration=30)
def test_a_try_that_died_before_recording_the_run_id_does_not_run_twice(aac_conn: AACSimulator) -> None:
    """Try 1 wrote its execution id, sent the POST, and died before it could record the answer."""
    ti = _ti()
    context = context_for(ti)
    pending = RunRecord("plan", 1, "exec-from-try-1", ti.max_tries, try_number=1)
    ti.state_store.set(RECORD_KEY, pending.to_json())
    AACHook().request("POST", "/v4/plans/1/run", headers={EXECUTION_ID_HEADER: pending.execution_id})
    ti.retry()
    with pytest.raises(
        AACRunOutcomeUnknownError, match="an earlier try of this task already started the run"
    ):
        _op("plan", ti).execute(context)
    assert aac_conn.stats()["runs_started"] == 1


@pytest.mark.aac_simulator(run_duration=0.2)
def test_a_try_that_died_before_its_post_reached_aac_is_started_by_the_retry(aac_conn: AACSimulator) -> None:
    ti = _ti()
    pending = RunRecord("job_group", 100, "exec-never-sent", ti.max_tries, try_number=1)
    ti.state_store.set(RECORD_KEY, pending.to_json())
    ti.retry()
    run_id = _op("job_group", ti).execute(context_for(ti))
    (start,) = aac_conn.runs.starts()
    assert (start.run_id, start.execution_id) == (run_id, "exec-never-sent")


async def _event(trigger: AACRunTrigger) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("no event")


@pytest.mark.aac_simulator(run_duration=1.0)
@pytest.mark.parametrize("kind", list(TARGETS))
def test_deferrable_retry_defers_on_the_same_run(aac_conn: AACSimulator, kind: str) -> None:
    ti = _ti()
    with pytest.raises(TaskDeferred) as first:
        _op(kind, ti, deferrable=True).execute(context_for(ti))
    run_id = ti.xcom["run_id"]
    ti.retry()  # e.g. the triggerer lost the trigger and the task was failed by a heartbeat timeout
    with pytest.raises(TaskDeferred) as second:
        _op(kind, ti, deferrable=True).execute(context_for(ti))
    assert ti.xcom["run_id"] == run_id
    _, kwargs = second.value.trigger.serialize()
    assert kwargs["run_id"] == run_id == first.value.trigger.serialize()[1]["run_id"]
    event = asyncio.run(asyncio.wait_for(_event(AACRunTrigger(**kwargs)), 15))
    assert _op(kind, ti, deferrable=True).execute_complete(context_for(ti), event) == run_id
    assert aac_conn.stats()["runs_started"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_a_store_that_cannot_be_written_costs_crash_safety_not_the_run(aac_conn: AACSimulator) -> None:
    class Broken:
        def get(self, key: str, default: Any = None) -> Any:
            return None

        def set(self, key: str, value: Any, **kwargs: Any) -> None:
            raise RuntimeError("execution API down")

    ti = _ti()
    run_id = _op("plan", ti, wait_for_completion=False).execute({"ti": ti, "task_state_store": Broken()})
    assert run_id == aac_conn.runs.starts()[0].run_id


def test_before_airflow_3_3_the_record_goes_to_a_variable_named_after_the_task_instance() -> None:
    ti = FakeTI(task_id="run_plan")
    store = store_for({"ti": ti})
    assert isinstance(store, VariableStore)
    assert store.key.startswith(VARIABLE_PREFIX) and len(store.key) <= 250
    assert store.key == VariableStore(ti.dag_id, ti.run_id, "run_plan", -1).key
    assert store.key != VariableStore(ti.dag_id, ti.run_id, "run_plan", 0).key
    assert store.key != VariableStore(ti.dag_id, ti.run_id + "x", "run_plan", -1).key
    assert "run_plan" in store.description and ti.run_id in store.description
    assert store_for(context_for(ti)).where == "the task state store"


def test_records_from_another_version_or_shape_are_ignored() -> None:
    assert RunRecord.from_json({"version": 99, "kind": "plan"}) is None
    assert RunRecord.from_json("5001") is None
    assert RunRecord.from_json({"version": 1, "kind": "plan"}) is None
    record = RunRecord("flow", 10, "e", 3, 2, 9001, (7001, 7002))
    assert RunRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
