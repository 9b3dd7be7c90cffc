"""Single-writer mode, seen from a task: ask the refresh DAG for a token, then wait for it.

Tasks in this mode never spend the refresh token. A task that needs a fresher one asks
for one refresh DAG run per generation (through the Airflow API) and reads the connection
until that DAG has published a fresh token, or its budget runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from airflow_provider_aac import metrics
from airflow_provider_aac.core.token_state import TokenState, effective_min_ttl
from airflow_provider_aac.errors import AACError, AACRefreshNotPublishedError, AACTokenChainBrokenError
from airflow_provider_aac.tokens.connection import AACConnectionConfig, read_config

if TYPE_CHECKING:
    from airflow_provider_aac.tokens.airflow_api import AirflowApiClient

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_WAIT = 120.0
PUBLISH_POLL_INTERVAL = 1.0
FORCE_GENERATION_CONF = "aac_force_generation"


class PublicationWait:
    """One task's wait for the refresh DAG of ``conn_id``."""

    def __init__(
        self,
        conn_id: str,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        api: Callable[[], AirflowApiClient],
        dead_chain_error: Callable[[TokenState], AACTokenChainBrokenError],
    ) -> None:
        self.conn_id = conn_id
        self._clock = clock
        self._sleep = sleep
        self._api = api
        self._dead_chain_error = dead_chain_error

    def wait(
        self,
        config: AACConnectionConfig,
        min_ttl: float | None,
        stale_generation: int | None,
        *,
        budget: float | None = None,
    ) -> TokenState:
        """A state fresh enough for ``min_ttl`` (and newer than ``stale_generation``), once published."""
        started = self._clock()
        outcome = "not_published"
        try:
            state, outcome = self._wait(config, min_ttl, stale_generation, budget)
            return state
        except AACTokenChainBrokenError:
            outcome = "chain_broken"
            raise
        finally:
            metrics.publication_waited(self.conn_id, outcome, self._clock() - started)

    def _wait(
        self,
        config: AACConnectionConfig,
        min_ttl: float | None,
        stale_generation: int | None,
        budget: float | None,
    ) -> tuple[TokenState, str]:
        state = config.token_state()
        self._request_refresh_run(config, state.generation, forced=stale_generation is not None)
        if budget is None:
            budget = config.seconds("publish_wait") or DEFAULT_PUBLISH_WAIT
        deadline = self._clock() + budget
        log.info(
            "AAC connection %r: waiting up to %.0f s for the refresh DAG %r to publish a fresh token.",
            self.conn_id,
            budget,
            config.refresh_dag_id,
        )
        while True:
            published = stale_generation is None or state.generation != stale_generation
            if published and state.is_fresh(self._clock(), min_ttl):
                return state, "published"
            if state.chain_is_dead:
                raise self._dead_chain_error(state)
            if self._clock() >= deadline:
                break
            self._sleep(min(PUBLISH_POLL_INTERVAL, max(0.0, deadline - self._clock())))
            state = read_config(self.conn_id).token_state()
        left = state.seconds_left(self._clock())
        if left > 0 and (stale_generation is None or state.generation != stale_generation):
            log.warning(
                "AAC connection %r: no fresher token was published; using the stored one (%.0f s left, "
                "wanted %.0f s).",
                self.conn_id,
                left,
                effective_min_ttl(min_ttl, state.lifetime()),
            )
            return state, "used_stored"
        raise AACRefreshNotPublishedError(
            f"Connection {self.conn_id!r} is in single-writer mode: only the refresh DAG "
            f"{config.refresh_dag_id!r} may spend its refresh token, and it published no fresh access token "
            f"within {budget:.0f} s. Make sure that DAG is unpaused and its pool has a free slot (or give "
            "the connection a 'lock_conn_id' and 'airflow_api_conn_id' so workers can refresh safely)."
        )

    def _request_refresh_run(self, config: AACConnectionConfig, generation: int, *, forced: bool) -> None:
        """Ask for one refresh DAG run per generation; a forced one replaces a rejected token.

        The run id names the connection and generation, so the many tasks that need the
        same refresh ask once: Airflow refuses a second run with the same id.
        """
        if not config.airflow_api_conn_id or config.extra.get("trigger_refresh_dag") is False:
            return
        kind = "forced" if forced else "due"
        run_id = f"aac_{kind}__{self.conn_id}__g{generation}"
        conf = {FORCE_GENERATION_CONF: generation} if forced else {}
        try:
            created = self._api().trigger_dag_run(config.refresh_dag_id, conf, run_id=run_id)
        except AACError as err:
            log.warning("AAC connection %r: could not ask for a refresh DAG run: %s", self.conn_id, err)
        else:
            log.info(
                "AAC connection %r: %s refresh DAG run %s.",
                self.conn_id,
                "asked for" if created else "a request is already pending:",
                run_id,
            )
