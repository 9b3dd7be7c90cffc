"""Choosing who may spend the refresh token, and handing out access tokens.

The fast path reads nothing: the access token this process last read or stored is
reused from memory while it has ``min_ttl`` seconds left (``tokens.token_cache``). When
it has not, one thread per process reads the connection, and only when the stored token
is not fresh either does the manager pick a mode by what the process can do (or what the
connection says) and run the refresh in it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aac import metrics
from airflow_provider_aac.core.keeping import Rescue
from airflow_provider_aac.core.refresh import Refresher, process_identity
from airflow_provider_aac.core.token_state import TokenState
from airflow_provider_aac.core.token_store import ChangeFeed, Guard, Look, Section, no_guard, within
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.tokens.connection import (
    AACConnectionConfig,
    RefreshMode,
    RefreshPlan,
    Spender,
    Store,
    checked_plan,
    orm_available,
    plan_refresh,
    read_config,
    refuse_unwritable,
)
from airflow_provider_aac.tokens.locks import LOCK_RELEASE_BOUND, lock_connection, refresh_lock
from airflow_provider_aac.tokens.masking import mask_tokens
from airflow_provider_aac.tokens.metadata_db import metadata_db_look, metadata_db_section
from airflow_provider_aac.tokens.publication import PublicationWait
from airflow_provider_aac.tokens.rescue_places import rescue_for
from airflow_provider_aac.tokens.row_changes import row_changes
from airflow_provider_aac.tokens.token_cache import Reading, TokenCache, process_token_cache, run_token_work

if TYPE_CHECKING:
    from airflow_provider_aac.tokens.airflow_api import AirflowApiClient
    from airflow_provider_aac.tokens.rest_store import RestTokenStore

log = logging.getLogger(__name__)
T = TypeVar("T")

# A token rejected this soon after it was issued is not the problem (a disabled user,
# another workspace, a revoked family): replacing it again would only rotate the chain.
REJECTION_COOLDOWN = 60.0
# Short-lived tokens shorten the cool-down to this share of their life, or a 401 would outlast them.
REJECTION_COOLDOWN_SHARE = 1 / 4


@dataclass(frozen=True)
class RefreshOutcome:
    """What a refresh did, without the tokens: safe to log and to return from a task."""

    conn_id: str
    mode: str
    generation: int
    refreshed: bool
    access_expires_at: float | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class TokenManager:
    """Access tokens for one ``aac`` connection, shared through the process's token cache.

    :param cache: where fresh access tokens are kept between calls; by default the one
        cache of this process, so every hook, sensor and trigger of a connection shares it.
    """

    def __init__(
        self,
        conn_id: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        publish_wait: float | None = None,
        rescue: Rescue | None = None,
        cache: TokenCache | None = None,
    ) -> None:
        self.conn_id = conn_id
        self._cached = (cache or process_token_cache()).entry(conn_id)
        self._clock = clock
        self._sleep = sleep
        self._publish_wait = publish_wait
        self._rescue = rescue
        from airflow_provider_aac.transport.token_post import requests_token_transport

        self._transport = requests_token_transport()

    def read(self) -> Reading:
        """The connection as stored now; what it holds replaces what the cache held."""
        config = read_config(self.conn_id)
        state = config.token_state()
        mask_tokens(self.conn_id, state.access_token, state.refresh_token)
        self._cached.keep(config, state)
        return config, state

    def fresh(self, min_ttl: float | None = None) -> Reading:
        """The connection and a state whose access token has ``min_ttl`` seconds left, refreshing if needed.

        Served from memory while the held token is fresh enough; otherwise one thread of
        the process reads (and, if need be, refreshes) while the others wait for it.
        """
        held = self._cached.fresh(self._clock(), min_ttl)
        if held is not None:
            return held
        with self._cached.flight:
            held = self._cached.fresh(self._clock(), min_ttl)
            if held is not None:
                return held
            config, state = self.read()
            wanted = config.min_ttl if min_ttl is None else min_ttl
            if not state.is_fresh(self._clock(), wanted):
                state = self._refresh(config, state, min_ttl=wanted, stale_generation=None, as_writer=False)
            return config, state

    async def afresh(self, min_ttl: float | None = None) -> Reading:
        """As ``fresh``, for the triggerer: memory on the loop, the rest on the token-work threads."""
        held = self._cached.fresh(self._clock(), min_ttl)
        if held is not None:
            return held
        async with self._cached.async_flight():
            held = self._cached.fresh(self._clock(), min_ttl)
            if held is not None:
                return held
            return await run_token_work(self.fresh, min_ttl)

    def refresh(
        self,
        *,
        force: bool = False,
        min_ttl: float | None = None,
        as_writer: bool = False,
        stale_generation: int | None = None,
    ) -> RefreshOutcome:
        """Refresh when the token is not fresh enough (or always, with ``force``).

        ``as_writer`` marks the refresh operator: in single-writer mode it is the one
        process allowed to spend the refresh token. ``stale_generation`` refreshes only
        while that generation is still stored (a forced refresh others asked for).
        """
        config, state = self.read()
        before = state.generation
        wanted = config.min_ttl if min_ttl is None else min_ttl
        stale = before if force else stale_generation
        if stale is None and state.is_fresh(self._clock(), wanted):
            after = state
        else:
            after = self._refresh(config, state, min_ttl=wanted, stale_generation=stale, as_writer=as_writer)
        return self.outcome(config, after, refreshed=after.generation != before, as_writer=as_writer)

    def outcome(
        self, config: AACConnectionConfig, state: TokenState, *, refreshed: bool, as_writer: bool = False
    ) -> RefreshOutcome:
        return RefreshOutcome(
            conn_id=self.conn_id,
            mode=self.mode(config, as_writer=as_writer).value,
            generation=state.generation,
            refreshed=refreshed,
            access_expires_at=state.expires_at(),
        )

    def ensure_refreshable(self, config: AACConnectionConfig, *, as_writer: bool = False) -> None:
        """Fail now, not at the first refresh hours later, when a refresh could not be stored."""
        refuse_unwritable(self.conn_id)
        if self.mode(config, as_writer=as_writer) in (RefreshMode.LOCK, RefreshMode.SINGLE_WRITER):
            self._api_conn_id(config)

    def replace_rejected(self, rejected_generation: int) -> TokenState | None:
        """After a 401: a replacement, unless the rejected token is too new to be the problem.

        Returns the newer state another process already stored, or a refreshed one, or
        None when the rejected token was issued within the cool-down (then the 401 means
        something a new token cannot fix, and the caller reports it).
        """
        self._cached.forget(rejected_generation)
        try:
            replacement, how = self._replacement(rejected_generation)
        except Exception:
            metrics.token_replacement(self.conn_id, "failed")
            raise
        metrics.token_replacement(self.conn_id, how)
        return replacement

    def _replacement(self, rejected_generation: int) -> tuple[TokenState | None, str]:
        with self._cached.flight:
            held = self._cached.fresh(self._clock(), None)
            if held is not None:
                return held[1], "newer_stored"
            config, state = self.read()
            if state.generation != rejected_generation:
                return state, "newer_stored"
            if self.rejection_is_not_about_expiry(state):
                return None, "refused_recent"
            refreshed = self._refresh(
                config, state, min_ttl=config.min_ttl, stale_generation=rejected_generation, as_writer=False
            )
            return refreshed, "refreshed"

    def rejection_is_not_about_expiry(self, state: TokenState) -> bool:
        if state.refreshed_at is None:
            return False
        lifetime = state.lifetime()
        cooldown = (
            REJECTION_COOLDOWN
            if lifetime is None
            else min(REJECTION_COOLDOWN, lifetime * REJECTION_COOLDOWN_SHARE)
        )
        return self._clock() - state.refreshed_at < cooldown

    def plan(self, config: AACConnectionConfig, *, as_writer: bool = False) -> RefreshPlan:
        """Which store, which spender and which lock this process refreshes with (``tokens.connection``)."""
        return checked_plan(config, orm=orm_available(), as_writer=as_writer)

    def mode(self, config: AACConnectionConfig, *, as_writer: bool = False) -> RefreshMode:
        """The user-facing name of this process's plan, refused when it cannot work here."""
        return self.plan(config, as_writer=as_writer).mode

    def mode_of(self, config: AACConnectionConfig, *, orm: bool, as_writer: bool = False) -> RefreshMode:
        """The mode a process of that kind would use (for reports on other components), unchecked."""
        return plan_refresh(config, orm=orm, as_writer=as_writer).mode

    def tasks_wait_for_refresh_dag(self, config: AACConnectionConfig) -> bool:
        """Whether tasks, on workers where Airflow 3 blocks the ORM, leave the spending to the refresh DAG."""
        return plan_refresh(config, orm=False, as_writer=False).spender is Spender.REFRESH_DAG

    def refresher(
        self, config: AACConnectionConfig, mode: RefreshMode | None = None, *, lock_conn: Any = None
    ) -> Refresher:
        """The refresh engine for ``config``; ``mode`` is recorded with the pairs it keeps.

        ``lock_conn``: the lock connection, when the caller has looked it up already.
        """
        lease = config.seconds("refresh_lease")
        patience = config.seconds("store_patience")
        refresher = Refresher(
            conn_id=self.conn_id,
            transport=self._transport,
            clock=self._clock,
            sleep=self._sleep,
            mode=None if mode is None else mode.value,
            rescue=self._rescue if self._rescue is not None else rescue_for(config, lock_conn=lock_conn),
            observer=metrics.RefreshMetrics(self.conn_id),
        )
        if lease is not None:
            if lease < 3:
                raise AACConfigError(
                    f"Connection {self.conn_id!r} has refresh_lease {lease}; use at least 3 s."
                )
            refresher.lease = lease
        if patience is not None:
            refresher.store_patience = patience
        return refresher

    def _refresh(
        self,
        config: AACConnectionConfig,
        state: TokenState,
        *,
        min_ttl: float | None,
        stale_generation: int | None,
        as_writer: bool,
    ) -> TokenState:
        """The refresh in the mode this process uses, measured (``metrics.refresh_finished``)."""
        plan = self.plan(config, as_writer=as_writer)
        started = time.monotonic()
        outcome = "error"
        try:
            after = self._refresh_in(plan, config, state, min_ttl, stale_generation)
            if after.generation == state.generation:
                outcome = "not_needed"
            else:
                outcome = "refreshed" if after.refreshed_by == process_identity() else "by_other"
            return after
        except Exception as err:
            outcome = metrics.refresh_outcome(err)
            raise
        finally:
            metrics.refresh_finished(self.conn_id, plan.mode.value, outcome, time.monotonic() - started)

    def _refresh_in(
        self,
        plan: RefreshPlan,
        config: AACConnectionConfig,
        state: TokenState,
        min_ttl: float | None,
        stale_generation: int | None,
    ) -> TokenState:
        refuse_unwritable(self.conn_id)
        lock_conn = self._lock_connection(config)
        refresher = self.refresher(config, plan.mode, lock_conn=lock_conn)
        if state.chain_is_dead:
            raise refresher.dead_chain_error(state)
        log.info("AAC connection %r: token refresh needed; using %s mode.", self.conn_id, plan.mode.value)
        if plan.spender is Spender.REFRESH_DAG:
            state = PublicationWait(
                self.conn_id,
                clock=self._clock,
                sleep=self._sleep,
                api=lambda: self._api_client(config),
                dead_chain_error=refresher.dead_chain_error,
            ).wait(config, min_ttl, stale_generation, budget=self._publish_wait)
        else:
            section = self._section(plan.store, config)
            changes, look = self._watching(plan.store)
            state = self._locked(
                config,
                refresher,
                lambda guard: refresher.with_lease(
                    section,
                    min_ttl=min_ttl,
                    stale_generation=stale_generation,
                    guard=guard,
                    changes=changes,
                    look=look,
                ),
                lock_conn=lock_conn,
            )
        mask_tokens(self.conn_id, state.access_token, state.refresh_token)
        self._cached.keep(config, state)
        return state

    def restore(self) -> TokenState | None:
        """Store a pair an earlier refresh held back; None when nothing is held for the stored token."""
        config, _ = self.read()
        lock_conn = self._lock_connection(config)
        refresher = self.refresher(config, lock_conn=lock_conn)
        section = self._section(Store.METADATA_DB if orm_available() else Store.REST, config)
        restored = self._locked(
            config, refresher, lambda guard: refresher.complete_held(section), lock_conn=lock_conn
        )
        self._cached.forget()
        return restored

    def _section(self, store: Store, config: AACConnectionConfig) -> Section:
        """The exclusive context the algorithm opens for each step: a row transaction, or the REST store."""
        if store is Store.METADATA_DB:
            return lambda: metadata_db_section(self.conn_id)
        return within(self._rest_store(config))

    def _watching(self, store: Store) -> tuple[ChangeFeed | None, Look | None]:
        """How a waiter hears of the store's writes and reads them: the row's NOTIFY and an unlocked read.

        The REST store sends no news (its waiters poll) and has no cheaper read than its own.
        """
        if store is Store.METADATA_DB:
            return lambda: row_changes(self.conn_id, self._sleep), lambda: metadata_db_look(self.conn_id)
        return None, None

    def _locked(
        self, config: AACConnectionConfig, refresher: Refresher, run: Callable[[Guard], T], *, lock_conn: Any
    ) -> T:
        """Every refresher of a connection that names a lock takes it, in every mode."""
        if lock_conn is None:
            return run(no_guard)
        wait = refresher.max_wait + LOCK_RELEASE_BOUND
        with refresh_lock(lock_conn, self.conn_id, wait=wait) as guard:
            return run(guard)

    def _lock_connection(self, config: AACConnectionConfig) -> Any:
        """The lock connection the connection names, looked up once per refresh for the lock and the rescue."""
        return lock_connection(config.lock_conn_id, self.conn_id) if config.lock_conn_id else None

    def _rest_store(self, config: AACConnectionConfig) -> RestTokenStore:
        from airflow_provider_aac.tokens.rest_store import RestTokenStore

        return RestTokenStore(self.conn_id, self._api_client(config), self._cached)

    def _api_client(self, config: AACConnectionConfig) -> AirflowApiClient:
        """The process's client for the connection (one lookup of the API connection, one login), until refused."""
        from airflow_provider_aac.tokens.airflow_api import AirflowApiClient

        api_conn_id = self._api_conn_id(config)
        api = self._cached.api
        if api is None or api.api_conn_id != api_conn_id or api.refused:
            api = self._cached.api = AirflowApiClient(
                api_conn_id, aac_conn_id=self.conn_id, clock=self._clock, sleep=self._sleep
            )
        return api

    def _api_conn_id(self, config: AACConnectionConfig) -> str:
        api_conn_id = config.airflow_api_conn_id
        if not api_conn_id:
            raise AACConfigError(
                f"Connection {self.conn_id!r} must be refreshed from a worker, which writes the new pair "
                "through Airflow's REST API, but it has no 'airflow_api_conn_id'. Create an http "
                "connection to the api-server (host https://<api-server>, or plain http:// with "
                '"allow_insecure_http": true in its extra on a trusted network; login and password of a '
                "user allowed to edit connections) and name it in the extra."
            )
        return api_conn_id
