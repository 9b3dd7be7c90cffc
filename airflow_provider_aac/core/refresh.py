"""The refresh algorithm: spend the refresh token once, persist the new pair first.

Two shapes, one set of steps:

- ``under_lock``: the caller holds an exclusive section (an advisory or Redis lock, or
  the single-writer guarantee of the refresh DAG) for the whole refresh.
- ``with_lease``: for the metadata DB. A short transaction that locks the connection row
  claims the refresh by writing an in-flight marker with a lease and commits, the token
  request runs with no row lock held, and a second short transaction stores the result.
  Other processes that see a live marker wait for the new generation instead of
  refreshing. This keeps row locks off the network path and leaves a committed marker
  behind if the process dies mid-refresh, so the next refresh can say what happened.

Both re-read the state once they are exclusive and refresh only if it is still needed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_aac.core.errors import (
    AACError,
    AACStoreError,
    AACTokenChainBrokenError,
    AACTransientError,
)
from airflow_provider_aac.core.oauth import (
    AACRefreshOutcomeUnknownError,
    TokenGrant,
    TokenTransport,
    request_refresh,
    resolve_token_endpoint,
)
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_state import (
    LAST_INTERRUPTED,
    InFlight,
    TokenState,
    Version,
    fingerprint,
    is_fresh,
)

log = logging.getLogger(__name__)

TOKEN_ENDPOINT_BACKOFF = Backoff(attempts=3, base=0.5, cap=5.0, max_retry_after=20.0)


class TokenStore(Protocol):
    """Where one connection's token state lives, seen from inside an exclusive section."""

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        """The current state and the whole extra, read fresh."""

    def write(self, extra: dict[str, Any], *, expected: Version) -> None:
        """Persist ``extra``; refuse unless the stored state is still ``expected`` (see check_version)."""

    def check_writable(self) -> None:
        """Raise unless a write will be what every reader sees; called before the token is spent."""


Section = Callable[[], AbstractContextManager[TokenStore]]


