"""The operators against the simulator over real HTTP.

Most tests call ``execute`` in-process with a minimal context; one test runs a whole DAG
with ``dag.test()`` in a fresh interpreter on a migrated SQLite AIRFLOW_HOME, so the
real task runner renders templates, stores XComs and links, runs the deferrable path
inline, and refreshes a short-lived access token in the metadata DB mid-wait.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_aac.core.api import EXECUTION_ID_HEADER
from airflow_provider_aac.errors import (
    AACConfigError,
    AACNotFoundError,
    AACResponseCheckError,
    AACRunError,
    AACRunFailedError,
    AACRunOutcomeUnknownError,
    AACRunTimeoutError,
)
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.aac import (
    AACApiOperator,
    AACRefreshTokenOperator,
    AACRunFlowOperator,
    AACRunJobGroupOperator,
    AACRunOperatorBase,
    AACRunPlanOperator,
    execution_id,
)
from airflow_provider_aac.runs import RunKind
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.triggers.aac import AACRunTrigger
from tests.operators.aac_env import FakeTI, aac_conn, context_for, fails_for_good, route_through, status_of
from tests.support.fault_fixtures import FaultProxyFactory
from tests.support.processes import poll_until

__all__ = ["aac_conn"]

FAST: dict[str, Any] = {"poll_interval": 0.05}


def _task_id() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


def _plan(**kwargs: Any) -> AACRunPlanOperator:
    return AACRunPlanOperator(task_id=_task_id(), **{"plan_id": 1, **FAST, **kwargs})


def _flow(**kwargs: Any) -> AACRunFlowOperator:
    return AACRunFlowOperator(task_id=_task_id(), **{"flow_id": 10, **FAST, **kwargs})


def _job(**kwargs: Any) -> AACRunJobGroupOperator:
    return AACRunJobGroupOperator(task_id=_task_id(), **{"wrangled_dataset_id": 100, **FAST, **kwargs})


RUNNERS = {"plan": _plan, "flow": _flow, "job_group": _job}
GOOD = {"plan": {"plan_id": 1}, "flow": {"flow_id": 10}, "job_group": {"wrangled_dataset_id": 100}}
BAD = {"plan": {"plan_id": 2}, "flow": {"flow_id": 11}, "job_group": {"wrangled_dataset_id": 101}}
URL_PART = {"plan": "plan-runs", "flow": "flow-runs", "job_group": "jobs"}


# --------------------------------------------------------------------------- poll mode


@pytest.mark.aac_simulator(run_duration=0.5)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_run_waits_until_complete_and_publishes_the_run_first(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    op = RUNNERS[kind]()
    calls_before = aac_conn.stats()["api_calls"]
    run_id = op.execute(context_for(ti))
    assert status_of(kind, run_id) == "Complete"
    assert ti.xcom["run_id"] == run_id
    assert ti.xcom["run_url"] == f"{aac_conn.base_url}/{URL_PART[kind]}/{run_id}"
    assert aac_conn.stats()["runs_started"] == 1
    assert aac_conn.stats()["api_calls"] - calls_before >= 4  # it polled while statuses moved on
    if kind == "flow":
        assert ti.xcom["job_group_ids"] and all(isinstance(i, int) for i in ti.xcom["job_group_ids"])


@pytest.mark.aac_simulator(run_duration=0.3)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_failed_run_fails_the_task_with_aacs_message_and_url(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    with pytest.raises(AACRunFailedError) as caught:
        RUNNERS[kind](**BAD[kind]).execute(context_for(ti))
    text = str(caught.value)
    assert "ended Failed" in text and "failed (simulated)" in text
    assert ti.xcom["run_url"] in text and str(ti.xcom["run_id"]) in text
    assert "Open the run in AAC" in text


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_no_wait_returns_at_once(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    run_id = RUNNERS[kind](wait_for_completion=False).execute(context_for(ti))
    assert ti.xcom["run_id"] == run_id
    assert status_of(kind, run_id) == "Created"


@pytest.mark.aac_simulator(run_duration=0.5)
def test_unknown_status_keeps_polling(
    aac_conn: AACSimulator, monkeypatch: pytest.MonkeyPatch, fault_proxy_factory: FaultProxyFactory
) -> None:
    proxy = fault_proxy_factory(aac_conn.base_url)
    route_through(monkeypatch, proxy.base_url)
    unknown = proxy.on("GET", "/v4/planSnapshotRuns/", times=2).respond(200, {"status": "SomethingNew"})
    run_id = _plan(poll_interval=0.01).execute(context_for())
    assert unknown.count == 2 and status_of("plan", run_id) == "Complete"


def test_request_bodies(aac_conn: AACSimulator) -> None:
    plan = _plan(plan_node_overrides=[{"handle": "n1", "value": 1}])
    assert plan._body(1) == {"planNodeOverrides": [{"handle": "n1", "value": 1}]}
    assert _plan()._body(1) is None
    assert _flow()._body(10) is None
    assert _flow(run_parameters={"overrides": {"data": []}})._body(10) == {
        "runParameters": {"overrides": {"data": []}}
    }
    job = _job(overrides={"execution": "photon"}, run_parameters={"overrides": {"data": []}})
    assert job._body(100) == {
        "wrangledDataset": {"id": 100},
        "overrides": {"execution": "photon"},
        "runParameters": {"overrides": {"data": []}},
    }
    assert _job()._body(100) == {"wrangledDataset": {"id": 100}}
    # The simulator validates the shapes too.
    _plan(plan_node_overrides=[], wait_for_completion=False).execute(context_for())
    job.wait_for_completion = False
    job.execute(context_for())
    flow = _flow(run_parameters={"overrides": {"data": []}}, wait_for_completion=False)
    flow.execute(context_for())


# --------------------------------------------------------------------------- timeouts and kills


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_timeout_cancels_the_run_and_fails(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    started = time.monotonic()
    with pytest.raises(AACRunTimeoutError, match=r"did not finish after 0\.3 s.*canceled it"):
        RUNNERS[kind](timeout=0.3).execute(context_for(ti))
    assert time.monotonic() - started < 3
    assert status_of(kind, ti.xcom["run_id"]) == "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_timeout_without_cancel_leaves_the_run_running(aac_conn: AACSimulator) -> None:
    ti = FakeTI()
    with pytest.raises(AACRunTimeoutError, match="may still be running"):
        _plan(timeout=0.2, cancel_on_timeout=False).execute(context_for(ti))
    assert status_of("plan", ti.xcom["run_id"]) != "Canceled"


def _execute_in_thread(op: AACRunOperatorBase, ti: FakeTI) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = op.execute(context_for(ti))
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_on_kill_cancels_the_run(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    op = RUNNERS[kind](poll_interval=0.05)
    thread, outcome = _execute_in_thread(op, ti)
    run_id = poll_until(lambda: ti.xcom.get("run_id"), timeout=10, interval=0.02, what="the run to start")
    op.on_kill()
    thread.join(10)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), AACRunFailedError)
    assert "ended Canceled" in str(outcome["error"])
    assert status_of(kind, run_id) == "Canceled"
    assert aac_conn.stats()["runs_canceled"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_on_kill_respects_cancel_on_kill_false_and_a_finished_run(aac_conn: AACSimulator) -> None:
    ti = FakeTI()
    op = _plan(cancel_on_kill=False, wait_for_completion=False)
    run_id = op.execute(context_for(ti))
    op.on_kill()
    assert status_of("plan", run_id) != "Canceled"
    _plan().on_kill()  # nothing started: nothing to cancel
    assert aac_conn.stats()["runs_canceled"] == 0


# --------------------------------------------------------------------------- exactly one run


@pytest.mark.aac_simulator(run_duration=0.2)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_rate_limited_run_post_starts_exactly_one_run(aac_conn: AACSimulator, kind: str) -> None:
    aac_conn.fail_api(429, times=1, method="POST", retry_after=0.2)
    run_id = RUNNERS[kind]().execute(context_for())
    assert aac_conn.stats()["rate_limited"] == 1
    assert aac_conn.stats()["runs_started"] == 1
    assert status_of(kind, run_id) == "Complete"


@pytest.mark.aac_simulator(run_duration=0.2)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_server_error_on_run_post_is_retried_safely_with_an_execution_id(
    aac_conn: AACSimulator, kind: str
) -> None:
    aac_conn.fail_api(503, times=1, method="POST")
    run_id = RUNNERS[kind]().execute(context_for())
    assert aac_conn.stats()["runs_started"] == 1
    (start,) = aac_conn.runs.starts()
    assert start.run_id == run_id and start.execution_id


@pytest.mark.aac_simulator(run_duration=30)
@pytest.mark.parametrize(
    ("kind", "path", "body"),
    [
        ("plan", "/v4/plans/1/run", None),
        ("flow", "/v4/flows/10/run", None),
        ("job_group", "/v4/jobGroups", {"wrangledDataset": {"id": 100}}),
    ],
)
def test_lost_answer_304_fails_without_a_second_run(
    aac_conn: AACSimulator, kind: str, path: str, body: Any
) -> None:
    ti = FakeTI()
    context = context_for(ti)
    target = {"plan": 1, "flow": 10, "job_group": 100}[kind]
    # The same task try already sent this request (its answer "was lost").
    AACHook().request(
        "POST", path, json=body, headers={EXECUTION_ID_HEADER: execution_id(context, RunKind(kind), target)}
    )
    with pytest.raises(
        AACRunOutcomeUnknownError, match=r"answered 304.*did not start another.*Find the run in AAC"
    ):
        RUNNERS[kind]().execute(context)
    assert aac_conn.stats()["runs_started"] == 1
    assert "run_id" not in ti.xcom


@pytest.mark.aac_simulator(run_duration=0.3)
def test_transient_errors_while_waiting_are_tolerated(aac_conn: AACSimulator) -> None:
    # Five 429s exhaust the hook's own retries: the first status check fails, the next succeeds.
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    assert _plan().execute(context_for()) > 0
    assert aac_conn.stats()["rate_limited"] == 5


@pytest.mark.aac_simulator(run_duration=30)
def test_too_many_transient_errors_while_waiting_fail_without_cancelling(aac_conn: AACSimulator) -> None:
    aac_conn.fail_api(429, times=5, path_prefix="/v4/planSnapshotRuns/", retry_after=0)
    ti = FakeTI()
    op = _plan()
    op.max_poll_errors = 1
    with pytest.raises(AACRunError, match=r"Gave up following AAC plan run.*check it in AAC"):
        op.execute(context_for(ti))
    assert status_of("plan", ti.xcom["run_id"]) != "Canceled"


def test_execution_id_is_stable_per_try_and_differs_between_tries() -> None:
    ti = FakeTI()
    same = execution_id(context_for(ti), RunKind.PLAN, 1)
    assert same == execution_id(context_for(ti), RunKind.PLAN, 1)
    assert uuid.UUID(same)
    ti.try_number = 2
    assert execution_id(context_for(ti), RunKind.PLAN, 1) != same
    ti.try_number = 1
    assert execution_id(context_for(ti), RunKind.FLOW, 1) != same


def test_unknown_plan_fails_at_once(aac_conn: AACSimulator) -> None:
    with fails_for_good(AACNotFoundError, match=r"404.*Plan 424242 not found.*check the id"):
        _plan(plan_id=424242).execute(context_for())
    assert aac_conn.stats()["api_calls"] == 1


# --------------------------------------------------------------------------- deferrable


@pytest.mark.aac_simulator(run_duration=0)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_a_run_already_ended_at_the_check_before_deferring_finishes_without_deferring(
    aac_conn: AACSimulator, kind: str
) -> None:
    """No trigger that would fire right after the deferral, where Airflow's scheduler can fail
    the task (apache/airflow#23824, #66374, #67287, #72716)."""
    ti = FakeTI()
    run_id = RUNNERS[kind](deferrable=True).execute(context_for(ti))
    assert run_id == ti.xcom["run_id"] and status_of(kind, run_id) == "Complete"


@pytest.mark.aac_simulator(run_duration=0.6)
@pytest.mark.parametrize("kind", ["plan", "flow", "job_group"])
def test_deferrable_run_through_its_trigger(aac_conn: AACSimulator, kind: str) -> None:
    ti = FakeTI()
    op = RUNNERS[kind](deferrable=True, timeout=60)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context_for(ti))
    run_id = ti.xcom["run_id"]
    assert ti.xcom["run_url"].endswith(f"/{run_id}")
    trigger = deferred.value.trigger
    assert isinstance(trigger, AACRunTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert kwargs["run_id"] == run_id and kwargs["kind"] == kind and kwargs["poll_interval"] == 0.05
    assert before + 60 <= kwargs["end_time"] <= time.time() + 60
    assert deferred.value.timeout is not None and deferred.value.timeout.total_seconds() > 60
    # The operator checked the run just before deferring; the trigger's first poll waits an interval.
    assert before + 0.05 <= kwargs["first_poll_at"] <= time.time() + 0.05
    assert deferred.value.kwargs["target"] == GOOD[kind][op.id_field]
    if kind == "flow":
        assert kwargs["job_group_ids"] == ti.xcom["job_group_ids"]
    rebuilt = AACRunTrigger(**json.loads(json.dumps(kwargs)))

    async def first_event() -> dict[str, Any]:
        async for event in rebuilt.run():
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(first_event())
    resumed = RUNNERS[kind](deferrable=True)  # a fresh worker process knows only the event
    assert getattr(resumed, deferred.value.method_name)(context_for(ti), event=event) == run_id
    assert aac_conn.stats()["runs_started"] == 1


@pytest.mark.aac_simulator(run_duration=0)
def test_deferrable_run_that_already_ended_does_not_defer(aac_conn: AACSimulator) -> None:
    assert _plan(deferrable=True).execute(context_for()) > 0
    with pytest.raises(AACRunFailedError):
        _plan(plan_id=2, deferrable=True).execute(context_for())


def test_execute_complete_turns_events_into_outcomes() -> None:
    op = _flow(deferrable=True)
    base = {"kind": "flow", "run_id": 9001, "run_url": "http://aac/f/9001", "canceled": False}
    assert op.execute_complete(context_for(), {**base, "status": "success", "message": "ok"}) == 9001
    failed = {**base, "status": "failed", "run_status": "Failed", "aac_message": "step 3 broke"}
    with pytest.raises(
        AACRunFailedError, match=r"flow run 9001 ended Failed: step 3 broke\. See http://aac/f/9001"
    ):
        op.execute_complete(context_for(), failed)
    with pytest.raises(AACRunTimeoutError, match="did not finish"):
        op.execute_complete(
            context_for(), {**base, "status": "timeout", "message": "AAC flow run 9001 did not finish."}
        )
    with pytest.raises(AACRunError, match="Gave up"):
        op.execute_complete(context_for(), {**base, "status": "error", "message": "Gave up following it."})


# --------------------------------------------------------------------------- templates and bad input


@pytest.mark.aac_simulator(run_duration=0.2)
def test_templated_fields_render_then_validate(aac_conn: AACSimulator) -> None:
    op = AACRunPlanOperator(
        task_id=_task_id(),
        plan_id="{{ params.plan }}",
        plan_node_overrides=[{"handle": "{{ params.handle }}"}],
        **FAST,
    )
    assert set(op.template_fields) >= {"plan_id", "plan_node_overrides", "aac_conn_id"}
    context = context_for(params={"plan": 1, "handle": "node-a"})
    op.render_template_fields(context)
    assert op.plan_id == "1" and op.plan_node_overrides == [{"handle": "node-a"}]
    assert op.execute(context) > 0

    bad = AACRunFlowOperator(task_id=_task_id(), flow_id="{{ params.flow }}", **FAST)
    context = context_for(params={"flow": "abc"})
    bad.render_template_fields(context)
    with fails_for_good(AACConfigError, match="flow_id must be a positive integer AAC id, not 'abc'"):
        bad.execute(context)
    assert aac_conn.stats()["runs_started"] == 1


@pytest.mark.parametrize("value", ["abc", 0, -1, True, "0", 4.5])
@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (AACRunPlanOperator, "plan_id"),
        (AACRunFlowOperator, "flow_id"),
        (AACRunJobGroupOperator, "wrangled_dataset_id"),
    ],
)
def test_bad_ids_are_rejected_when_the_dag_is_parsed(cls: type, field: str, value: object) -> None:
    with pytest.raises(AACConfigError, match=f"{field} must be a positive integer AAC id"):
        cls(task_id=_task_id(), **{field: value})


