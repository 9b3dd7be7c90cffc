"""A task process SIGKILLed mid-wait under the real supervisor: its retry attaches, AAC sees one run.

The cluster (api-server, scheduler, dag-processor, triggerer; LocalExecutor on PostgreSQL)
runs two DAGs whose tasks have one retry. For each task the test waits until the
simulator has started its run and the run id is persisted where the retry will look
(Airflow 3.3's task state store, or for the task that runs as on Airflow 3.0-3.2, a
Variable), reads the task's pid from the task instance (the supervisor reports it),
checks that it is a process of this cluster's scheduler, and SIGKILLs it. Deferrable
tasks are caught in their first status check, which the simulator holds, before they
defer. Then the retry must attach to the running run and wait for it (polling, or in
the triggerer), and the simulator must have seen exactly one run per task.

The OpenLineage provider runs in its default fork mode here, so the same DAG runs show
that lineage events carry the one AAC run of each task.
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aac.resume import RECORD_KEY, VariableStore
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowCluster, AirflowHome, poll_until, start_cluster

pytestmark = pytest.mark.airflow_cluster

RUN_SECONDS = 30.0
SYNC_DAG = "aac_resume_crash_sync"
DEFERRED_DAG = "aac_resume_crash_deferred"
# task id -> (kind, target, where the run id is kept)
SYNC_TASKS = {
    "sync_plan": ("plan", 21, "state_store"),
    "sync_flow": ("flow", 31, "state_store"),
    "sync_job": ("job_group", 121, "state_store"),
    "variable_plan": ("plan", 23, "variable"),
}
DEFERRED_TASKS = {
    "deferred_plan": ("plan", 22, "state_store"),
    "deferred_job": ("job_group", 122, "state_store"),
}

DAG_FILE = textwrap.dedent(
    f"""
    from datetime import timedelta

    import pendulum
    from airflow.sdk import DAG

    from airflow_provider_aac.operators.aac import AACRunFlowOperator, AACRunJobGroupOperator, AACRunPlanOperator


    class PlanOperatorBefore33(AACRunPlanOperator):
        \"\"\"Runs as on Airflow 3.0-3.2, whose task context has no task state store.\"\"\"

        def execute(self, context):
            context.pop("task_state_store", None)
            return super().execute(context)


    ARGS = {{"retries": 1, "retry_delay": timedelta(seconds=1), "poll_interval": 1, "aac_conn_id": "aac_default"}}
    START = pendulum.datetime(2026, 1, 1, tz="UTC")

    with DAG("{SYNC_DAG}", schedule=None, start_date=START, catchup=False, default_args=ARGS):
        AACRunPlanOperator(task_id="sync_plan", plan_id=21)
        AACRunFlowOperator(task_id="sync_flow", flow_id=31)
        AACRunJobGroupOperator(task_id="sync_job", wrangled_dataset_id=121)
        PlanOperatorBefore33(task_id="variable_plan", plan_id=23)
        PlanOperatorBefore33(task_id="variable_no_wait", plan_id=24, wait_for_completion=False)

    with DAG("{DEFERRED_DAG}", schedule=None, start_date=START, catchup=False, default_args=ARGS):
        AACRunPlanOperator(task_id="deferred_plan", plan_id=22, deferrable=True)
        AACRunJobGroupOperator(task_id="deferred_job", wrangled_dataset_id=122, deferrable=True)
    """
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[AACSimulator]:
    with AACSimulator(access_ttl=3600, run_duration=RUN_SECONDS) as sim:
        for plan in (21, 22, 23, 24):
            sim.add_plan(plan)
        sim.add_flow(31)
        for recipe in (121, 122):
            sim.add_wrangled_dataset(recipe)
        yield sim


@pytest.fixture(scope="module")
def events_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openlineage") / "events.jsonl"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, simulator: AACSimulator, events_file: Path
) -> Iterator[AirflowCluster]:
    dags = tmp_path_factory.mktemp("dags")
    (dags / "aac_resume_crash.py").write_text(DAG_FILE)
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    extra_env = {"AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport)}
    with AirflowHome(backend="postgres", dags_folder=dags, extra_env=extra_env) as home:
        home.migrate()
        home.add_aac_connection("aac_default", simulator)
        with start_cluster(home) as running:
            yield running


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``pid`` is a process under ``ancestor``, read from /proc (the parent chain)."""
    current = pid
    for _ in range(64):
        if current == ancestor:
            return True
        try:
            stat = Path(f"/proc/{current}/stat").read_text()
        except OSError:
            return False
        current = int(stat.rsplit(")", 1)[-1].split()[1])
        if current <= 1:
            return False
    return False


