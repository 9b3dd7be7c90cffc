"""Keep an AAC connection's rotating tokens alive: copy this file into your DAGs folder.

What it does, every minute: refreshes the connection's token pair when the access token
is getting old (well before any task would need to), and checks how long the refresh
token itself has left. AAC does not tell clients that deadline, so record it yourself:
add ``"refresh_expires_at": "2026-03-31"`` (the expiry you chose when you generated the
pair) to the connection's extra, and the ``check_token_health`` task will log a warning
WARN_DAYS before and fail FAIL_DAYS before it, so your usual failure alerts reach you.

Before the first run, once:

    airflow pools set aac_token_refresh 1 "AAC token refresh"

(a one-slot pool: the refresh token may be spent by only one process at a time; a task
in a pool that does not exist is never scheduled).

Edit the constants below; they are plain Python on purpose. Reading them from Airflow
Variables would make every parse of this file query the metadata database.
"""

from __future__ import annotations

from datetime import timedelta

from airflow_provider_aac.dags.refresh import create_refresh_dag

# The `aac` connection whose tokens this DAG keeps alive (one refresh DAG per connection).
AAC_CONN_ID = "aac_default"
# Keep this equal to the connection's "refresh_dag_id" (default "aac_token_refresh"):
# tasks in single-writer mode ask this DAG for a fresh token by that name.
DAG_ID = "aac_token_refresh"
# How often to check. AAC access tokens may live only 5 minutes: keep it at a minute or two.
SCHEDULE = timedelta(minutes=1)
# Refresh when the access token has fewer seconds left than this. None: at least two
# thirds of its lifetime, and always enough that tasks never wait (see refresh_threshold).
REFRESH_MIN_TTL: float | None = None
# The one-slot pool created with the command above.
POOL = "aac_token_refresh"
# Days before the refresh token's deadline (extra "refresh_expires_at") to warn, then fail.
WARN_DAYS = 14
FAIL_DAYS = 3

dag = create_refresh_dag(
    DAG_ID,
    aac_conn_id=AAC_CONN_ID,
    schedule=SCHEDULE,
    refresh_min_ttl=REFRESH_MIN_TTL,
    pool=POOL,
    warn_days=WARN_DAYS,
    fail_days=FAIL_DAYS,
)