@pytest.mark.parametrize(
    ("cls", "field", "name_field"),
    [
        (AACRunPlanOperator, "plan_id", "plan_name"),
        (AACRunFlowOperator, "flow_id", "flow_name"),
        (AACRunJobGroupOperator, "wrangled_dataset_id", "wrangled_dataset_name"),
    ],
)
def test_an_id_or_a_name_is_required_but_not_both(cls: type, field: str, name_field: str) -> None:
    with pytest.raises(AACConfigError, match=f"exactly one of {field} and {name_field}, not neither"):
        cls(task_id=_task_id())
    with pytest.raises(AACConfigError, match=f"exactly one of {field} and {name_field}, not both"):
        cls(task_id=_task_id(), **{field: 1, name_field: "x"})
    with pytest.raises(AACConfigError, match=f"{name_field} must be the non-empty name"):
        cls(task_id=_task_id(), **{name_field: "  "})


@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
@pytest.mark.parametrize("value", [0, -1, -0.5, True, "10"])
def test_bad_poll_interval_or_timeout_is_rejected(name: str, value: object) -> None:
    with pytest.raises(AACConfigError, match=f"{name} must be a number of seconds greater than 0"):
        _plan(**{name: value})


# --------------------------------------------------------------------------- AACApiOperator


def test_api_operator_returns_the_decoded_answer(aac_conn: AACSimulator) -> None:
    op = AACApiOperator(task_id=_task_id(), endpoint="/v4/people/current")
    assert op.execute(context_for())["email"] == "sim@example.com"
    listing = AACApiOperator(task_id=_task_id(), endpoint="/v4/plans", query_params={"limit": 1})
    assert len(listing.execute(context_for())["data"]) == 1
    post = AACApiOperator(task_id=_task_id(), method="post", endpoint="/v4/plans/1/run", json={})
    assert post.execute(context_for())["planSnapshotRunId"] > 0


