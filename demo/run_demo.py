"""``make demo``: the main job a user has, end to end, against the local AAC simulator.

Starts the simulator with short-lived access tokens, a throwaway Airflow home (SQLite)
with the real api-server, scheduler, dag-processor and triggerer, creates the ``aac``
connection from a freshly minted pair, and runs:

- the shipped refresh DAG (single-writer mode: workers have no ORM and no lock here, so
  only the refresh DAG spends the refresh token),
- a DAG whose tasks call AAC through ``AACHook`` across several access-token lifetimes,
  a deferrable plan run that completes, and a plan that fails its task with AAC's message.

Then prints a summary (runs, outcomes, every refresh DAG run by state and by what started
it, calls, refreshes, reuses) and stops everything.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DEMO_DIR = Path(__file__).resolve().parent
# The Airflow harness is this repository's own (tests/support), not part of the package.
sys.path.insert(0, str(DEMO_DIR.parent))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_env import AirflowCluster, AirflowHome, start_cluster  # noqa: E402

ACCESS_TTL = 20.0
REFRESH_DAG = "aac_token_refresh"
DEMO_DAG = "aac_demo"
POOL = "aac_token_refresh"


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def prepare(home: AirflowHome, sim: AACSimulator) -> None:
    for source in (DEMO_DIR / "dags").glob("*.py"):
        shutil.copy(source, home.dags_folder)
    home.migrate()
    home.add_connection(
        "airflow_api", "http", host=home.base_url, login=home.username, password=home.password
    )
    deadline = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    home.add_aac_connection(
        "aac_default", sim, airflow_api_conn_id="airflow_api", min_ttl=5, refresh_expires_at=deadline
    )
    home.run_cli("pools", "set", POOL, "1", "AAC token refresh: one writer at a time")


def task_summary(cluster: AirflowCluster, dag_id: str, run_id: str) -> list[str]:
    lines = []
    for ti in sorted(
        cluster.task_instances(dag_id, run_id), key=lambda t: (t["task_id"], t.get("map_index", -1))
    ):
        index = ti.get("map_index", -1)
        name = ti["task_id"] + (f"[{index}]" if index >= 0 else "")
        lines.append(f"  {name:<28} {ti['state']}")
    return lines


def failure_line(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> str:
    """The exception the task failed with, as Airflow recorded it."""
    for record in cluster.task_log_records(dag_id, run_id, task_id):
        for detail in record.get("error_detail") or []:
            return f"{detail.get('exc_type')}: {detail.get('exc_value')}"[:500]
    return "(no exception recorded in the task log)"


def deferred(cluster: AirflowCluster, dag_id: str, run_id: str, task_id: str) -> bool:
    """Whether the task handed its wait to the triggerer (its log says so)."""
    log = cluster.task_log(dag_id, run_id, task_id).lower()
    return "deferred" in log or "defer" in log


# Every state a refresh DAG run can be in when the demo reads them, and what it means here.
RUN_STATES = {
    "success": "finished",
    "running": "still under way when the demo stopped Airflow: on a 5 s schedule one nearly always is",
    "queued": "queued when the demo stopped Airflow, next on the 5 s schedule",
    "failed": "failed",
}
RUN_TYPES = {"scheduled": "on its 5 s schedule", "manual": "asked for by a task that needed a fresher token"}


def refresh_run_lines(cluster: AirflowCluster, runs: list[dict[str, Any]]) -> list[str]:
    """Every refresh DAG run counted, by state, with why it is in that state."""
    lines = []
    for state, count in Counter(run["state"] for run in runs).most_common():
        of_state = [run for run in runs if run["state"] == state]
        kinds = Counter(RUN_TYPES.get(run["run_type"], run["run_type"]) for run in of_state)
        how = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        lines.append(f"  {count:>3} {state:<9} {RUN_STATES.get(state, state)} ({how})")
        if state == "failed":
            for run in of_state:
                failed = [
                    t
                    for t in cluster.task_instances(REFRESH_DAG, run["dag_run_id"])
                    if t["state"] == "failed"
                ]
                for ti in failed:
                    reason = failure_line(cluster, REFRESH_DAG, run["dag_run_id"], ti["task_id"])
                    lines.append(f"      {run['dag_run_id']} {ti['task_id']}: {reason}")
    return lines


def main() -> int:
    started = time.monotonic()
    with AACSimulator(access_ttl=ACCESS_TTL, run_duration=6.0) as sim, AirflowHome(backend="sqlite") as home:
        say(f"AAC simulator on {sim.base_url}: access tokens live {ACCESS_TTL:.0f} s")
        say(f"throwaway AIRFLOW_HOME {home.path} (SQLite)")
        prepare(home, sim)
        say("starting api-server, scheduler, dag-processor, triggerer")
        with start_cluster(home) as cluster:
            cluster.wait_for_dag(REFRESH_DAG)
            cluster.wait_for_dag(DEMO_DAG)
            sim.reset_stats()
            cluster.request_ok("PATCH", f"/api/v2/dags/{REFRESH_DAG}", json={"is_paused": False})
            say(f"refresh DAG {REFRESH_DAG!r} unpaused; running {DEMO_DAG!r}")
            run_id = cluster.trigger_dag(DEMO_DAG)
            state = cluster.wait_for_run(DEMO_DAG, run_id, timeout=600)
            stats = sim.stats()
            refresh_runs = cluster.request_ok("GET", f"/api/v2/dags/{REFRESH_DAG}/dagRuns")["dag_runs"]
            print()
            say(f"run {DEMO_DAG} finished: {state} (a failed run is expected: one plan fails on purpose)")
            for line in task_summary(cluster, DEMO_DAG, run_id):
                print(line)
            plan = cluster.request_ok(
                "GET", f"/api/v2/dags/{DEMO_DAG}/dagRuns/{run_id}/taskInstances/run_plan/xcomEntries/run_url"
            )
            how = "deferred to the triggerer" if deferred(cluster, DEMO_DAG, run_id, "run_plan") else "waited"
            say(f"plan run {plan['value']}: {how}, then completed")
            say(f"failing plan: {failure_line(cluster, DEMO_DAG, run_id, 'run_failing_plan')}")
            say(f"refresh DAG runs: {len(refresh_runs)}")
            for line in refresh_run_lines(cluster, refresh_runs):
                print(line)
            stored = home.get_connection_extra("aac_default")
            print()
            say(
                f"AAC calls: {stats['api_calls']} (authorised {stats['api_authorized']}, "
                f"unauthorised {stats['api_unauthorized']}); refreshes: {stats['refreshes']}; "
                f"reuses detected: {stats['reuses']}; invalid_grant: {stats['invalid_grant']}; "
                f"stored generation: {stored.get('generation')}"
            )
    say(f"everything stopped after {time.monotonic() - started:.0f} s")
    healthy = stats["reuses"] == 0 and stats["invalid_grant"] == 0 and stats["refreshes"] >= 1
    say("OK: the token chain stayed alive with zero reuses" if healthy else "PROBLEM: see above")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
