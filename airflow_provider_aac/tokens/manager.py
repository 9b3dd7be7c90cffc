"""Choosing who may spend the refresh token, and handing out access tokens.

The fast path is one read of the connection: a stored access token with ``min_ttl``
seconds left is used as it is. Only when it is not does the manager pick a mode by what
the process can do (or what the connection says) and run the refresh in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from airflow_provider_aac.core.errors import AACConfigError, AACError, AACRefreshNotPublishedError
from airflow_provider_aac.core.refresh import Refresher, TokenStore
from airflow_provider_aac.core.token_state import TokenState, effective_min_ttl, is_fresh, seconds_left
from airflow_provider_aac.secrets import mask
from airflow_provider_aac.tokens.airflow_api import AirflowApiClient, RestTokenStore
from airflow_provider_aac.tokens.connection import (
    AACConnectionConfig,
    RefreshMode,
    read_config,
    refuse_unwritable,
)
from airflow_provider_aac.tokens.locks import refresh_lock
from airflow_provider_aac.tokens.metadata_db import metadata_db_section, orm_available
from airflow_provider_aac.transport import requests_token_transport

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_WAIT = 120.0
PUBLISH_POLL_INTERVAL = 1.0


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did, without the tokens: safe to log and to return from a task."""

    conn_id: str
    mode: str
    generation: int
    refreshed: bool
    access_expires_at: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "conn_id": self.conn_id,
            "mode": self.mode,
            "generation": self.generation,
            "refreshed": self.refreshed,
            "access_expires_at": self.access_expires_at,
        }


