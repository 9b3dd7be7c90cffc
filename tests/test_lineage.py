"""OpenLineage: the datasets a run's job groups read and wrote, and the AAC run in a run facet.

The naming and the AAC calls are tested against the simulator in-process; the facets
are tested the way users get them: the OpenLineage provider's listener, on real task
instances run by ``dag.test()``, extracting through its ``ExtractorManager`` and
emitting events to a file transport that the test reads back.
"""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.lineage import DatasetRef, collect, file_ref, table_ref
from airflow_provider_aac.runs import RunKind
from airflow_provider_aac.testing.simulator import AACSimulator, jdbc_table, result_file
from tests.operators.aac_env import aac_conn, start_run
from tests.support.airflow_env import AirflowHome

__all__ = ["aac_conn"]

WAREHOUSE = "postgres://warehouse.sim.example:5432"


def test_table_naming() -> None:
    ref = table_ref(jdbc_table("sales", "orders"))
    assert ref == DatasetRef(
        f"{WAREHOUSE}/analytics.sales.orders", "TABLE", WAREHOUSE, "analytics.sales.orders"
    )
    snowflake = table_ref(
        {
            "vendor": "Snowflake",
            "databaseConnectString": "acme.snowflakecomputing.com/SALES",
            "table": "T",
            "relationalPath": "PUBLIC",
        }
    )
    assert snowflake is not None
    assert (snowflake.physical_namespace, snowflake.physical_name) == (
        "snowflake://acme.snowflakecomputing.com",
        "SALES.PUBLIC.T",
    )
    assert table_ref({"vendor": "postgres"}) is None


def test_file_naming() -> None:
    ref = file_ref(result_file("daily/out.csv"))
    assert ref == DatasetRef(
        "s3://aac-sim-results/daily/out.csv", "FILE", "s3://aac-sim-results", "daily/out.csv"
    )
    local = file_ref({"uri": "/data/out.csv"})
    assert local is not None and (local.physical_namespace, local.physical_name) == ("file", "/data/out.csv")
    assert file_ref({"fileType": "CSV"}) is None


@pytest.mark.aac_simulator(run_duration=0.2)
def test_a_job_groups_inputs_and_outputs(aac_conn: AACSimulator) -> None:
    aac_conn.runs.set_datasets(
        100,
        inputs=[jdbc_table("sales", "orders"), jdbc_table("sales", "customers")],
        files=[result_file("orders/clean.csv")],
        tables=[jdbc_table("reporting", "orders_clean")],
    )
    run_id = start_run("job_group", 100)
    found = collect(AACHook(), RunKind.JOB_GROUP, run_id)
    assert found.namespace == f"aac://{aac_conn.base_url.split('//')[1]}/workspaces/1"
    assert found.job_group_ids == [run_id]
    assert [i.name for i in found.inputs] == [
        f"{WAREHOUSE}/analytics.sales.orders",
        f"{WAREHOUSE}/analytics.sales.customers",
    ]
    assert [o.name for o in found.outputs] == [
        "s3://aac-sim-results/orders/clean.csv",
        f"{WAREHOUSE}/analytics.reporting.orders_clean",
    ]


@pytest.mark.aac_simulator(run_duration=0.2)
def test_a_flow_runs_datasets_come_from_its_job_groups(aac_conn: AACSimulator) -> None:
    started = AACHook().request("POST", "/v4/flows/10/run").data
    groups = [g["id"] for g in started["data"]]
    calls = aac_conn.stats()["api_calls"]
    listed = collect(AACHook(), RunKind.FLOW, started["flowRunId"])
    assert listed.job_group_ids == groups
    assert [o.name for o in listed.outputs] == ["s3://aac-sim-results/recipe-10001/output.csv"]
    assert aac_conn.stats()["api_calls"] - calls == 4  # workspace, flow run's job groups, inputs, outputs
    known = collect(AACHook(), RunKind.FLOW, started["flowRunId"], groups)
    assert known.outputs == listed.outputs and known.inputs == listed.inputs


