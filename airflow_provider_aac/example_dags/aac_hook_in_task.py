"""Use AACHook directly in a @task, for anything the operators do not cover.

``hook.request`` sends one call to ``/v4`` with a fresh access token (refreshed safely,
once for all workers, only when needed), retries what is safe to retry, and returns the
status code and the decoded JSON. Never log or return the token itself: the hook does not.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aac.hooks.aac import AACHook

# The `aac` connection (host: your AAC API base URL; extra: the token pair).
AAC_CONN_ID = "aac_default"

with DAG(
    dag_id="aac_example_hook_in_task",
    schedule=None,
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    tags=["aac", "example"],
) as dag:

    @task
    def summarize_workspace() -> dict[str, Any]:
        """Who the token belongs to, and the names of the first flows: a small report as XCom."""
        hook = AACHook(AAC_CONN_ID)
        person = hook.request("GET", "/v4/people/current").data
        flows = hook.request("GET", "/v4/flows", params={"limit": 10}).data
        names = [flow.get("name") for flow in flows.get("data", [])]
        print(f"Connected as {person.get('email')}; first flows: {names}")
        return {"user": person.get("email"), "flows": names}

    summarize_workspace()
