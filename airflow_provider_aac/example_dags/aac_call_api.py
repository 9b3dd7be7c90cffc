"""Call any AAC ``/v4`` endpoint from a task, with a token that is always fresh enough.

The decoded JSON answer is the task's return value (XCom), for downstream tasks.
``response_check`` turns an answer you do not expect into a failed task.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_provider_aac.operators.aac import AACApiOperator

# The `aac` connection (host: your AAC API base URL; extra: the token pair).
AAC_CONN_ID = "aac_default"
# How many plans to list per call.
PAGE_SIZE = 25


def has_data_list(answer: Any) -> bool:
    """AAC's listings answer {"data": [...]}; anything else fails the task."""
    return isinstance(answer, dict) and isinstance(answer.get("data"), list)


with DAG(
    dag_id="aac_example_call_api",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["aac", "example"],
) as dag:
    AACApiOperator(
        task_id="list_plans",
        aac_conn_id=AAC_CONN_ID,
        method="GET",
        endpoint="/v4/plans",
        # Sent as ?limit=25 (the argument is query_params: `params` belongs to Airflow).
        query_params={"limit": PAGE_SIZE},
        response_check=has_data_list,
    )
