"""What the run operators send and what AAC's start answers may refuse, against the simulator.

MissingFlowReferences, runFlow's subsets, overrides, Spark options and ``runAsync``, the
slow synchronous runFlow answer that a retry turns into a 304, and runs found by name.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_provider_aac.compat import AirflowFailException
from airflow_provider_aac.errors import (
    AACApiError,
    AACConfigError,
    AACPlanInvalidError,
    AACRunError,
    AACRunOutcomeUnknownError,
    AACRunTargetLookupError,
)
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.aac import AACRunFlowOperator, AACRunJobGroupOperator, AACRunPlanOperator
from airflow_provider_aac.runs import RunKind, cancel
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.operators.aac_env import FakeTI, aac_conn, context_for, fails_for_good, start_run, status_of

__all__ = ["aac_conn"]

FAST: dict[str, Any] = {"poll_interval": 0.05}


def _task_id() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- MissingFlowReferences


@pytest.mark.aac_simulator(run_duration=0.5)
@pytest.mark.parametrize("by", ["id", "name"])
def test_a_plan_with_deleted_references_fails_at_once_and_its_snapshot_run_is_canceled(
    aac_conn: AACSimulator, by: str
) -> None:
    aac_conn.add_plan(3, name="Plan with deleted flows", missing_flow_references=True)
    target = {"plan_id": 3} if by == "id" else {"plan_name": "Plan with deleted flows"}
    op = AACRunPlanOperator(task_id=_task_id(), retries=2, **target, **FAST)
    ti = FakeTI()
    started = time.monotonic()
    with pytest.raises(AACPlanInvalidError) as caught:
        op.execute(context_for(ti))
    assert time.monotonic() - started < 5
    assert isinstance(caught.value, AirflowFailException), "retrying cannot fix a plan: no retries"
    message = str(caught.value)
    assert "AAC plan 3" in message and "MissingFlowReferences" in message
    assert "fix or remove the tasks" in message
    if by == "name":
        assert "'Plan with deleted flows'" in message
    [start] = aac_conn.runs.starts("plan", 3)
    assert status_of("plan", start.run_id) == "Canceled"
    assert f"canceled its snapshot run {start.run_id}" in message
    assert ti.xcom["plan_id"] == 3


@pytest.mark.aac_simulator(run_duration=0.5)
def test_a_valid_plan_is_not_affected(aac_conn: AACSimulator) -> None:
    op = AACRunPlanOperator(task_id=_task_id(), plan_id=1, **FAST)
    run_id = op.execute(context_for())
    assert status_of("plan", run_id) == "Complete"
    assert aac_conn.stats()["runs_canceled"] == 0


# --------------------------------------------------------------------------- runFlow options


@pytest.mark.aac_simulator(run_duration=0.5)
def test_flow_subsets_overrides_and_spark_options_reach_aac(aac_conn: AACSimulator) -> None:
    aac_conn.add_flow(20, name="Regional flow", outputs=3)
    op = AACRunFlowOperator(
        task_id=_task_id(),
        flow_id=20,
        wrangled_dataset_ids=["20002", 20003],
        overrides={"Recipe 20002": {"profiler": True}},
        spark_options={"spark.executor.memory": "4GB", "spark.executor.cores": 2},
        run_parameters={"overrides": {"data": [{"key": "region", "value": "EU"}]}},
        **FAST,
    )
    ti = FakeTI()
    run_id = op.execute(context_for(ti))
    [start] = aac_conn.runs.starts("flow", 20)
    assert start.run_id == run_id
    assert start.body == {
        "wrangledDatasetIds": [20002, 20003],
        "overrides": {"Recipe 20002": {"profiler": True}},
        "sparkOptions": [
            {"key": "spark.executor.memory", "value": "4GB"},
            {"key": "spark.executor.cores", "value": "2"},
        ],
        "runParameters": {"overrides": {"data": [{"key": "region", "value": "EU"}]}},
    }
    assert start.query == {"runAsync": ["true"]}
    # The asynchronous answer names no job group: the operator lists them, one per output run.
    groups = ti.xcom["job_group_ids"]
    assert len(groups) == 2
    hook = AACHook()
    recipes = {hook.request("GET", f"/v4/jobGroups/{g}").data["wrangledDataset"]["id"] for g in groups}
    assert recipes == {20002, 20003}


@pytest.mark.aac_simulator(run_duration=0.5)
def test_a_recipe_that_is_not_in_the_flow_is_refused_by_aac(aac_conn: AACSimulator) -> None:
    op = AACRunFlowOperator(task_id=_task_id(), flow_id=10, wrangled_dataset_ids=[999], **FAST)
    with fails_for_good(AACApiError, match="wrangledDatasetIds") as caught:
        op.execute(context_for())
    assert caught.value.error.retryable is False
    assert aac_conn.runs.starts("flow", 10) == []


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("wrangled_dataset_ids", [], "non-empty list of recipe ids"),
        ("wrangled_dataset_ids", "3", "non-empty list of recipe ids"),
        ("wrangled_dataset_ids", [0], "positive integer"),
        ("overrides", {"recipe": True}, "map recipe names"),
        ("overrides", ["x"], "map recipe names"),
        ("spark_options", {"spark.executor.memory": None}, "string or a number"),
        ("spark_options", [{"key": "a"}], "non-empty dict of Spark settings"),
        ("spark_options", {"bad key": "1"}, "Spark setting names"),
        ("run_parameters", [1], "run_parameters must be a dict"),
        ("run_async", "yes", "run_async must be True or False"),
    ],
)
def test_bad_flow_options_are_rejected_when_the_dag_is_parsed(field: str, value: Any, words: str) -> None:
    with pytest.raises(AACConfigError, match=words):
        AACRunFlowOperator(task_id=_task_id(), flow_id=10, **{field: value})


def test_templated_flow_options_wait_for_rendering() -> None:
    op = AACRunFlowOperator(
        task_id=_task_id(),
        flow_name="{{ params.flow }}",
        wrangled_dataset_ids=["{{ params.recipe }}"],
        spark_options="{{ params.spark }}",
    )
    assert {"flow_name", "wrangled_dataset_ids", "overrides", "spark_options"} <= set(op.template_fields)


@pytest.mark.aac_simulator(run_duration=0.5)
def test_a_slow_synchronous_answer_is_the_304_trap_and_run_async_avoids_it(aac_conn: AACSimulator) -> None:
    """AAC's default (runAsync=false) answers once the job groups exist; slower than the
    request timeout, the resent request gets 304 and the task cannot name its run."""
    aac_conn.add_flow(21, name="Big flow", sync_answer_delay=2.5)
    synchronous = AACRunFlowOperator(
        task_id=_task_id(), flow_id=21, run_async=False, request_timeout=1, **FAST
    )
    with pytest.raises(AACRunOutcomeUnknownError, match="AAC answered 304"):
        synchronous.execute(context_for())
    assert len(aac_conn.runs.starts("flow", 21)) == 1, "the run started; only its answer was late"

    default = AACRunFlowOperator(task_id=_task_id(), flow_id=21, request_timeout=1, **FAST)
    ti = FakeTI()
    run_id = default.execute(context_for(ti))
    assert status_of("flow", run_id) == "Complete"
    assert [s.run_id for s in aac_conn.runs.starts("flow", 21)][1:] == [run_id]
    assert ti.xcom["job_group_ids"], "the job groups were listed after the quick answer"


# --------------------------------------------------------------------------- names


@pytest.mark.aac_simulator(run_duration=0.3)
def test_plans_flows_and_recipes_are_found_by_exact_name(aac_conn: AACSimulator) -> None:
    aac_conn.add_wrangled_dataset(102, name="Clean orders")
    aac_conn.add_plan(6, name="Daily sales (copy)")
    cases = [
        (AACRunPlanOperator, {"plan_name": "Daily sales"}, "plan_id", 1, "plan"),
        (AACRunFlowOperator, {"flow_name": "Sales flow"}, "flow_id", 10, "flow"),
        (
            AACRunJobGroupOperator,
            {"wrangled_dataset_name": "Clean orders"},
            "wrangled_dataset_id",
            102,
            "job_group",
        ),
    ]
    for cls, by_name, id_field, expected, kind in cases:
        ti = FakeTI()
        run_id = cls(task_id=_task_id(), **by_name, **FAST).execute(context_for(ti))
        assert ti.xcom[id_field] == expected
        assert [s.target for s in aac_conn.runs.starts(kind) if s.run_id == run_id] == [expected]


@pytest.mark.aac_simulator(run_duration=0.3)
def test_no_match_or_several_fail_at_once_with_the_candidates(aac_conn: AACSimulator) -> None:
    aac_conn.add_plan(4, name="Twin")
    aac_conn.add_plan(5, name="Twin")
    with fails_for_good(AACRunTargetLookupError) as several:
        AACRunPlanOperator(task_id=_task_id(), plan_name="Twin", retries=3, **FAST).execute(context_for())
    assert "2 AAC plans are named 'Twin'" in str(several.value)
    assert "(id 4)" in str(several.value) and "(id 5)" in str(several.value)

    with fails_for_good(AACRunTargetLookupError) as none:
        AACRunFlowOperator(task_id=_task_id(), flow_name="sales flow", **FAST).execute(context_for())
    assert "No AAC flow is named 'sales flow'" in str(none.value)
    assert aac_conn.stats()["runs_started"] == 0


# --------------------------------------------------------------------------- cancel


@pytest.mark.aac_simulator(run_duration=30)
def test_a_refused_cancel_names_the_role_that_may_cancel(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    aac_conn.fail_api(403, path_prefix=f"/v4/planSnapshotRuns/{run_id}/cancel", method="POST")
    with pytest.raises(AACApiError, match="needs the Editor role") as caught:
        cancel(AACHook(), RunKind.PLAN, run_id)
    assert caught.value.status_code == 403
    assert status_of("plan", run_id) != "Canceled"


@pytest.mark.aac_simulator(run_duration=30)
def test_a_cancel_that_left_jobs_running_is_an_error_naming_the_run(aac_conn: AACSimulator) -> None:
    aac_conn.add_plan(9, name="Stubborn plan", jobs_survive_cancel=True)
    run_id = start_run("plan", 9)
    with pytest.raises(
        AACRunError, match=rf"AAC plan run {run_id} was asked to cancel, .* \(failedToCancelSomeJobs\)"
    ):
        cancel(AACHook(), RunKind.PLAN, run_id)
    assert cancel(AACHook(), RunKind.PLAN, start_run("plan", 1)) != []
