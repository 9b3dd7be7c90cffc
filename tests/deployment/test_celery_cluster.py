"""A distributed deployment: CeleryExecutor with two workers, all three refresh modes at once.

One cluster on a PostgreSQL metadata DB (api-server, scheduler, dag-processor,
triggerer and two ``airflow celery worker`` processes on a Redis broker) runs one DAG
whose tasks share three ``aac`` connections to one simulator, each its own token family:

- ``aac_pg``: lock mode, PostgreSQL advisory lock (``aac_lock_pg``);
- ``aac_redis``: lock mode, Redis lock (``aac_lock_redis``);
- ``aac_sw``: single-writer mode, refreshed only by its refresh DAG ``aac_sw_refresh``.

Mapped tasks call AAC across several access-token lifetimes from both workers while
deferrable plan runs wait in the triggerer and a reschedule-mode sensor comes back to a
worker every few seconds. No refresh token may be presented twice, no connection may
refresh more often than its tokens expire, and no token may reach a log.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowCluster, AirflowHome, start_cluster

pytestmark = [pytest.mark.airflow_cluster, pytest.mark.deployment, pytest.mark.timeout(1200)]

LOCK_CONNS = ("aac_pg", "aac_redis")
SW_CONN = "aac_sw"
CONNS = (*LOCK_CONNS, SW_CONN)
ACCESS_TTL = 5.0  # the lock-mode families
MIN_TTL = 2.0  # every connection's: a token with less left is refreshed (or waited for) first
# The single-writer family lives longer: its refresh DAG needs a scheduler loop, a
# worker slot and a task process per run, which take seconds on 2 CPUs. (Production
# has the same shape at scale: 5-minute tokens, a refresh DAG every minute.)
SW_ACCESS_TTL = 10.0
SW_REFRESH_MIN_TTL = 5.0
SW_SCHEDULE_SECONDS = 4
TASKS_PER_CONN = 10
CALLS = 10
SPREAD_SECONDS = 15.0
DEFERRED_RUNS = 10
WORKERS = 2
CONCURRENCY = 4
SLOW_PLAN = 3
# Long enough for several pokes even when the sensor's first try waits for a free slot.
SLOW_PLAN_SECONDS = 30.0
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.([A-Za-z0-9_-]{10,})\.[A-Za-z0-9_-]*")

DAG_FILE = textwrap.dedent(
    f"""
    from __future__ import annotations

    import time
    from datetime import timedelta

    import pendulum
    from airflow.sdk import dag, task

    from airflow_provider_aac.dags.refresh import create_refresh_dag
    from airflow_provider_aac.hooks.aac import AACHook
    from airflow_provider_aac.operators.aac import AACRunPlanOperator
    from airflow_provider_aac.sensors.aac import AACPlanRunSensor

    CONNS = {CONNS!r}


    @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_tasks=64)
    def aac_celery_at_scale():
        @task
        def call_aac(conn_id: str) -> int:
            hook = AACHook(conn_id)
            started = time.monotonic()
            for call in range({CALLS}):
                due = started + call * {SPREAD_SECONDS / (CALLS - 1)}
                time.sleep(max(0.0, due - time.monotonic()))
                assert hook.request("GET", "/v4/people/current").data["email"]
            return {CALLS}

        call_aac.expand(conn_id=[c for c in CONNS for _ in range({TASKS_PER_CONN})])
        for index in range({DEFERRED_RUNS}):
            AACRunPlanOperator(
                task_id=f"run_plan_{{index}}", aac_conn_id=CONNS[index % len(CONNS)], plan_id=1,
                deferrable=True, poll_interval=1,
                # Airflow's deferral race (README) can fail a resumed task; the retry attaches.
                retries=1, retry_delay=timedelta(seconds=1),
            )
        started = AACRunPlanOperator(
            task_id="start_slow_plan", aac_conn_id="aac_redis", plan_id={SLOW_PLAN}, wait_for_completion=False,
            priority_weight=100,
        )
        started >> AACPlanRunSensor(
            task_id="wait_slow_plan", aac_conn_id="aac_pg", mode="reschedule", poke_interval=2,
            timeout=600, plan_snapshot_run_id="{{{{ ti.xcom_pull(task_ids='start_slow_plan') }}}}",
            priority_weight=100,
            # Twice in seven runs on 2 loaded CPUs, the sensor ended failed between two pokes
            # with nothing in its own log: the executor, not the poke, failed it. Retries are
            # what a production DAG gives a sensor for that; a retry follows the same run.
            retries=2, retry_delay=timedelta(seconds=2),
        )


    aac_celery_at_scale()

    sw_refresh = create_refresh_dag(
        "aac_sw_refresh", aac_conn_id={SW_CONN!r}, schedule=timedelta(seconds={SW_SCHEDULE_SECONDS}),
        refresh_min_ttl={SW_REFRESH_MIN_TTL}, pool="aac_sw_refresh",
    )
    """
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[AACSimulator]:
    with AACSimulator(access_ttl=ACCESS_TTL, run_duration=6.0) as sim:
        sim.add_plan(SLOW_PLAN, duration=SLOW_PLAN_SECONDS, name="Slow plan")
        yield sim


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, simulator: AACSimulator) -> Iterator[AirflowCluster]:
    dags = tmp_path_factory.mktemp("dags")
    (dags / "aac_celery.py").write_text(DAG_FILE)
    with AirflowHome(backend="postgres", dags_folder=dags, executor="CeleryExecutor") as home:
        home.migrate()
        home.add_airflow_api_connection("airflow_api")
        home.add_lock_connection("aac_lock_pg", "postgres")
        home.add_lock_connection("aac_lock_redis", "redis")
        for conn_id, lock in zip(LOCK_CONNS, ("aac_lock_pg", "aac_lock_redis"), strict=True):
            home.add_aac_connection(
                conn_id, simulator, lock_conn_id=lock, airflow_api_conn_id="airflow_api", min_ttl=MIN_TTL
            )
        home.add_aac_connection(
            SW_CONN,
            simulator,
            access_ttl=SW_ACCESS_TTL,
            airflow_api_conn_id="airflow_api",
            refresh_dag_id="aac_sw_refresh",
            min_ttl=MIN_TTL,
        )
        home.run_cli("pools", "set", "aac_sw_refresh", "1", "AAC token refresh")
        with start_cluster(
            home, celery_workers=WORKERS, celery_concurrency=CONCURRENCY, timeout=300
        ) as running:
            yield running


def refresh_token_of(cluster: AirflowCluster, conn_id: str) -> str:
    return str(cluster.home.get_connection_extra(conn_id)["refresh_token"])


def aac_jwts(text: str, issuer: str) -> int:
    """How many JWTs in ``text`` the simulator issued (Airflow's own Execution API JWTs aside)."""
    found = 0
    for match in JWT.finditer(text):
        payload = match.group(1)
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError):
            found += 1  # unreadable: count it, a token must not hide behind a bad payload
            continue
        if not isinstance(claims, dict) or str(claims.get("iss", "")).startswith(issuer):
            found += 1
    return found