@contextmanager
def _reuse(store: TokenStore) -> Iterator[TokenStore]:
    """The section we are already in, for steps that otherwise open their own."""
    yield store


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Refresher:
    """Runs the refresh steps for one connection; every dependency is passed in."""

    conn_id: str
    transport: TokenTransport
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    identity: str = field(default_factory=process_identity)
    token_timeout: float = 20.0
    backoff: Backoff = TOKEN_ENDPOINT_BACKOFF
    poll_interval: float = 0.2

    @property
    def lease(self) -> float:
        """Longest a refresh can take: every attempt timing out plus the longest waits between."""
        return self.backoff.attempts * self.token_timeout + (self.backoff.attempts - 1) * (
            self.backoff.max_retry_after + self.backoff.cap
        )

    def under_lock(
        self, section: Section, *, min_ttl: float | None, stale_generation: int | None = None
    ) -> TokenState:
        """Refresh if the stored token is not fresh enough, or still is ``stale_generation``.

        A live claim by a process in metadata-DB mode (which holds no lock while its
        request is out) is waited for outside the section, never presented over.
        """
        deadline = self.clock() + self.lease
        while True:
            with section() as store:
                state, extra = store.read()
                if not self._refresh_needed(state, min_ttl, stale_generation):
                    return state
                holder = self._live_holder(state)
                if holder is None:
                    attempt, marked_extra = self._claim(store, state, extra)
                    grant = self._spend(lambda: _reuse(store), state, marked_extra, attempt)
                    return self._store_grant(store, state.with_in_flight(attempt), marked_extra, grant)
            self._wait_for_other(section, holder, state.generation, deadline)

    def with_lease(
        self,
        transaction: Section,
        *,
        min_ttl: float | None,
        stale_generation: int | None = None,
        wait: float | None = None,
    ) -> TokenState:
        """Claim in one transaction, request with no lock held, store in another."""
        deadline = self.clock() + (self.lease if wait is None else wait)
        while True:
            with transaction() as store:
                state, extra = store.read()
                if not self._refresh_needed(state, min_ttl, stale_generation):
                    return state
                holder = self._live_holder(state)
                if holder is None:
                    attempt, marked_extra = self._claim(store, state, extra)
                    break
            self._wait_for_other(transaction, holder, state.generation, deadline)
        grant = self._spend(transaction, state, marked_extra, attempt)
        with transaction() as store:
            _, current_extra = store.read()
            return self._store_grant(store, state.with_in_flight(attempt), current_extra, grant)

    def _refresh_needed(self, state: TokenState, min_ttl: float | None, stale_generation: int | None) -> bool:
        if stale_generation is not None and state.generation == stale_generation:
            return True
        claims = state.expiry_claims(conn_id=self.conn_id)
        return not is_fresh(state, claims, self.clock(), min_ttl)

    def _live_holder(self, state: TokenState) -> InFlight | None:
        marker = state.in_flight
        return marker if marker is not None and marker.lease_until > self.clock() else None

    def _claim(
        self, store: TokenStore, state: TokenState, extra: dict[str, Any]
    ) -> tuple[InFlight, dict[str, Any]]:
        """Write our in-flight marker (and record an expired one as interrupted) before spending."""
        store.check_writable()
        now = self.clock()
        attempt = InFlight(
            attempt_id=uuid.uuid4().hex,
            by=self.identity,
            started_at=now,
            lease_until=now + self.lease,
            generation=state.generation,
            spends=fingerprint(state.refresh_token),
        )
        claimed_extra = dict(extra)
        if state.in_flight is not None:
            log.warning(
                "AAC connection %r: %s did not finish; the stored refresh token may have been spent "
                "by it. Trying it once.",
                self.conn_id,
                state.in_flight.describe(),
            )
            claimed_extra[LAST_INTERRUPTED] = state.in_flight.to_json()
        marked_extra = state.with_in_flight(attempt).merged_into(claimed_extra)
        store.write(marked_extra, expected=state.version)
        return attempt, marked_extra

    def _spend(
        self, section: Section, state: TokenState, marked_extra: dict[str, Any], attempt: InFlight
    ) -> TokenGrant:
        """The token request; after a definite failure our claim is released, after an unknown one kept."""
        try:
            return self._request(state, marked_extra)
        except AACRefreshOutcomeUnknownError:
            raise
        except AACError:
            with section() as store:
                current, current_extra = store.read()
                if current.in_flight and current.in_flight.attempt_id == attempt.attempt_id:
                    self._release_claim(store, current, current_extra)
            raise

    def _request(self, state: TokenState, extra: dict[str, Any]) -> TokenGrant:
        endpoint = resolve_token_endpoint(
            state.claims(conn_id=self.conn_id),
            token_url=_text(extra.get("token_url")),
            client_id=_text(extra.get("client_id")),
            conn_id=self.conn_id,
        )
        log.info("AAC connection %r: refreshing tokens (generation %d).", self.conn_id, state.generation)
        try:
            return request_refresh(
                self.transport,
                endpoint,
                state.refresh_token,
                conn_id=self.conn_id,
                timeout=self.token_timeout,
                backoff=self.backoff,
                sleep=self.sleep,
            )
        except AACTokenChainBrokenError as err:
            interrupted = InFlight.from_json(extra.get(LAST_INTERRUPTED))
            if interrupted is not None and interrupted.spends in ("", fingerprint(state.refresh_token)):
                raise AACTokenChainBrokenError(
                    f"{err} An earlier refresh of this connection was interrupted "
                    f"({interrupted.describe()}): it most likely spent the token and its answer was lost."
                ) from None
            raise

    def _release_claim(self, store: TokenStore, state: TokenState, extra: dict[str, Any]) -> None:
        """Clear our marker after a definite failure; the token was not spent, or is dead anyway."""
        try:
            store.write(state.with_in_flight(None).merged_into(extra), expected=state.version)
        except AACError:
            log.warning("AAC connection %r: could not clear the refresh marker.", self.conn_id)

    def _store_grant(
        self, store: TokenStore, claimed: TokenState, extra: dict[str, Any], grant: TokenGrant
    ) -> TokenState:
        """Persist the new pair first, over exactly the state we claimed, and only then use it."""
        new_state = rotated(
            claimed, grant, requested_at=self._requested_at(claimed), by=self.identity, now=self.clock()
        )
        clean_extra = {k: v for k, v in extra.items() if k != LAST_INTERRUPTED}
        try:
            store.write(new_state.merged_into(clean_extra), expected=claimed.version)
        except AACStoreError as err:
            raise AACStoreError(
                f"{err} The refresh token was already spent, so the connection's tokens no longer work; "
                "the new pair could not be stored and was discarded. Fix the cause above, then generate "
                "a new pair."
            ) from None
        log.info(
            "AAC connection %r: stored generation %d (access token valid for %.0f s).",
            self.conn_id,
            new_state.generation,
            new_state.access_lifetime or 0.0,
        )
        if grant.access_token is None:
            raise AACTransientError(
                f"AAC's token endpoint answered without an access token for connection {self.conn_id!r}. "
                "The rotated refresh token was stored; the next call refreshes again."
            )
        return new_state

    def _requested_at(self, claimed: TokenState) -> float:
        return claimed.in_flight.started_at if claimed.in_flight else self.clock()

    def _wait_for_other(self, section: Section, holder: InFlight, generation: int, deadline: float) -> None:
        """Poll, with a deadline, until the holder stores a new generation or its lease ends."""
        log.info("AAC connection %r: waiting for %s.", self.conn_id, holder.describe())
        while True:
            now = self.clock()
            if now >= deadline:
                raise AACTransientError(
                    f"Timed out waiting for {holder.describe()} on connection {self.conn_id!r}; try again."
                )
            self.sleep(min(self.poll_interval, max(0.0, deadline - now)))
            with section() as store:
                state, _ = store.read()
            marker = state.in_flight
            if (
                state.generation != generation
                or marker is None
                or marker.attempt_id != holder.attempt_id
                or marker.lease_until <= self.clock()
            ):
                return


def rotated(state: TokenState, grant: TokenGrant, *, requested_at: float, by: str, now: float) -> TokenState:
    """The next generation. Expiry counts from when the request was sent, to err early.

    Without ``expires_in`` the JWT's ``exp`` decides; without an access token the old one
    is kept but marked expired, so that the rotated refresh token is stored all the same.
    """
    if grant.access_token:
        access = grant.access_token
        expires_at = requested_at + grant.expires_in if grant.expires_in else None
    else:
        access, expires_at = state.access_token, requested_at
    return TokenState(
        access_token=access,
        refresh_token=grant.refresh_token or state.refresh_token,
        generation=state.generation + 1,
        access_expires_at=expires_at,
        access_lifetime=grant.expires_in if grant.access_token else None,
        access_fingerprint=fingerprint(access) if expires_at is not None else None,
        refreshed_at=now,
        refreshed_by=by,
        in_flight=None,
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None
