"""The scheduled token-refresh DAG: keeps an ``aac`` connection's token chain alive and watched.

In single-writer mode this DAG is the only process that may spend the refresh token, so
it must run often, alone, and early enough that tasks never wait for it. In the other
modes it still pays off: tasks find a fresh access token and never refresh themselves,
and the health check warns before the refresh token's own deadline.

Drop ``example_dags/aac_token_refresh.py`` into the DAGs folder, or build your own::

    from airflow_provider_aac.dags.refresh import create_refresh_dag

    dag = create_refresh_dag()  # aac_default, every minute, pool "aac_token_refresh"

and create its one-slot pool once (the DAG cannot; a task in a missing pool is never
scheduled)::

    airflow pools set aac_token_refresh 1 "AAC token refresh"
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.token_health import check_thresholds
from airflow_provider_aac.core.token_state import effective_min_ttl, seconds_left
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.aac import AACRefreshTokenOperator
from airflow_provider_aac.operators.token_health import AACTokenHealthOperator
from airflow_provider_aac.tokens.connection import (
    DEFAULT_CONN_ID,
    DEFAULT_REFRESH_DAG_ID,
    RefreshMode,
    refuse_unwritable,
)
from airflow_provider_aac.tokens.manager import RefreshOutcome

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_POOL = "aac_token_refresh"
DEFAULT_SCHEDULE = timedelta(minutes=1)
DEFAULT_START_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
# Seconds from a scheduled time to the refresh task's check: a scheduler loop, queueing,
# starting the task process. Generous on purpose: too early costs one extra refresh, too
# late makes tasks wait.
RUN_LATENCY = 30.0
# Refresh once two thirds of the lifetime is left, at the latest: even a few missed runs
# (scheduler restart, busy pool) then leave tasks their margin.
EARLY_FRACTION = 2 / 3
POOL_COMMAND = 'airflow pools set {pool} 1 "AAC token refresh"'


def refresh_threshold(lifetime: float | None, interval: float, *, task_min_ttl: float | None = None) -> float:
    """Seconds of access-token life below which the refresh DAG refreshes.

    Tasks refresh (or, in single-writer mode, wait for this DAG) when the token has less
    than ``effective_min_ttl(min_ttl, lifetime)`` left: the connection's ``min_ttl``
    (default 300 s), capped at half the lifetime. So no task ever asks for more than half.
    Between two checks of this DAG up to ``interval + RUN_LATENCY`` seconds pass; a
    refresh DAG that leaves more than ``lifetime / 2 + interval + RUN_LATENCY`` after each
    check therefore never lets a task see a token it would not use, whatever ``min_ttl``
    the connection or a hook asks for. Two thirds of the lifetime is the floor on top,
    so a missed run or two still does not reach the tasks.

    For AAC's observed 5-minute tokens and a 1-minute schedule that is 240 s (a refresh
    every one or two runs); for 1-hour tokens, 2400 s (one refresh in about 20 minutes).
    A threshold at or above the lifetime means every run refreshes, which is right when
    runs are rare compared with the lifetime.

    This cannot be passed to ``TokenManager`` as a ``min_ttl``: ``effective_min_ttl``
    clips every ``min_ttl`` to half the lifetime, exactly the point where tasks start
    asking too. The operator below decides itself and then forces the refresh, which the
    token manager still performs only if nobody stored a newer generation meanwhile.

    With an unknown lifetime (no ``expires_in`` recorded and no ``exp``/``iat`` claims),
    nothing is capped: stay one interval ahead of what tasks ask for.
    """
    if lifetime is None or lifetime <= 0:
        return effective_min_ttl(task_min_ttl, None) + interval + RUN_LATENCY
    return max(lifetime * EARLY_FRACTION, lifetime / 2 + interval + RUN_LATENCY)


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


class AACScheduledRefreshOperator(AACRefreshTokenOperator):
    """The refresh DAG's writer: refreshes when the token is below the DAG's own threshold.

    Unlike its base class, ``min_ttl`` here is not capped at half the lifetime (see
    :func:`refresh_threshold`); when None, the threshold follows the token's lifetime and
    ``run_interval``. A fresh token is left alone, and that decision is logged with the
    numbers behind it.

    :param run_interval: the longest gap between runs of this task, in seconds (None: unknown).
    """

    def __init__(self, *, run_interval: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_interval = run_interval

    def execute(self, context: Context) -> dict[str, object]:
        hook = AACHook(self.aac_conn_id)
        manager = hook.tokens
        config, state = manager.read()
        mode = manager.mode(config)
        claims = state.claims(conn_id=self.aac_conn_id)
        lifetime = state.lifetime(claims)
        left = seconds_left(state, claims, time.time())
        interval = self.run_interval or 0.0
        if self.min_ttl is not None:
            threshold = float(self.min_ttl)
        else:
            threshold = refresh_threshold(lifetime, interval, task_min_ttl=config.min_ttl)
        if lifetime and self.run_interval and lifetime / 2 < self.run_interval + RUN_LATENCY:
            self.log.warning(
                "AAC access tokens live %.0f s, but this DAG runs only every %.0f s: tasks may wait for "
                "a refresh. Schedule the refresh DAG more often (every %.0f s at most).",
                lifetime,
                self.run_interval,
                max(lifetime / 2 - RUN_LATENCY, 1.0),
            )
        if self.force or left < threshold:
            outcome = manager.refresh(force=True, as_writer=True)
        else:
            self._check_writable(config, mode)
            outcome = RefreshOutcome(
                conn_id=self.aac_conn_id,
                mode=mode.value,
                generation=state.generation,
                refreshed=False,
                access_expires_at=state.expires_at(claims),
            )
        self.log.info(
            "AAC connection %r: access token had %s left; this DAG refreshes below %.0f s. %s",
            self.aac_conn_id,
            "no known time" if math.isinf(left) else f"{left:.0f} s",
            threshold,
            f"Stored generation {outcome.generation}." if outcome.refreshed else "No refresh needed.",
        )
        summary = outcome.as_dict()
        summary["seconds_left"] = None if math.isinf(left) else round(left, 3)
        summary["refresh_below"] = round(threshold, 3)
        return summary

    def _check_writable(self, config: Any, mode: RefreshMode) -> None:
        """Fail on the first run, not on the first refresh, when a refresh could not be stored."""
        refuse_unwritable(self.aac_conn_id)
        if mode in (RefreshMode.LOCK, RefreshMode.SINGLE_WRITER) and not config.airflow_api_conn_id:
            raise AACConfigError(
                f"Connection {self.aac_conn_id!r} is refreshed from a worker ({mode.value} mode), which stores "
                "the new pair through Airflow's REST API, but it has no 'airflow_api_conn_id'. Create an http "
                "connection to the api-server (host http://<api-server>:8080, login and password of a user "
                "allowed to edit connections) and name it in the extra."
            )


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
) -> DAG:
    """A DAG that refreshes ``aac_conn_id``'s tokens ahead of need and checks their deadline.

    Why it is shaped this way:

    - one writer: ``max_active_runs=1`` and a one-slot ``pool`` (create it with
      ``airflow pools set <pool> 1 "AAC token refresh"``), so no two refreshes of this DAG
      ever overlap, even when a run is slow or someone triggers one by hand;
    - ``catchup=False``: missed intervals are worth nothing, only the next check is;
    - every minute by default, because AAC's access tokens may live only 5 minutes;
    - refreshes below :func:`refresh_threshold` (or ``refresh_min_ttl`` seconds), which
      stays ahead of every task's own margin so tasks never wait;
    - created unpaused: in single-writer mode nothing else refreshes, and a paused
      refresh DAG would leave tasks waiting until the chain expires;
    - no retries: the next scheduled run is the retry, and a health failure must not be
      repeated into silence;
    - the two tasks are independent leaves, so either failing fails the run (Airflow
      judges a run by its leaves) and the health check runs even when a refresh fails.

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
        is_paused_upon_creation=False,
        default_args={"retries": 0},
        tags=list(tags),
        description=f"Keeps the AAC token chain of connection {aac_conn_id!r} alive and watched.",
        doc_md=_doc(aac_conn_id, pool, warn_days, fail_days),
    ) as dag:
        AACScheduledRefreshOperator(
            task_id="refresh_token",
            aac_conn_id=aac_conn_id,
            min_ttl=refresh_min_ttl,
            run_interval=schedule_interval_seconds(schedule),
            pool=pool,
            pool_slots=1,
        )
        AACTokenHealthOperator(
            task_id="check_token_health",
            aac_conn_id=aac_conn_id,
            warn_days=warn_days,
            fail_days=fail_days,
            refresh_dag_id=dag_id,
        )
    return dag


def _require_text(value: Any, name: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise AACConfigError(f"{name} must be a non-empty string, not {value!r}.")


def _doc(conn_id: str, pool: str, warn_days: float, fail_days: float) -> str:
    return f"""\
Refreshes the tokens of the AAC connection `{conn_id}` before tasks need them, and
checks the refresh token's own deadline (extra key `refresh_expires_at`): a warning
{warn_days:g} days before, a failed task {fail_days:g} days before.

Needs its one-slot pool, once: `{POOL_COMMAND.format(pool=pool)}`

When `check_token_health` fails: generate a new pair in AAC (Preferences > OAuth 2.0 API
Tokens), store it in the connection and update `refresh_expires_at`.
"""