def test_api_operator_response_check(aac_conn: AACSimulator) -> None:
    ok = AACApiOperator(
        task_id=_task_id(), endpoint="/v4/plans", response_check=lambda data: bool(data["data"])
    )
    assert len(ok.execute(context_for())["data"]) >= 1
    rejecting = AACApiOperator(task_id=_task_id(), endpoint="/v4/plans", response_check=lambda data: False)
    with pytest.raises(AACResponseCheckError, match="response_check rejected AAC's answer to GET /v4/plans"):
        rejecting.execute(context_for())


def test_api_operator_errors_carry_aacs_message(aac_conn: AACSimulator) -> None:
    with fails_for_good(AACNotFoundError, match="Plan run 424242 not found") as caught:
        AACApiOperator(task_id=_task_id(), endpoint="/v4/planSnapshotRuns/424242").execute(context_for())
    assert caught.value.error.status_code == 404


@pytest.mark.parametrize(
    "endpoint", ["/v3/plans", "v4/plans", "https://evil.example/v4/plans", "/v4/../as/token", ""]
)
def test_api_operator_rejects_endpoints_outside_v4(endpoint: str) -> None:
    with pytest.raises(AACConfigError, match=r"must start with|plain path"):
        AACApiOperator(task_id=_task_id(), endpoint=endpoint)


