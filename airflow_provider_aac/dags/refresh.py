"""The scheduled token-refresh DAG: keeps an ``aac`` connection's token chain alive and watched.

In single-writer mode this DAG is the only process that may spend the refresh token, so
it must run often, alone, and early enough that tasks never wait for it. In the other
modes it still pays off: tasks find a fresh access token and never refresh themselves,
and the health check warns before the refresh token's own deadline.

A file in the DAGs folder with these lines is all it takes (the commented
``airflow_provider_aac/example_dags/aac_token_refresh.py`` shows every setting)::

    from airflow_provider_aac.dags.refresh import create_refresh_dag

    dag = create_refresh_dag()  # aac_default, every minute, pool "aac_token_refresh"

and create its one-slot pool once (the DAG cannot; a task in a missing pool is never
scheduled)::

    airflow pools set aac_token_refresh 1 "AAC token refresh"
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_provider_aac.core.token_health import check_thresholds
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.operators.aac import AACRefreshTokenOperator
from airflow_provider_aac.operators.token_health import AACTokenHealthOperator
from airflow_provider_aac.tokens.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_REFRESH_DAG_ID,
)

Callback = Callable[[Any], None]
"""A task callback: a function of the task's context, or a notifier (``BaseNotifier``)."""

DEFAULT_POOL = "aac_token_refresh"
DEFAULT_SCHEDULE = timedelta(minutes=1)
DEFAULT_START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
# Far longer than a refresh can take (token endpoint lease 110 s, lock wait, REST retries),
# so it never cuts one short; short enough that a run stuck in a missing pool fails and
# alerts instead of blocking every later run (max_active_runs=1) in silence.
DAGRUN_TIMEOUT = timedelta(minutes=15)
POOL_COMMAND = 'airflow pools set {pool} 1 "AAC token refresh"'
# The whole DAG file a deployment needs, as one line: what the CLI's fix text and the docs show.
REFRESH_DAG_FILE = (
    "from airflow_provider_aac.dags.refresh import create_refresh_dag; "
    "dag = create_refresh_dag({dag_id!r}, aac_conn_id={conn_id!r})"
)


def schedule_interval_seconds(schedule: Any) -> float | None:
    """The longest gap between two scheduled runs, when the schedule says; None otherwise."""
    if schedule is None:
        return 0.0
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    if isinstance(schedule, str) and not schedule.startswith("@once") and schedule != "@continuous":
        try:
            from croniter import croniter
        except ImportError:  # pragma: no cover - croniter comes with Airflow
            return None
        if not croniter.is_valid(schedule):
            return None
        it = croniter(schedule, DEFAULT_START_DATE)
        times = [it.get_next(float) for _ in range(200)]
        return max(b - a for a, b in itertools.pairwise(times))
    return None