@pytest.mark.aac_simulator(run_duration=0.2)
def test_a_plan_runs_datasets_come_from_its_flow_runs(aac_conn: AACSimulator) -> None:
    run_id = start_run("plan", 1)
    found = collect(AACHook(), RunKind.PLAN, run_id)
    assert len(found.job_group_ids) == 1
    assert [i.name for i in found.inputs] == [f"{WAREHOUSE}/analytics.public.source_1002"]
    assert [o.name for o in found.outputs] == ["s3://aac-sim-results/recipe-1002/output.csv"]


@pytest.mark.aac_simulator(run_duration=0.2)
def test_file_inputs_that_aac_will_not_list_leave_the_outputs(aac_conn: AACSimulator) -> None:
    aac_conn.runs.set_datasets(101, inputs=[{"uri": "s3://landing/orders.csv"}])
    found = collect(AACHook(), RunKind.JOB_GROUP, start_run("job_group", 101))
    assert found.inputs == [] and [o.name for o in found.outputs] == [
        "s3://aac-sim-results/recipe-101/output.csv"
    ]


def test_lineage_of_an_unknown_run_is_empty_not_an_error(aac_conn: AACSimulator) -> None:
    found = collect(AACHook(), RunKind.FLOW, 424242)
    assert found.job_group_ids == [] and found.inputs == [] and found.outputs == []


# --------------------------------------------------------------------------- the OpenLineage provider

DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_provider_aac.operators.aac import AACRunFlowOperator, AACRunJobGroupOperator, AACRunPlanOperator

with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
         default_args={{"aac_conn_id": "{conn_id}", "poll_interval": 0.1}}) as dag:
    AACRunPlanOperator(task_id="run_plan", plan_id=1, deferrable=True)
    AACRunFlowOperator(task_id="run_flow", flow_id=10)
    AACRunFlowOperator(task_id="run_flow_deferred", flow_id=10, deferrable=True)
    AACRunJobGroupOperator(task_id="run_job", wrangled_dataset_id=100)
    AACRunJobGroupOperator(task_id="run_job_file_input", wrangled_dataset_id=102)
