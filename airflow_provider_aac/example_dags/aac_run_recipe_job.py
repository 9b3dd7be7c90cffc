"""Run the outputs of one AAC recipe (a job group) and wait for them to finish.

This polls from the worker; pass ``deferrable=True`` to wait in the triggerer instead.
The start request carries ``x-execution-id``, so AAC never starts the job twice for one
request, and a retry of the task (after a crash, say) attaches to the job it started
instead of starting another (``resume=True``, the default).
"""

from __future__ import annotations

from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_aac.operators.aac import AACRunJobGroupOperator

# The `aac` connection (host: your AAC API base URL; extra: the token pair).
AAC_CONN_ID = "aac_default"
# The recipe to run: its wrangled dataset id (the number AAC shows for the recipe).
WRANGLED_DATASET_ID = 100
# How often to ask AAC for the job's status, and how long to wait at most.
POLL_INTERVAL_SECONDS = 30
TIMEOUT_SECONDS = 6 * 3600

with DAG(
    dag_id="aac_example_run_recipe_job",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["aac", "example"],
) as dag:
    AACRunJobGroupOperator(
        task_id="run_recipe_job",
        aac_conn_id=AAC_CONN_ID,
        wrangled_dataset_id=WRANGLED_DATASET_ID,
        # Optional: override the outputs' settings for this run, e.g.
        # overrides={"execution": "photon", "profiler": False},
        poll_interval=POLL_INTERVAL_SECONDS,
        timeout=TIMEOUT_SECONDS,
    )