def create_refresh_dag(
    dag_id: str = DEFAULT_REFRESH_DAG_ID,
    *,
    aac_conn_id: str = DEFAULT_CONN_ID,
    schedule: timedelta | str | None = DEFAULT_SCHEDULE,
    refresh_min_ttl: float | None = None,
    pool: str = DEFAULT_POOL,
    warn_days: float = 14,
    fail_days: float = 3,
    start_date: datetime = DEFAULT_START_DATE,
    tags: Sequence[str] = ("aac",),
    on_failure_callback: Callback | Sequence[Callback] | None = None,
    on_health_warning: Callback | Sequence[Callback] | None = None,
) -> DAG:
    """A DAG that refreshes ``aac_conn_id``'s tokens ahead of need and checks their deadline.

    Why it is shaped this way:

    - one writer: ``max_active_runs=1`` and a one-slot ``pool`` (create it with
      ``airflow pools set <pool> 1 "AAC token refresh"``), so no two refreshes of this DAG
      ever overlap, even when a run is slow or someone triggers one by hand;
    - ``catchup=False``: missed intervals are worth nothing, only the next check is;
    - every minute by default, because AAC's access tokens may live only 5 minutes;
    - refreshes below :func:`~airflow_provider_aac.core.refresh_schedule.refresh_threshold` (or ``refresh_min_ttl`` seconds), which
      stays ahead of every task's own margin so tasks never wait;
    - created unpaused: in single-writer mode nothing else refreshes, and a paused
      refresh DAG would leave tasks waiting until the chain expires;
    - no retries: the next scheduled run is the retry, and a health failure must not be
      repeated into silence;
    - a 15-minute ``dagrun_timeout``: a run that cannot start (say, its pool is missing)
      fails, so alerts fire, instead of blocking all later runs without a word;
    - the two tasks are independent leaves, so either failing fails the run (Airflow
      judges a run by its leaves) and the health check runs even when a refresh fails.

    Alerts go where people look: ``on_failure_callback`` (a callable or notifier such as
    ``SlackNotifier`` or ``SmtpNotifier``, or a list of them) runs when either task fails,
    and ``on_health_warning`` when the health check warns (its task still succeeds). See
    ``docs/alerts.md``.

    The DAG id should be the connection's ``refresh_dag_id`` (default
    ``aac_token_refresh``): tasks in single-writer mode trigger that DAG when they need a
    fresher token. Use one refresh DAG per ``aac`` connection.

    Every argument is checked here, so a mistake is an import error at parse time rather
    than a silently broken refresh. Parsing reads no Airflow Variable and no database.
    """
    _require_text(dag_id, "dag_id")
    _require_text(aac_conn_id, "aac_conn_id")
    if not isinstance(pool, str) or not pool.strip():
        raise AACConfigError(
            f"pool must be the name of a pool with one slot, not {pool!r}. Create it with: "
            + POOL_COMMAND.format(pool=DEFAULT_POOL)
        )
    if isinstance(schedule, timedelta) and schedule <= timedelta(0):
        raise AACConfigError(f"schedule must be a positive interval, not {schedule!r}.")
    if refresh_min_ttl is not None and (
        isinstance(refresh_min_ttl, bool)
        or not isinstance(refresh_min_ttl, int | float)
        or not 0 < refresh_min_ttl < math.inf
    ):
        raise AACConfigError(
            f"refresh_min_ttl must be a number of seconds greater than 0, or None for the default "
            f"(at least two thirds of the access token's lifetime), not {refresh_min_ttl!r}."
        )
    if not isinstance(start_date, datetime):
        raise AACConfigError(f"start_date must be a datetime, not {start_date!r}.")
    check_thresholds(warn_days, fail_days)

    with DAG(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=DAGRUN_TIMEOUT,
        is_paused_upon_creation=False,
        default_args={"retries": 0},
        tags=list(tags),
        description=f"Keeps the AAC token chain of connection {aac_conn_id!r} alive and watched.",
        doc_md=_doc(aac_conn_id, pool, warn_days, fail_days),
    ) as dag:
        AACRefreshTokenOperator(
            task_id="refresh_token",
            aac_conn_id=aac_conn_id,
            min_ttl=refresh_min_ttl,
            run_interval=schedule_interval_seconds(schedule),
            pool=pool,
            pool_slots=1,
            on_failure_callback=on_failure_callback,
        )
        AACTokenHealthOperator(
            task_id="check_token_health",
            aac_conn_id=aac_conn_id,
            warn_days=warn_days,
            fail_days=fail_days,
            refresh_dag_id=dag_id,
            on_failure_callback=on_failure_callback,
            on_warning_callback=on_health_warning,
        )
    return dag


def _require_text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise AACConfigError(f"{name} must be a non-empty string, not {value!r}.")


def _doc(conn_id: str, pool: str, warn_days: float, fail_days: float) -> str:
    return f"""\
Refreshes the tokens of the AAC connection `{conn_id}` before tasks need them, and
checks the refresh token's own deadline (extra key `refresh_expires_at`, else the refresh
token's `exp` claim when it is a JWT) and the token family's absolute cap (extra key
`refresh_family_expires_at`), whichever comes first: a warning
{warn_days:g} days before, a failed task {fail_days:g} days before.

Needs its one-slot pool, once: `{POOL_COMMAND.format(pool=pool)}`

When `check_token_health` fails: generate a new pair in AAC (Preferences > OAuth 2.0 API
Tokens), store it in the connection and update `refresh_expires_at` (and
`refresh_family_expires_at`, if you record the cap).
"""