def test_api_operator_validates_templated_endpoint_and_method_at_execute(aac_conn: AACSimulator) -> None:
    op = AACApiOperator(task_id=_task_id(), endpoint="{{ params.path }}", method="{{ params.verb }}")
    context = context_for(params={"path": "/v3/people/current", "verb": "GET"})
    op.render_template_fields(context)
    with fails_for_good(AACConfigError, match="must start with '/v4/'"):
        op.execute(context)
    with pytest.raises(AACConfigError, match="method must be one of"):
        AACApiOperator(task_id=_task_id(), endpoint="/v4/plans", method="FETCH")
    assert aac_conn.stats()["api_calls"] == 0


def test_api_operator_does_not_take_dag_params_as_query(aac_conn: AACSimulator) -> None:
    op = AACApiOperator(task_id=_task_id(), endpoint="/v4/plans", params={"plan": 1})
    assert op.query_params is None


def test_refresh_operator_refuses_an_unwritable_connection(aac_conn: AACSimulator) -> None:
    with pytest.raises(AACConfigError, match="AIRFLOW_CONN_AAC_DEFAULT"):
        AACRefreshTokenOperator(task_id=_task_id(), force=True).execute(context_for())
    assert aac_conn.stats()["token_requests"] == 0


# --------------------------------------------------------------------------- the real task runner