def _persisted_run_id(
    cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str, where: str
) -> int | None:
    if where == "variable":
        key = VariableStore(dag_id, run_id, task_id, -1).key
        answer = cluster.request("GET", f"/api/v2/variables/{key}")
        value = json.loads(answer.json()["value"]) if answer.status_code == 200 else None
    else:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/state-store/{RECORD_KEY}"
        answer = cluster.request("GET", path)
        value = answer.json()["value"] if answer.status_code == 200 else None
    return value.get("run_id") if isinstance(value, dict) else None


def _kill_mid_wait(
    cluster: AirflowCluster,
    simulator: AACSimulator,
    dag_id: str,
    run_id: str,
    tasks: dict[str, tuple[str, int, str]],
) -> dict[str, int]:
    """SIGKILL each task's first try once its run id is persisted; returns the pids killed."""
    scheduler = cluster.processes["scheduler"].pid
    killed: dict[str, int] = {}

    def probe() -> dict[str, int] | None:
        cluster.check_alive()
        for ti in cluster.task_instances(dag_id, run_id):
            task_id = ti["task_id"]
            if task_id in killed or task_id not in tasks:
                continue
            kind, target, where = tasks[task_id]
            started = simulator.runs.starts(kind=kind, target=target)
            if ti["state"] != "running" or ti["try_number"] != 1 or not ti.get("pid") or not started:
                continue
            if _persisted_run_id(cluster, dag_id, run_id, task_id, where) != started[0].run_id:
                continue
            pid = int(ti["pid"])
            assert _descends_from(pid, scheduler), f"pid {pid} of {task_id} is not a task of this cluster"
            os.kill(pid, signal.SIGKILL)
            killed[task_id] = pid
        return killed if len(killed) == len(tasks) else None

    return poll_until(probe, timeout=120, interval=0.2, what=f"the tasks of {dag_id} to start their runs")


def _run_dag(
    cluster: AirflowCluster, simulator: AACSimulator, dag_id: str, tasks: dict[str, tuple[str, int, str]]
) -> dict[str, Any]:
    cluster.wait_for_dag(dag_id)
    run_id = cluster.trigger_dag(dag_id)
    killed = _kill_mid_wait(cluster, simulator, dag_id, run_id, tasks)
    state = cluster.wait_for_run(dag_id, run_id, timeout=240)
    tis = {ti["task_id"]: ti for ti in cluster.task_instances(dag_id, run_id)}
    logs = {
        task_id: {try_number: cluster.task_log(dag_id, run_id, task_id, try_number) for try_number in (1, 2)}
        for task_id in tasks
    }
    xcoms = {
        task_id: cluster.request_ok(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/run_id"
        )["value"]
        for task_id in tasks
    }
    return {"run_id": run_id, "state": state, "tis": tis, "logs": logs, "killed": killed, "xcoms": xcoms}


@pytest.fixture(scope="module")
def sync_run(cluster: AirflowCluster, simulator: AACSimulator) -> dict[str, Any]:
    return _run_dag(cluster, simulator, SYNC_DAG, SYNC_TASKS)


@pytest.fixture(scope="module")
def deferred_run(
    cluster: AirflowCluster, simulator: AACSimulator, sync_run: dict[str, Any]
) -> dict[str, Any]:
    # Hold each deferrable task in its first status check, so it is killed before it defers.
    simulator.runs.slow(90, path_prefix="/v4/planSnapshotRuns/", method="GET")
    simulator.runs.slow(90, path_prefix="/v4/jobGroups/", method="GET")
    result = _run_dag(cluster, simulator, DEFERRED_DAG, DEFERRED_TASKS)
    assert simulator.runs.pending_delays() == 0, "a deferrable task was not caught in its status check"
    return result


