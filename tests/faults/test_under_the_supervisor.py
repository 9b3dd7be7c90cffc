"""Faults that need a real worker: tasks under Airflow's task supervisor, where the ORM is blocked.

Finding 2 of the fault review: a worker in lock mode reads the stored version and then
PATCHes its claim; a process with ORM access (the api-server, ``airflow dags test``) in
metadata-DB mode could claim and spend in between, and the worker then spent the same
token (reproduced: one reuse). And finding 6's single-writer storm: a 401 on a
time-fresh token waited for a generation the refresh DAG, refreshing only by the clock,
would never publish, and every waiting call queued another run of it.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.faults.scene import REPO_ROOT, Refresher
from tests.support.airflow_env import (
    AirflowCluster,
    AirflowEnvError,
    AirflowHome,
    start_cluster,
)
from tests.support.fault_proxy import FaultProxy
from tests.support.processes import poll_until

pytestmark = pytest.mark.airflow_cluster

WAITERS = 3
DAG_FILE = textwrap.dedent(
    f"""
    from __future__ import annotations

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_aac.dags.refresh import create_refresh_dag
    from airflow_provider_aac.hooks.aac import AACHook


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
    def aac_fault_force_refresh():
        @task
        def force() -> dict:
            return AACHook("aac_mixed").refresh_tokens(force=True).as_dict()

        force()


    aac_fault_force_refresh()


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
    def aac_fault_rejected_token():
        @task
        def call(index: int) -> int:
            return AACHook("aac_forced").request("GET", "/v4/people/current").status_code

        call.expand(index=list(range({WAITERS})))


    aac_fault_rejected_token()

    forced_refresh = create_refresh_dag(
        "aac_forced_refresh", aac_conn_id="aac_forced", schedule=None, pool="aac_forced_refresh"
    )
    """
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowCluster]:
    dags = tmp_path_factory.mktemp("fault_dags")
    (dags / "aac_faults.py").write_text(DAG_FILE)
    with AirflowHome(backend="postgres", dags_folder=dags) as home:
        home.migrate()
        home.add_airflow_api_connection("airflow_api")
        home.add_lock_connection("aac_lock", "redis")
        home.run_cli("pools", "set", "aac_forced_refresh", "1", "one writer")
        with start_cluster(home) as running:
            yield running


def start_server_refresher(home: AirflowHome, conn_id: str) -> Refresher:
    """A process with ORM access (as the api-server or ``airflow dags test`` has) forcing a refresh."""
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "tests.faults.refresher", conn_id, "force"],
        env=home.env(_AIRFLOW_PROCESS_CONTEXT="server"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Refresher(process)


def test_a_worker_and_an_orm_process_take_the_same_lock(cluster: AirflowCluster) -> None:
    home = cluster.home
    cluster.wait_for_dag("aac_fault_force_refresh")
    with AACSimulator() as sim, FaultProxy(home.base_url) as api_proxy:
        home.add_airflow_api_connection("airflow_api_proxied", api_proxy.base_url)
        home.add_aac_connection(
            "aac_mixed", sim, lock_conn_id="aac_lock", airflow_api_conn_id="airflow_api_proxied"
        )
        claim = api_proxy.on("PATCH", "/api/v2/connections/aac_mixed", times=1).hold_request()
        run_id = cluster.trigger_dag("aac_fault_force_refresh")
        claim.wait_seen(timeout=120)  # the worker read generation 0 and is writing its claim
        server = start_server_refresher(home, "aac_mixed")
        try:
            # The window the race needs: the ORM process refreshing while the worker's claim is
            # on its way. Taking the worker's lock, it cannot.
            poll_until(lambda: server.process.poll(), timeout=12, interval=0.05, what="the ORM process")
        except AirflowEnvError:
            pass
        finally:
            claim.release()
        server_result = server.result()
        state = cluster.wait_for_run("aac_fault_force_refresh", run_id, timeout=120)
        stats = sim.stats()
        stored = home.get_connection_extra("aac_mixed")
    assert stats["reuses"] == 0 and stats["invalid_grant"] == 0, stats
    assert state == "success", cluster.task_log("aac_fault_force_refresh", run_id, "force")[-3000:]
    assert server_result["ok"], server_result
    assert stats["refreshes"] == 1, "the second forced refresh found the first one's pair"
    assert stored["generation"] == 1


def test_a_rejected_token_in_single_writer_mode_asks_the_refresh_dag_once(cluster: AirflowCluster) -> None:
    home = cluster.home
    cluster.wait_for_dag("aac_forced_refresh")
    cluster.wait_for_dag("aac_fault_rejected_token")
    with AACSimulator() as sim:
        home.add_aac_connection(
            "aac_forced",
            sim,
            airflow_api_conn_id="airflow_api",
            refresh_dag_id="aac_forced_refresh",
            publish_wait=120,
        )
        # Every waiter's first call is rejected although its token is fresh by the clock.
        sim.fail_api(401, times=WAITERS, path_prefix="/v4/people/current")
        run_id = cluster.trigger_dag("aac_fault_rejected_token")
        state = cluster.wait_for_run("aac_fault_rejected_token", run_id, timeout=240)
        runs = cluster.request_ok("GET", "/api/v2/dags/aac_forced_refresh/dagRuns")["dag_runs"]
        stats = sim.stats()
    logs = "\n".join(
        cluster.task_log("aac_fault_rejected_token", run_id, "call", map_index=index)
        for index in range(WAITERS)
    )
    assert state == "success", cluster.failure_report("aac_fault_rejected_token", run_id)
    assert [run["dag_run_id"] for run in runs] == ["aac_forced__aac_forced__g0"], runs
    assert runs[0]["conf"] == {"aac_force_generation": 0}
    assert stats["refreshes"] == 1 and stats["reuses"] == 0, stats
    assert "refreshing tokens" not in logs, "a waiting task spent the refresh token"
    assert home.get_connection_extra("aac_forced")["generation"] == 1