E2E_DAG = """
from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from airflow_provider_aac.operators.aac import (
    AACApiOperator, AACRefreshTokenOperator, AACRunFlowOperator, AACRunJobGroupOperator, AACRunPlanOperator,
)
from airflow_provider_aac.sensors.aac import AACJobGroupSensor, AACPlanRunSensor

CONN = "{conn_id}"
with DAG(
    "{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
    params={{
        "plan_id": 1, "node": "n1", "engine": "photon", "limit": 1,
        "deleted_refs_plan": "Plan with deleted flows", "recipe": "12002", "memory": "4GB",
    }},
    default_args={{"aac_conn_id": CONN}},
) as dag:
    run_plan = AACRunPlanOperator(
        task_id="run_plan", plan_id="{{{{ params.plan_id }}}}",
        plan_node_overrides=[{{"handle": "{{{{ params.node }}}}"}}], poll_interval=0.1, deferrable=True,
    )
    wait_plan = AACPlanRunSensor(
        task_id="wait_plan", plan_snapshot_run_id="{{{{ ti.xcom_pull(task_ids='run_plan', key='run_id') }}}}",
        poke_interval=0.1, timeout=30,
    )
    run_flow = AACRunFlowOperator(task_id="run_flow", flow_id=10, poll_interval=0.1)
    wait_groups = AACJobGroupSensor(
        task_id="wait_groups",
        job_group_id="{{{{ ti.xcom_pull(task_ids='run_flow', key='job_group_ids')[0] }}}}",
        poke_interval=0.1, timeout=30, deferrable=True,
    )
    run_job = AACRunJobGroupOperator(
        task_id="run_job", wrangled_dataset_id=100, overrides={{"execution": "{{{{ params.engine }}}}"}},
        poll_interval=0.1,
    )
    call_api = AACApiOperator(
        task_id="call_api", endpoint="/v4/plans", query_params={{"limit": "{{{{ params.limit }}}}"}},
        response_check=lambda data: len(data["data"]) == 1,
    )
    refresh = AACRefreshTokenOperator(task_id="refresh", force=True)
    broken = AACRunPlanOperator(task_id="broken", plan_id=2, poll_interval=0.1)
    missing_refs = AACRunPlanOperator(
        task_id="missing_refs", plan_name="{{{{ params.deleted_refs_plan }}}}", poll_interval=0.1,
        retries=2, retry_delay=timedelta(seconds=60),
    )
    flow_by_name = AACRunFlowOperator(
        task_id="flow_by_name", flow_name="Regional flow", wrangled_dataset_ids=["{{{{ params.recipe }}}}"],
        overrides={{"Recipe 12002": {{"profiler": True}}}},
        spark_options={{"spark.executor.memory": "{{{{ params.memory }}}}"}}, poll_interval=0.1,
    )
    run_plan >> wait_plan
    run_flow >> wait_groups
"""