def _check_one_run_per_task(
    run: dict[str, Any], simulator: AACSimulator, tasks: dict[str, tuple[str, int, str]]
) -> None:
    assert run["state"] == "success", {t: ti["state"] for t, ti in run["tis"].items()}
    assert set(run["killed"]) == set(tasks)
    for task_id, (kind, target, _) in tasks.items():
        starts = simulator.runs.starts(kind=kind, target=target)
        assert len(starts) == 1, f"{task_id}: AAC saw {len(starts)} runs"
        ti = run["tis"][task_id]
        assert (ti["state"], ti["try_number"]) == ("success", 2), task_id
        assert run["xcoms"][task_id] == starts[0].run_id
        # The supervisor logs the kill; what the task logged just before it may not have reached the log.
        assert '"signal_name": "SIGKILL"' in run["logs"][task_id][1]
        assert "Attached to AAC" in run["logs"][task_id][2], run["logs"][task_id][2][-3000:]
        assert "Started AAC" not in run["logs"][task_id][2]


def test_sync_tasks_killed_mid_wait_attach_on_retry(
    sync_run: dict[str, Any], simulator: AACSimulator
) -> None:
    _check_one_run_per_task(sync_run, simulator, SYNC_TASKS)
    for task_id in SYNC_TASKS:
        assert "ended Complete" in sync_run["logs"][task_id][2]


def test_deferrable_tasks_killed_before_deferring_defer_on_the_same_run(
    deferred_run: dict[str, Any], simulator: AACSimulator
) -> None:
    _check_one_run_per_task(deferred_run, simulator, DEFERRED_TASKS)
    for task_id in DEFERRED_TASKS:
        assert "defer" in deferred_run["logs"][task_id][2].lower()


def test_the_variable_fallback_is_deleted_when_the_task_ends(
    cluster: AirflowCluster, sync_run: dict[str, Any], simulator: AACSimulator
) -> None:
    for task_id in ("variable_plan", "variable_no_wait"):
        key = VariableStore(SYNC_DAG, sync_run["run_id"], task_id, -1).key
        assert cluster.request("GET", f"/api/v2/variables/{key}").status_code == 404, task_id
    assert sync_run["tis"]["variable_no_wait"]["state"] == "success"
    assert len(simulator.runs.starts(kind="plan", target=24)) == 1
    assert not [v["key"] for v in cluster.request_ok("GET", "/api/v2/variables")["variables"]]
    state_store = f"/api/v2/dags/{SYNC_DAG}/dagRuns/{sync_run['run_id']}/taskInstances/sync_plan/state-store/{RECORD_KEY}"
    kept = cluster.request_ok("GET", state_store)["value"]
    assert kept["run_id"] == sync_run["xcoms"]["sync_plan"] and kept["try_number"] == 1


def test_lineage_events_carry_each_tasks_one_run(
    sync_run: dict[str, Any], deferred_run: dict[str, Any], simulator: AACSimulator, events_file: Path
) -> None:
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    assert sync_run["state"] == deferred_run["state"] == "success"
    for tasks in (SYNC_TASKS, DEFERRED_TASKS):
        for task_id, (kind, target, _) in tasks.items():
            complete = [
                e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(f".{task_id}")
            ]
            assert len(complete) == 1, (task_id, [e["job"]["name"] for e in events])
            facet = complete[0]["run"]["facets"]["aacRun"]
            assert (facet["runType"], facet["runId"]) == (
                kind,
                simulator.runs.starts(kind=kind, target=target)[0].run_id,
            )
            outputs = [o["name"] for o in complete[0]["outputs"]]
            recipe = target if kind == "job_group" else target * 1000 + (1 if kind == "flow" else 2)
            assert outputs == [f"s3://aac-sim-results/recipe-{recipe}/output.csv"]
