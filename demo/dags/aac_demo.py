"""The demo's main DAG: API calls across several access-token lifetimes, and two plan runs."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task

from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.aac import AACRunPlanOperator

CALLS_PER_TASK = 12
SPREAD_SECONDS = 50.0  # two and a half access-token lifetimes in the demo


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["aac", "demo"])
def aac_demo() -> None:
    @task
    def call_aac(worker: int) -> int:
        hook = AACHook("aac_default")
        started = time.monotonic()
        for call in range(CALLS_PER_TASK):
            time.sleep(max(0.0, started + call * SPREAD_SECONDS / CALLS_PER_TASK - time.monotonic()))
            hook.request("GET", "/v4/people/current")
        return CALLS_PER_TASK

    call_aac.expand(worker=[1, 2, 3])
    AACRunPlanOperator(task_id="run_plan", plan_id=1, deferrable=True, poll_interval=2)
    AACRunPlanOperator(task_id="run_failing_plan", plan_id=2, poll_interval=2, retries=0)


aac_demo()