@pytest.fixture(scope="module")
def e2e(airflow_sqlite_home: Any) -> Iterator[dict[str, Any]]:
    """One DAG run of every operator and two sensors, with a 1.5 s access token."""
    home = airflow_sqlite_home
    dag_id = f"aac_ops_e2e_{uuid.uuid4().hex[:8]}"
    conn_id = f"aac_e2e_{uuid.uuid4().hex[:8]}"
    path = home.dags_folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(E2E_DAG.format(dag_id=dag_id, conn_id=conn_id)))
    with AACSimulator(access_ttl=1.5, run_duration=1.5) as simulator:
        simulator.add_plan(3, name="Plan with deleted flows", missing_flow_references=True)
        simulator.add_flow(12, name="Regional flow", outputs=2)
        pair = simulator.mint_pair()
        secret = {"host": simulator.base_url, **{k: pair[k] for k in ("access_token", "refresh_token")}}
        run = home.run_dag_file(path, dag_id, connections={conn_id: secret}, timeout=240)
        stored = home.get_connection_extra(conn_id)
        stats = simulator.stats()
        look = simulator.mint_pair()["access_token"]
        plan_runs = {
            start.run_id: requests.get(
                f"{simulator.base_url}/v4/planSnapshotRuns/{start.run_id}",
                headers={"Authorization": f"Bearer {look}"},
                timeout=10,
            ).json()["status"]
            for start in simulator.runs.starts("plan", 3)
        }
        yield {
            "states": run.states,
            "tries": run.tries,
            "durations": run.durations,
            "xcoms": run.xcoms,
            "output": run.output,
            "stats": stats,
            "stored": stored,
            "deleted_refs_plan_runs": plan_runs,
            "flow_starts": simulator.runs.starts("flow", 12),
            "tokens": [
                pair["access_token"],
                pair["refresh_token"],
                stored["access_token"],
                stored["refresh_token"],
            ],
            "base_url": simulator.base_url,
        }
    path.unlink()


