"""The operator of the shipped refresh DAG: it refreshes the connection's token pair ahead of need."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aac.core.refresh_schedule import longest_safe_interval, refresh_threshold
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID
from airflow_provider_aac.tokens.publication import FORCE_GENERATION_CONF

if TYPE_CHECKING:
    from airflow.sdk import Context


class AACRefreshTokenOperator(BaseOperator):
    """Refresh the connection's token pair ahead of need (or now, with ``force``).

    The single writer of single-writer mode: run it only from the shipped refresh DAG (one
    active run, a one-slot pool), never from several DAGs at once. Its threshold is not
    capped at half the token's lifetime as a task's ``min_ttl`` is: it must refresh before
    tasks start to need a refresh, or in single-writer mode they would wait for it. Below
    the threshold it forces a refresh, which the token manager still skips if another
    process stored a newer generation meanwhile. Returns what it did, without any token.

    :param min_ttl: refresh when the access token has fewer seconds left (default:
        :func:`~airflow_provider_aac.core.refresh_schedule.refresh_threshold` of the token's
        lifetime and ``run_interval``).
    :param force: refresh even if the access token is fresh.
    :param run_interval: the longest gap between runs of this task, in seconds, if known.
    """

    template_fields: Sequence[str] = ("aac_conn_id",)
    ui_color = "#e8d8ff"

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        min_ttl: float | None = None,
        force: bool = False,
        run_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.min_ttl = min_ttl
        self.force = force
        self.run_interval = run_interval

    def execute(self, context: Context) -> dict[str, object]:
        manager = AACHook(self.aac_conn_id).tokens
        config, state = manager.read()
        lifetime = state.lifetime()
        left = state.seconds_left(time.time())
        threshold = (
            float(self.min_ttl)
            if self.min_ttl is not None
            else refresh_threshold(lifetime, self.run_interval or 0.0, task_min_ttl=config.min_ttl)
        )
        advised = longest_safe_interval(lifetime, self.run_interval)
        if advised is not None:
            self.log.warning(
                "AAC access tokens live %.0f s, but this task runs only every %.0f s: tasks may wait for "
                "a refresh. Schedule it more often (every %.0f s at most).",
                lifetime,
                self.run_interval,
                advised,
            )
        asked = _forced_generation(context)
        if self.force or left < threshold:
            outcome = manager.refresh(force=True, as_writer=True)
        elif asked is not None and asked == state.generation:
            self.log.info("A task asked to replace generation %d, which AAC rejected; refreshing.", asked)
            outcome = manager.refresh(stale_generation=asked, as_writer=True)
        else:
            manager.ensure_refreshable(config, as_writer=True)
            outcome = manager.outcome(config, state, refreshed=False, as_writer=True)
        self.log.info(
            "AAC connection %r: access token had %s left; refreshing below %.1f s. %s",
            self.aac_conn_id,
            "no known time" if math.isinf(left) else f"{left:.1f} s",
            threshold,
            f"Stored generation {outcome.generation}." if outcome.refreshed else "No refresh needed.",
        )
        summary = outcome.as_dict()
        summary["seconds_left"] = None if math.isinf(left) else round(left, 3)
        summary["refresh_below"] = round(threshold, 3)
        return summary


def _forced_generation(context: Context) -> int | None:
    """The generation a task asked this run to replace (single-writer mode, after a 401)."""
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    value = conf.get(FORCE_GENERATION_CONF) if isinstance(conf, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