class TokenManager:
    """Access tokens for one ``aac`` connection; reads the connection afresh on every call."""

    def __init__(
        self,
        conn_id: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        publish_wait: float | None = None,
    ) -> None:
        self.conn_id = conn_id
        self._clock = clock
        self._sleep = sleep
        self._publish_wait = publish_wait
        self._refresher = Refresher(
            conn_id=conn_id,
            transport=requests_token_transport(session or requests.Session()),
            clock=clock,
            sleep=sleep,
        )
        self._api: AirflowApiClient | None = None

    def read(self) -> tuple[AACConnectionConfig, TokenState]:
        config = read_config(self.conn_id)
        state = config.token_state()
        mask(state.access_token, state.refresh_token)
        return config, state

    def fresh(self, min_ttl: float | None = None) -> tuple[AACConnectionConfig, TokenState]:
        """The connection and a state whose access token has ``min_ttl`` seconds left, refreshing if needed."""
        config, state = self.read()
        wanted = config.min_ttl if min_ttl is None else min_ttl
        if self._is_fresh(state, wanted):
            return config, state
        return config, self._refresh(config, min_ttl=wanted, stale_generation=None, as_writer=False)

    def refresh(
        self, *, force: bool = False, min_ttl: float | None = None, as_writer: bool = False
    ) -> RefreshOutcome:
        """Refresh when the token is not fresh enough (or always, with ``force``).

        ``as_writer`` marks the refresh operator: in single-writer mode it is the one
        process allowed to spend the refresh token.
        """
        config, state = self.read()
        before = state.generation
        wanted = config.min_ttl if min_ttl is None else min_ttl
        if not force and self._is_fresh(state, wanted):
            after = state
        else:
            after = self._refresh(
                config, min_ttl=wanted, stale_generation=before if force else None, as_writer=as_writer
            )
        return self.outcome(config, after, refreshed=after.generation != before)

    def _is_fresh(self, state: TokenState, min_ttl: float | None) -> bool:
        return is_fresh(state, state.expiry_claims(conn_id=self.conn_id), self._clock(), min_ttl)

    def outcome(self, config: AACConnectionConfig, state: TokenState, *, refreshed: bool) -> RefreshOutcome:
        return RefreshOutcome(
            conn_id=self.conn_id,
            mode=self.mode(config).value,
            generation=state.generation,
            refreshed=refreshed,
            access_expires_at=state.expires_at(state.expiry_claims(conn_id=self.conn_id)),
        )

    def ensure_refreshable(self, config: AACConnectionConfig) -> None:
        """Fail now, not at the first refresh hours later, when a refresh could not be stored."""
        refuse_unwritable(self.conn_id)
        if self.mode(config) in (RefreshMode.LOCK, RefreshMode.SINGLE_WRITER):
            self._api_conn_id(config)

    def replace_rejected(self, rejected_generation: int) -> TokenState:
        """After a 401: refresh unless another process already replaced that generation."""
        config, _ = self.read()
        return self._refresh(
            config, min_ttl=config.min_ttl, stale_generation=rejected_generation, as_writer=False
        )

    def mode(self, config: AACConnectionConfig) -> RefreshMode:
        chosen = config.refresh_mode
        if chosen is RefreshMode.AUTO:
            if orm_available():
                return RefreshMode.METADATA_DB
            return RefreshMode.LOCK if config.lock_conn_id else RefreshMode.SINGLE_WRITER
        if chosen is RefreshMode.METADATA_DB and not orm_available():
            raise AACConfigError(
                f"Connection {self.conn_id!r} asks for refresh_mode 'metadata_db', but this process "
                "cannot use Airflow's metadata DB (Airflow 3 blocks it on workers and triggerers). "
                "Use 'lock' (with 'lock_conn_id' and 'airflow_api_conn_id') or 'single_writer', or 'auto'."
            )
        if chosen is RefreshMode.LOCK and not config.lock_conn_id:
            raise AACConfigError(
                f"Connection {self.conn_id!r} asks for refresh_mode 'lock' but has no 'lock_conn_id'. Add "
                "the id of a postgres or redis connection to its extra."
            )
        return chosen

    def _refresh(
        self,
        config: AACConnectionConfig,
        *,
        min_ttl: float | None,
        stale_generation: int | None,
        as_writer: bool,
    ) -> TokenState:
        mode = self.mode(config)
        log.info("AAC connection %r: token refresh needed; using %s mode.", self.conn_id, mode.value)
        refuse_unwritable(self.conn_id)
        if mode is RefreshMode.METADATA_DB:
            state = self._refresher.with_lease(
                lambda: metadata_db_section(self.conn_id), min_ttl=min_ttl, stale_generation=stale_generation
            )
        elif mode is RefreshMode.LOCK:
            lock_conn_id = config.lock_conn_id
            assert lock_conn_id is not None
            store = RestTokenStore(self.conn_id, self._api_client(config))

            @contextmanager
            def locked() -> Iterator[TokenStore]:
                lease = self._refresher.lease + 30.0
                with refresh_lock(lock_conn_id, self.conn_id, wait=lease, lease=lease):
                    yield store

            state = self._refresher.under_lock(locked, min_ttl=min_ttl, stale_generation=stale_generation)
        elif as_writer:
            store = RestTokenStore(self.conn_id, self._api_client(config))
            state = self._refresher.under_lock(
                lambda: _as_section(store), min_ttl=min_ttl, stale_generation=stale_generation
            )
        else:
            state = self._wait_for_publication(config, min_ttl, stale_generation)
        mask(state.access_token, state.refresh_token)
        return state

    def _api_client(self, config: AACConnectionConfig) -> AirflowApiClient:
        api_conn_id = self._api_conn_id(config)
        if self._api is None or self._api.api_conn_id != api_conn_id:
            self._api = AirflowApiClient(api_conn_id, clock=self._clock, sleep=self._sleep)
        return self._api

    def _api_conn_id(self, config: AACConnectionConfig) -> str:
        api_conn_id = config.airflow_api_conn_id
        if not api_conn_id:
            raise AACConfigError(
                f"Connection {self.conn_id!r} must be refreshed from a worker, which writes the new pair "
                "through Airflow's REST API, but it has no 'airflow_api_conn_id'. Create an http "
                "connection to the api-server (host http://<api-server>:8080, login and password of a "
                "user allowed to edit connections) and name it in the extra."
            )
        return api_conn_id

    def _wait_for_publication(
        self, config: AACConnectionConfig, min_ttl: float | None, stale_generation: int | None
    ) -> TokenState:
        """Single-writer mode: tasks never spend the token; they wait for the refresh DAG."""
        state = config.token_state()
        self._request_refresh_run(config)
        budget = self._publish_wait
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
            if published and self._is_fresh(state, min_ttl):
                return state
            if self._clock() >= deadline:
                break
            self._sleep(min(PUBLISH_POLL_INTERVAL, max(0.0, deadline - self._clock())))
            state = read_config(self.conn_id).token_state()
        left = seconds_left(state, state.expiry_claims(conn_id=self.conn_id), self._clock())
        if left > 0 and (stale_generation is None or state.generation != stale_generation):
            log.warning(
                "AAC connection %r: no fresher token was published; using the stored one (%.0f s left, "
                "wanted %.0f s).",
                self.conn_id,
                left,
                effective_min_ttl(min_ttl, state.lifetime()),
            )
            return state
        raise AACRefreshNotPublishedError(
            f"Connection {self.conn_id!r} is in single-writer mode: only the refresh DAG "
            f"{config.refresh_dag_id!r} may spend its refresh token, and it published no fresh access token "
            f"within {budget:.0f} s. Make sure that DAG is unpaused and its pool has a free slot (or give "
            "the connection a 'lock_conn_id' and 'airflow_api_conn_id' so workers can refresh safely)."
        )

    def _request_refresh_run(self, config: AACConnectionConfig) -> None:
        if not config.airflow_api_conn_id or config.extra.get("trigger_refresh_dag") is False:
            return
        try:
            run_id = self._api_client(config).trigger_dag_run(config.refresh_dag_id)
        except AACError as err:
            log.warning("AAC connection %r: could not ask for a refresh DAG run: %s", self.conn_id, err)
        else:
            log.info("AAC connection %r: asked for refresh DAG run %s.", self.conn_id, run_id)


@contextmanager
def _as_section(store: TokenStore) -> Iterator[TokenStore]:
    yield store