def test_dag_end_to_end_states(e2e: dict[str, Any]) -> None:
    expected = {
        name: "success"
        for name in ("run_plan", "wait_plan", "run_flow", "wait_groups", "run_job", "call_api", "refresh")
    }
    assert e2e["states"] == {
        **expected,
        "broken": "failed",
        "missing_refs": "failed",
        "flow_by_name": "success",
    }, e2e["output"][-6000:]
    assert "Plan 'Broken plan' failed (simulated)" in e2e["output"]


def test_dag_end_to_end_xcoms_and_links(e2e: dict[str, Any]) -> None:
    xcoms, base = e2e["xcoms"], e2e["base_url"]
    plan = xcoms["run_plan"]
    assert plan["return_value"] == plan["run_id"]
    assert plan["run_url"] == f"{base}/plan-runs/{plan['run_id']}"
    assert plan["_link_AACRunLink"] == plan["run_url"]  # what the UI's button opens
    flow = xcoms["run_flow"]
    assert flow["run_url"] == f"{base}/flow-runs/{flow['run_id']}" == flow["_link_AACRunLink"]
    assert flow["job_group_ids"] and xcoms["wait_groups"]["run_id"] == flow["job_group_ids"][0]
    assert xcoms["wait_plan"]["run_id"] == plan["run_id"]
    assert xcoms["wait_plan"]["_link_AACRunLink"] == plan["run_url"]
    job = xcoms["run_job"]
    assert job["_link_AACRunLink"] == f"{base}/jobs/{job['run_id']}"
    assert xcoms["call_api"]["return_value"]["data"][0]["id"] == 1
    assert xcoms["broken"]["run_url"].endswith(f"/{xcoms['broken']['run_id']}")
    outcome = xcoms["refresh"]["return_value"]
    assert outcome["refreshed"] is True and outcome["mode"] == "metadata_db"
    assert set(outcome) == {
        "conn_id",
        "mode",
        "generation",
        "refreshed",
        "access_expires_at",
        "seconds_left",
        "refresh_below",
    }


def test_dag_end_to_end_a_plan_with_deleted_references_fails_in_one_try(e2e: dict[str, Any]) -> None:
    """Under ``dag.test()``: retries=2, yet one try, within seconds, the plan named, its run canceled."""
    assert e2e["tries"]["missing_refs"] == 1
    assert float(e2e["durations"]["missing_refs"]) < 10
    [(run_id, status)] = e2e["deleted_refs_plan_runs"].items()
    assert status == "Canceled"
    assert e2e["xcoms"]["missing_refs"]["plan_id"] == 3
    assert "AAC plan 3 ('Plan with deleted flows') cannot run" in e2e["output"]
    assert f"Airflow canceled its snapshot run {run_id}" in e2e["output"]


def test_dag_end_to_end_flow_by_name_with_a_subset(e2e: dict[str, Any]) -> None:
    [start] = e2e["flow_starts"]
    assert e2e["xcoms"]["flow_by_name"]["flow_id"] == 12
    assert start.body == {
        "wrangledDatasetIds": [12002],
        "overrides": {"Recipe 12002": {"profiler": True}},
        "sparkOptions": [{"key": "spark.executor.memory", "value": "4GB"}],
    }
    assert start.query == {"runAsync": ["true"]}
    assert len(e2e["xcoms"]["flow_by_name"]["job_group_ids"]) == 1


def test_dag_end_to_end_tokens_refreshed_mid_wait_and_never_shown(e2e: dict[str, Any]) -> None:
    stats = e2e["stats"]
    # plan, flow, job group, broken plan, the plan with deleted references, the flow by name
    assert stats["runs_started"] == 6
    assert stats["refreshes"] >= 3, stats  # a 1.5 s token across several 1.5 s waits
    assert stats["reuses"] == 0 and stats["families_revoked"] == 0 and stats["api_unauthorized"] == 0
    assert e2e["stored"]["generation"] == stats["refreshes"]
    for token in e2e["tokens"]:
        assert token not in e2e["output"]
        assert token not in json.dumps(e2e["xcoms"])
