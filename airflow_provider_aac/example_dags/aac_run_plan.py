"""Run an AAC plan and wait for it without holding a worker slot (deferrable).

The operator starts the plan, pushes the run id and a link to it (XCom keys ``run_id`` and
``run_url``; the task's "AAC run" button), then hands the waiting to Airflow's triggerer.
The task succeeds when the plan run is Complete and fails with AAC's message when it is
Failed or Canceled. Needs a running triggerer (``airflow triggerer``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_aac.operators.aac import AACRunPlanOperator

# The `aac` connection: host is your AAC API base URL (e.g. https://us1.alteryxcloud.com),
# the extra holds the access and refresh token you generated in AAC.
AAC_CONN_ID = "aac_default"
# The plan to run: the number in the plan's URL in AAC (…/plans/<id>).
PLAN_ID = 1
# How often the triggerer asks AAC for the run's status, and how long to wait at most.
POLL_INTERVAL_SECONDS = 30
TIMEOUT_SECONDS = 6 * 3600

with DAG(
    dag_id="aac_example_run_plan",
    schedule=None,  # trigger by hand; use e.g. "0 6 * * *" to run daily at 06:00
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["aac", "example"],
) as dag:
    AACRunPlanOperator(
        task_id="run_plan",
        aac_conn_id=AAC_CONN_ID,
        plan_id=PLAN_ID,
        deferrable=True,
        poll_interval=POLL_INTERVAL_SECONDS,
        timeout=TIMEOUT_SECONDS,  # then the run is canceled in AAC and the task fails
    )
