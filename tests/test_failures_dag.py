"""Under Airflow's real task runner, with retries configured: final errors end the task on its first try.

One ``dag.test()`` in a fresh interpreter on a migrated SQLite home. Every task has two
retries with no delay, so a task that ends ``failed`` after one try proves the error
skipped them, and one that succeeds on try 2 proves a transient error kept them.
The broken token chain and the rejected client id are real: the connections hold an
expired access token, and the simulator refuses the refresh.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome

DAG = """
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from airflow_provider_aac.operators.aac import AACRunFlowOperator, AACRunPlanOperator
from airflow_provider_aac.sensors.aac import AACPlanRunSensor

with DAG(
    "{dag_id}", schedule=None, start_date=pendulum.datetime(2024, 1, 1),
    default_args={{"retries": 2, "retry_delay": timedelta(seconds=0), "aac_conn_id": "{conn}"}},
) as dag:
    AACRunPlanOperator(task_id="dead_chain", plan_id=1, aac_conn_id="{conn}_dead", poll_interval=0.1)
    AACRunPlanOperator(task_id="wrong_client", plan_id=1, aac_conn_id="{conn}_client", poll_interval=0.1)
    AACRunPlanOperator(task_id="missing_plan", plan_id=424242, poll_interval=0.1)
    AACRunPlanOperator(task_id="failed_run_final", plan_id=2, poll_interval=0.1, retry_failed_runs=False)
    AACRunPlanOperator(task_id="failed_run_retried", plan_id=3, poll_interval=0.1, retries=1)
    AACRunFlowOperator(task_id="transient", flow_id=12, poll_interval=0.1)
    AACPlanRunSensor(task_id="missing_run", plan_snapshot_run_id=424242, poke_interval=0.1, timeout=30)
"""


@pytest.fixture(scope="module")
def outcome(airflow_sqlite_home: AirflowHome) -> Iterator[dict[str, Any]]:
    home = airflow_sqlite_home
    dag_id = f"aac_failures_{uuid.uuid4().hex[:8]}"
    conn = f"aac_f_{uuid.uuid4().hex[:8]}"
    path = home.dags_folder / f"{dag_id}.py"
    path.write_text(textwrap.dedent(DAG.format(dag_id=dag_id, conn=conn)))
    with AACSimulator(run_duration=0.3) as sim:
        sim.add_plan(3, outcome="Failed")
        sim.add_flow(12)
        # Six 503s: the first try's POST gives up after five attempts, the retry's goes through.
        sim.fail_api(503, times=5, path_prefix="/v4/flows/12/run", method="POST")
        good = sim.mint_pair(access_ttl=3600)
        dead = sim.mint_pair(access_ttl=0)
        sim.revoke_family_of(dead["refresh_token"])
        other_client = sim.mint_pair(access_ttl=0)
        conns = {
            conn: {
                "host": sim.base_url,
                "access_token": good["access_token"],
                "refresh_token": good["refresh_token"],
            },
            f"{conn}_dead": {"host": sim.base_url, **{k: dead[k] for k in ("access_token", "refresh_token")}},
            f"{conn}_client": {
                "host": sim.base_url,
                **{k: other_client[k] for k in ("access_token", "refresh_token")},
                "client_id": "not-the-client",
            },
        }
        run = home.run_dag_file(path, dag_id, connections=conns)
        yield {
            "tis": {task: [state, run.tries[task]] for task, state in run.states.items()},
            "output": run.output,
            "stats": sim.stats(),
            "starts": sim.runs.starts(),
            "tokens": [
                v
                for pair in (good, dead, other_client)
                for v in (pair["access_token"], pair["refresh_token"])
            ],
        }
    path.unlink()


@pytest.mark.parametrize(
    ("task_id", "words"),
    [
        ("dead_chain", "AACTokenChainBrokenError"),
        ("wrong_client", "AACClientRejectedError"),
        ("missing_plan", "Plan 424242 not found"),
        ("failed_run_final", "Plan 'Broken plan' failed (simulated)"),
        ("missing_run", "Plan run 424242 not found"),
    ],
)
def test_errors_no_retry_can_fix_end_the_task_on_its_first_try(
    outcome: dict[str, Any], task_id: str, words: str
) -> None:
    assert outcome["tis"][task_id] == ["failed", 1], outcome["output"][-6000:]
    assert words in outcome["output"]


def test_a_failed_run_keeps_the_retries_by_default_and_each_retry_starts_anew(
    outcome: dict[str, Any],
) -> None:
    assert outcome["tis"]["failed_run_retried"] == ["failed", 2]
    assert [s.target for s in outcome["starts"] if s.kind == "plan"].count(3) == 2
    assert [s.target for s in outcome["starts"] if s.kind == "plan"].count(2) == 1


def test_a_transient_error_keeps_the_retries_and_the_retry_starts_one_run(outcome: dict[str, Any]) -> None:
    assert outcome["tis"]["transient"] == ["success", 2]
    flows = [s for s in outcome["starts"] if s.kind == "flow"]
    assert len(flows) == 1


def test_no_token_in_the_output(outcome: dict[str, Any]) -> None:
    for token in outcome["tokens"]:
        assert token not in outcome["output"]


def test_the_log_names_the_final_error_and_the_error_it_carries(outcome: dict[str, Any]) -> None:
    assert "AACFinalError" in outcome["output"]
    assert "AACNotFoundError" in outcome["output"]  # the cause, with its own class