"""


@pytest.fixture(scope="module")
def emitted(
    airflow_sqlite_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    home = airflow_sqlite_home
    dag_id = f"aac_lineage_{uuid.uuid4().hex[:8]}"
    conn_id = f"aac_ol_{uuid.uuid4().hex[:8]}"
    events_file = tmp_path_factory.mktemp("openlineage") / "events.jsonl"
    path = home.dags_folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(DAG.format(dag_id=dag_id, conn_id=conn_id)))
    with AACSimulator(run_duration=0.5) as sim:
        sim.runs.set_datasets(
            100,
            inputs=[jdbc_table("sales", "orders")],
            files=[result_file("orders/clean.csv")],
            tables=[jdbc_table("reporting", "orders_clean")],
        )
        sim.add_wrangled_dataset(102)
        sim.runs.set_datasets(102, inputs=[{"uri": "s3://landing/raw.csv"}])
        pair = sim.mint_pair(access_ttl=3600)
        secret = {"host": sim.base_url, **{k: pair[k] for k in ("access_token", "refresh_token")}}
        transport = {"type": "file", "log_file_path": str(events_file), "append": True}
        run = home.run_dag_file(
            path,
            dag_id,
            connections={conn_id: secret},
            env={
                "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
                "AIRFLOW__OPENLINEAGE__NAMESPACE": "aac-tests",
                # dag.test() serves the Execution API from a thread of this one process, which a
                # forked listener child does not have; under the task supervisor (the default
                # fork mode) this is tested in tests/system/test_resume_crash.py.
                "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
            },
        )
        events = (
            [json.loads(x) for x in events_file.read_text().splitlines() if x.strip()]
            if events_file.exists()
            else []
        )
        yield {
            "state": run.run_state,
            "xcoms": run.xcoms,
            "events": events,
            "output": run.output,
            "base_url": sim.base_url,
            "tokens": [pair["access_token"], pair["refresh_token"]],
        }
    path.unlink()


def _complete(emitted: dict[str, Any], task_id: str) -> dict[str, Any]:
    found = [
        e
        for e in emitted["events"]
        if e.get("eventType") == "COMPLETE" and e["job"]["name"].endswith(f".{task_id}")
    ]
    assert len(found) == 1, (
        task_id,
        [e["job"]["name"] for e in emitted["events"]],
        emitted["output"][-4000:],
    )
    return found[0]


def _names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


@pytest.mark.parametrize(
    "task_id", ["run_plan", "run_flow", "run_flow_deferred", "run_job", "run_job_file_input"]
)
def test_complete_events_carry_the_aac_run(emitted: dict[str, Any], task_id: str) -> None:
    assert emitted["state"] == "success", emitted["output"][-4000:]
    event = _complete(emitted, task_id)
    xcoms = emitted["xcoms"][task_id]
    facet = event["run"]["facets"]["aacRun"]
    assert facet["runId"] == xcoms["run_id"] == xcoms["return_value"]
    assert facet["url"] == xcoms["run_url"]
    assert facet["runType"] == {
        "run_plan": "plan",
        "run_job": "job_group",
        "run_job_file_input": "job_group",
    }.get(task_id, "flow")
    assert facet["jobGroupIds"]
    external = event["run"]["facets"]["externalQuery"]
    assert external["externalQueryId"] == str(xcoms["run_id"])
    assert external["source"].startswith("aac://127.0.0.1:") and external["source"].endswith("/workspaces/1")


def test_a_job_groups_datasets_in_the_workspace_namespace(emitted: dict[str, Any]) -> None:
    event = _complete(emitted, "run_job")
    namespace = event["run"]["facets"]["externalQuery"]["source"]
    assert _names(event["inputs"]) == [(namespace, f"{WAREHOUSE}/analytics.sales.orders")]
    assert _names(event["outputs"]) == [
        (namespace, "s3://aac-sim-results/orders/clean.csv"),
        (namespace, f"{WAREHOUSE}/analytics.reporting.orders_clean"),
    ]
    symlinks = event["outputs"][0]["facets"]["symlinks"]["identifiers"]
    assert symlinks == [{"namespace": "s3://aac-sim-results", "name": "orders/clean.csv", "type": "FILE"}]
    table = event["inputs"][0]["facets"]["symlinks"]["identifiers"][0]
    assert (table["namespace"], table["name"], table["type"]) == (
        WAREHOUSE,
        "analytics.sales.orders",
        "TABLE",
    )


def test_flow_and_plan_datasets_come_from_their_job_groups_in_both_modes(emitted: dict[str, Any]) -> None:
    for task_id in ("run_flow", "run_flow_deferred"):
        event = _complete(emitted, task_id)
        assert [name for _, name in _names(event["inputs"])] == [f"{WAREHOUSE}/analytics.public.source_10001"]
        assert [name for _, name in _names(event["outputs"])] == [
            "s3://aac-sim-results/recipe-10001/output.csv"
        ]
        assert event["run"]["facets"]["aacRun"]["jobGroupIds"] == emitted["xcoms"][task_id]["job_group_ids"]
    plan = _complete(emitted, "run_plan")
    assert [name for _, name in _names(plan["inputs"])] == [f"{WAREHOUSE}/analytics.public.source_1002"]
    assert [name for _, name in _names(plan["outputs"])] == ["s3://aac-sim-results/recipe-1002/output.csv"]


def test_file_inputs_aac_will_not_list_still_give_the_outputs(emitted: dict[str, Any]) -> None:
    event = _complete(emitted, "run_job_file_input")
    assert event["inputs"] == []
    assert [name for _, name in _names(event["outputs"])] == ["s3://aac-sim-results/recipe-102/output.csv"]


def test_no_token_in_events_or_logs(emitted: dict[str, Any]) -> None:
    text = json.dumps(emitted["events"])
    for token in emitted["tokens"]:
        assert token not in text and token not in emitted["output"]