def every_log(home: AirflowHome) -> dict[Path, str]:
    """Each component's log and every task and trigger log file the components wrote."""
    files = [*(home.path / "component-logs").glob("*.log"), *home.logs_folder.rglob("*")]
    return {f: f.read_text(errors="replace") for f in files if f.is_file()}


def test_celery_cluster_runs_all_three_modes_without_reuse(
    cluster: AirflowCluster, simulator: AACSimulator
) -> None:
    dag_id = "aac_celery_at_scale"
    cluster.wait_for_dag(dag_id, timeout=180)
    cluster.wait_for_dag("aac_sw_refresh", timeout=180)
    # The refresh DAG is created unpaused, but unpause it anyway: a paused one would only time out.
    cluster.request_ok("PATCH", "/api/v2/dags/aac_sw_refresh", json={"is_paused": False})
    spent = {c: {refresh_token_of(cluster, c)} for c in CONNS}
    rotations_before = {c: simulator.family_info(next(iter(spent[c])))["rotations"] for c in CONNS}
    simulator.reset_stats()

    started = time.monotonic()
    run_id = cluster.trigger_dag(dag_id)
    state = cluster.wait_for_run(dag_id, run_id, timeout=900)
    elapsed = time.monotonic() - started
    tis = cluster.task_instances(dag_id, run_id)
    print(f"\nrun {dag_id}: {state} in {elapsed:.0f} s, {len(tis)} task instances")

    not_ok = [ti for ti in tis if ti["state"] != "success"]
    assert state == "success" and not not_ok, cluster.failure_report(dag_id, run_id)
    assert len(tis) == len(CONNS) * TASKS_PER_CONN + DEFERRED_RUNS + 2
    assert elapsed >= 60, "the run must span many access-token lifetimes"

    per_worker = Counter(ti["hostname"] for ti in tis)
    print(f"task instances per worker: {dict(per_worker)}")
    assert set(per_worker) == {f"w{i}" for i in range(1, WORKERS + 1)}, per_worker

    stats = simulator.stats()
    print(f"simulator: {stats}")
    assert stats["reuses"] == 0
    assert stats["invalid_grant"] == 0
    assert stats["families_revoked"] == 0
    assert stats["api_calls"] >= len(CONNS) * TASKS_PER_CONN * CALLS + 2 * DEFERRED_RUNS + 2
    assert stats["runs_started"] == DEFERRED_RUNS + 1, "a deferred run was started twice"

    rotations = {}
    for conn_id in CONNS:
        token = refresh_token_of(cluster, conn_id)
        spent[conn_id].add(token)
        rotations[conn_id] = simulator.family_info(token)["rotations"] - rotations_before[conn_id]
    print(f"refreshes per connection over {elapsed:.0f} s: {rotations}")
    for conn_id, count in rotations.items():
        # A token is refreshed when it has less than its margin left: at most once per
        # (lifetime - margin) seconds; two more for the run's edges.
        ttl, margin = (SW_ACCESS_TTL, SW_REFRESH_MIN_TTL) if conn_id == SW_CONN else (ACCESS_TTL, MIN_TTL)
        ceiling = math.ceil(elapsed / (ttl - margin)) + 2
        assert 2 <= count <= ceiling, (conn_id, count, ceiling)

    sw_runs = cluster.request_ok(
        "GET", "/api/v2/dags/aac_sw_refresh/dagRuns", params={"state": "failed", "limit": 100}
    )
    assert sw_runs["total_entries"] == 0, "a single-writer refresh run failed"

    reschedules = cluster.home.query(
        "SELECT count(*) FROM task_reschedule r JOIN task_instance t ON r.ti_id = t.id "
        "WHERE t.dag_id = %s AND t.run_id = %s AND t.task_id = 'wait_slow_plan'",
        (dag_id, run_id),
    )[0][0]
    print(f"sensor reschedules: {reschedules}")
    assert reschedules >= 2, "the sensor must have given its worker slot back between pokes"

    task_logs = "\n".join(
        cluster.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti.get("map_index", -1))
        for ti in tis
    )
    assert "using lock mode" in task_logs
    logs = {**every_log(cluster.home), Path("<REST task logs>"): task_logs}
    leaks = {str(path): aac_jwts(text, simulator.base_url) for path, text in logs.items()}
    assert not any(leaks.values()), f"an AAC JWT reached a log: {leaks}"
    for path, text in logs.items():
        for conn_id, tokens in spent.items():
            assert not any(t in text for t in tokens), f"a refresh token of {conn_id} reached {path}"
