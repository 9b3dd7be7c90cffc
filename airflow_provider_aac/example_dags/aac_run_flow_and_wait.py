"""Start an AAC flow in one task and wait for it in another, with a sensor.

Splitting start and wait lets other tasks run in between, or lets the wait use a
different mode or timeout. The sensor gets the flow run id from the first task's return
value (an XComArg), so the wiring needs no template strings.
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_aac.operators.aac import AACRunFlowOperator
from airflow_provider_aac.sensors.aac import AACFlowRunSensor

# The `aac` connection (host: your AAC API base URL; extra: the token pair).
AAC_CONN_ID = "aac_default"
# The flow to run, by its exact name (ids differ between workspaces; names usually do not).
# Or give flow_id=<the number in the flow's URL in AAC (…/flows/<id>)> instead.
FLOW_NAME = "Sales flow"
# How often the sensor checks, and how long it waits before failing.
POKE_INTERVAL_SECONDS = 60
TIMEOUT_SECONDS = 6 * 3600

with DAG(
    dag_id="aac_example_run_flow_and_wait",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["aac", "example"],
) as dag:
    # Returns at once with the flow run id (also in XCom as "run_id", with "run_url", the
    # resolved "flow_id" and the run's "job_group_ids"). To run only some outputs, add
    # wrangled_dataset_ids=[<recipe ids>]; per-output settings go in overrides={"<recipe
    # name>": {...}}, Spark settings in spark_options={"spark.executor.memory": "4GB"}.
    run_flow = AACRunFlowOperator(
        task_id="run_flow",
        aac_conn_id=AAC_CONN_ID,
        flow_name=FLOW_NAME,
        wait_for_completion=False,
    )
    # Succeeds when the flow run is Complete; fails at once when it Failed or was Canceled.
    # mode="reschedule" frees the worker slot between checks; a sensor never cancels the run.
    wait_for_flow = AACFlowRunSensor(
        task_id="wait_for_flow",
        aac_conn_id=AAC_CONN_ID,
        flow_run_id=run_flow.output,
        poke_interval=POKE_INTERVAL_SECONDS,
        timeout=TIMEOUT_SECONDS,
        mode="reschedule",
    )
    run_flow >> wait_for_flow
