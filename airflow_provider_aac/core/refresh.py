"""The refresh algorithm: spend the refresh token once, never lose what comes back.

One shape, ``with_lease``, over any store: a short section (a transaction that locks
the connection's row, or the REST store) claims the refresh by writing an in-flight
marker with a lease, the token request runs with no section open, and a second short
section stores the result. A lock (advisory or Redis), when the connection names one, is
the caller's outer section around the whole of it (``tokens.manager``), never a second algorithm.

The steps, each a promise to the user:

1. Settle: a pair held back from an earlier refresh is stored first; a chain recorded
   dead fails at once, without presenting its token again.
2. Claim: an in-flight marker with a lease, written before anything is sent. Others
   honour it until its end plus a clock-skew margin (and a grace for a holder still
   retrying its store), and the holder stops sending that margin before its end.
3. Spend: one attempt at a time, each with a hard deadline inside the lease, the lock
   checked again just before the token leaves the process. Termination signals wait.
   An unknown outcome (a lost answer) gets one more attempt at once, inside the same
   lease, where a reuse grace period on AAC's side can still return the lost pair
   (``core/oauth.py`` says why that retry never costs a chain that was not already lost).
4. Keep (``core/keeping.py``): the answer is held in every rescue place, then stored,
   retrying for minutes, over whatever else changed in the extra, as long as the stored
   refresh token is still the one spent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from airflow_provider_aac.core.cleartext import insecure_http_allowed
from airflow_provider_aac.core.errors import (
    AACError,
    AACRefreshOutcomeUnknownError,
    AACTokenChainBrokenError,
    AACTransientError,
    new_pair_hint,
)
from airflow_provider_aac.core.keeping import STORE_PATIENCE, STORE_RETRY_PAST_LEASE, Keeper, Rescue
from airflow_provider_aac.core.oauth import (
    TokenEndpoint,
    TokenTransport,
    request_refresh,
    resolve_token_endpoint,
)
from airflow_provider_aac.core.refresh_observer import RefreshObserver, Unobserved
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.signals import signals_deferred
from airflow_provider_aac.core.token_grant import TokenGrant, text
from airflow_provider_aac.core.token_state import (
    LAST_INTERRUPTED,
    DeadChain,
    InFlight,
    TokenState,
    Version,
)
from airflow_provider_aac.core.token_store import (
    ChangeFeed,
    Changes,
    Extra,
    Guard,
    Look,
    Section,
    TokenStore,
    look_within,
    no_guard,
    sleeping,
)

log = logging.getLogger(__name__)

TOKEN_ENDPOINT_BACKOFF = Backoff(attempts=3, base=0.5, cap=5.0, max_retry_after=20.0)
DEFAULT_LEASE = 60.0
# The most two machines' clocks may disagree: a holder stops this long before its lease
# ends, and a taker waits this long after it, so that up to twice this much skew is safe.
MAX_LEASE_SKEW = 15.0
# A short lease gives at most this share of itself to each skew margin: the rest is the request's.
LEASE_SKEW_SHARE = 1 / 6
# A marker whose lease has ended is taken over only after it was seen ended for a few of
# its holder's store retries: the holder may be alive, storing after an outage longer than the lease.
TAKEOVER_GRACE = 3 * STORE_RETRY_PAST_LEASE


# A waiter whose store sends no news of its writes (``core.token_store.Changes``) looks
# again this often for the first second after it finds a claim, then every
# ``Refresher.poll_interval``: a fixed 0.2 s would add up to 0.2 s to every wait behind a
# 0.1 s refresh, while a long wait (a slow endpoint, a store outage) stays at a few reads
# a second. A store that sends news (PostgreSQL's NOTIFY) wakes its waiters at the write,
# so they look only at the news or every ``poll_interval``. Only a claim in the metadata DB
# is waited for this way; lock holders are queued for.
QUICK_LOOK = 0.02
QUICK_LOOKS_FOR = 1.0


def process_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claim:
    """What a refresher claimed under its lock or lease, handed as one from claiming to spending to keeping.

    One value rather than loose arguments, so that the token spent, the marker that
    claims it and the endpoint it goes to cannot be mixed up between the steps.
    """

    state: TokenState
    """The stored state the marker was written over: its refresh token is the one spent."""
    endpoint: TokenEndpoint
    """Where the refresh token is presented, resolved before anything was claimed."""
    attempt: InFlight
    """Our in-flight marker: its lease bounds the request's deadline."""
    interrupted: InFlight | None
    """An earlier attempt that did not finish, which may have spent this token already."""

    @property
    def version(self) -> Version:
        """The stored version while our marker is in place: what releasing the claim updates over."""
        return self.state.with_in_flight(self.attempt).version


@dataclass
class Refresher:
    """Runs the refresh steps for one connection; every dependency is passed in.

    ``mode`` is the value of the refresh mode the caller runs it in (the token manager
    chooses; this module knows no modes), recorded with each pair kept.
    """

    conn_id: str
    transport: TokenTransport
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    identity: str = field(default_factory=process_identity)
    mode: str | None = None
    lease: float = DEFAULT_LEASE
    backoff: Backoff = TOKEN_ENDPOINT_BACKOFF
    poll_interval: float = 0.2
    store_patience: float = STORE_PATIENCE
    takeover_grace: float = TAKEOVER_GRACE
    rescue: Rescue = field(default_factory=Rescue)
    observer: RefreshObserver = field(default_factory=Unobserved)
    _ended_leases_seen: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    @property
    def skew_margin(self) -> float:
        return min(MAX_LEASE_SKEW, self.lease * LEASE_SKEW_SHARE)

    @property
    def keeper(self) -> Keeper:
        return Keeper(
            self.conn_id,
            self.rescue,
            self.identity,
            mode=self.mode,
            clock=self.clock,
            sleep=self.sleep,
            store_patience=self.store_patience,
            observer=self.observer,
        )

    @property
    def max_wait(self) -> float:
        """Longest a caller waits for another holder: its whole lease, both margins and the grace."""
        return self.lease + 2 * self.skew_margin + self.takeover_grace

    def with_lease(
        self,
        transaction: Section,
        *,
        min_ttl: float | None,
        stale_generation: int | None = None,
        wait: float | None = None,
        guard: Guard = no_guard,
        changes: ChangeFeed | None = None,
        look: Look | None = None,
    ) -> TokenState:
        """Refresh if the stored token is not fresh enough, or still is ``stale_generation``.

        Claim in one section, request with none open, store in another; a live claim by
        another process is waited for, never presented over, woken by ``changes`` (news
        of the store's writes) where the store sends any, else by polling. ``look`` reads
        for the waiter without the lock (the row as last committed), so that a storm of
        waiters does not queue on the row lock; by default it reads in ``transaction``.
        """
        deadline = self.clock() + (self.max_wait if wait is None else wait)
        while True:
            with transaction() as store:
                state, extra = self.keeper.settle(store)
                if not self._refresh_needed(state, min_ttl, stale_generation):
                    return state
                holder = self._holder(state)
                claim = None if holder is not None else self._prepare_and_claim(store, state, extra, guard)
            if claim is None:
                assert holder is not None
                stored = self._wait_for_other(
                    look or look_within(transaction), changes or sleeping(self.sleep), holder, state, deadline
                )
                if stored is not None and self._settled_fresh(stored, min_ttl, stale_generation):
                    return stored
                continue
            kept = self._spend_and_keep(transaction, claim, guard)
            if kept is not None:
                return kept
            stale_generation = None

    # -- 1. settle: Keeper.settle

    def _refresh_needed(self, state: TokenState, min_ttl: float | None, stale_generation: int | None) -> bool:
        if stale_generation is not None and state.generation == stale_generation:
            return True
        return not state.is_fresh(self.clock(), min_ttl)

    def _settled_fresh(self, state: TokenState, min_ttl: float | None, stale_generation: int | None) -> bool:
        """What the next settle would return at once: a fresh pair, with no held pair to complete over it."""
        if self._refresh_needed(state, min_ttl, stale_generation):
            return False
        return self.rescue.pending(self.conn_id, state.refresh_fingerprint) is None

    def complete_held(self, section: Section) -> TokenState | None:
        """Store a held pair now (``airflow-aac restore``); None when none is held for the stored token."""
        return self.keeper.complete_held(section)

    def dead_chain_error(self, state: TokenState) -> AACTokenChainBrokenError:
        assert state.dead_chain is not None
        return AACTokenChainBrokenError(
            f"The refresh token of connection {self.conn_id!r} was rejected by AAC (invalid_grant, "
            f"{state.dead_chain.describe()}); it is not presented again. " + new_pair_hint(self.conn_id)
        )

    def _holder(self, state: TokenState) -> InFlight | None:
        """The claim to honour, if any: live until its lease's end plus the skew margin and grace."""
        marker = state.in_flight
        if marker is None:
            return None
        now = self.clock()
        if marker.lease_until + self.skew_margin > now:
            return marker
        first_seen = self._ended_leases_seen.setdefault(marker.attempt_id, now)
        return marker if now - first_seen < self.takeover_grace else None

    # -- 2. claim

    def _prepare_and_claim(self, store: TokenStore, state: TokenState, extra: Extra, guard: Guard) -> Claim:
        """Everything that can fail without spending, then the claim itself."""
        if state.chain_is_dead:
            raise self.dead_chain_error(state)
        endpoint = resolve_token_endpoint(
            state.claims(),
            token_url=text(extra.get("token_url")),
            client_id=text(extra.get("client_id")),
            conn_id=self.conn_id,
            allow_insecure_http=insecure_http_allowed(extra, conn_id=self.conn_id),
        )
        interrupted = state.in_flight or InFlight.from_json(extra.get(LAST_INTERRUPTED))
        return Claim(state, endpoint, self._claim(store, state, guard), interrupted)

    def _claim(self, store: TokenStore, state: TokenState, guard: Guard) -> InFlight:
        """Write our in-flight marker (and record an ended one as interrupted) before spending."""
        store.check_writable()
        guard()
        now = self.clock()
        attempt = InFlight(
            attempt_id=uuid.uuid4().hex,
            by=self.identity,
            started_at=now,
            lease_until=now + self.lease,
            generation=state.generation,
            spends=state.refresh_fingerprint,
        )

        def claimed(current: TokenState, extra: Extra) -> Extra:
            marked = dict(extra)
            if current.in_flight is not None:
                log.warning(
                    "AAC connection %r: %s did not finish; the stored refresh token may have been spent "
                    "by it. Trying it once.",
                    self.conn_id,
                    current.in_flight.describe(),
                )
                marked[LAST_INTERRUPTED] = current.in_flight.to_json()
            return current.with_in_flight(attempt).merged_into(marked)

        store.update(state.version, claimed)
        return attempt

    # -- 3. spend

    def _spend_and_keep(self, section: Section, claim: Claim, guard: Guard) -> TokenState | None:
        with signals_deferred("an AAC token refresh was waiting for its answer or storing the new pair"):
            grant = self._spend(section, claim, guard)
            return self.keeper.keep(section, claim.state, claim.attempt, grant)

    def _spend(self, section: Section, claim: Claim, guard: Guard) -> TokenGrant:
        """The token request; our claim is released after a definite failure, kept after an unknown one."""
        state, interrupted = claim.state, claim.interrupted
        log.info("AAC connection %r: refreshing tokens (generation %d).", self.conn_id, state.generation)
        try:
            return request_refresh(
                self.transport,
                claim.endpoint,
                state.refresh_token,
                conn_id=self.conn_id,
                deadline=claim.attempt.lease_until - self.skew_margin,
                clock=self.clock,
                sleep=self.sleep,
                backoff=self.backoff,
                before_send=guard,
                on_retry=self.observer.token_endpoint_retry,
            )
        except AACRefreshOutcomeUnknownError:
            raise
        except AACTokenChainBrokenError as err:
            self._release(
                section, claim.version, DeadChain(state.refresh_fingerprint, self.clock(), self.identity)
            )
            if interrupted is not None and interrupted.spends in ("", state.refresh_fingerprint):
                raise AACTokenChainBrokenError(
                    f"{err} An earlier refresh of this connection was interrupted ({interrupted.describe()}): "
                    "it most likely spent the token and its answer was lost."
                ) from None
            raise
        except AACError:
            self._release(section, claim.version, None)
            raise

    def _release(self, section: Section, claimed: Version, dead: DeadChain | None) -> None:
        """Clear our claim, recording a dead chain with it; a failure here costs only a stale marker."""

        def released(current: TokenState, extra: Extra) -> Extra:
            return replace(current, in_flight=None, dead_chain=dead or current.dead_chain).merged_into(extra)

        try:
            with section() as store:
                store.update(claimed, released)
        except AACError as err:
            log.warning("AAC connection %r: could not clear the refresh marker (%s).", self.conn_id, err)

    # -- waiting for another holder

    def _wait_for_other(
        self, look: Look, changes: ChangeFeed, holder: InFlight, seen: TokenState, deadline: float
    ) -> TokenState | None:
        """Wait, with a deadline, until the holder stores a new pair (returned) or its claim can be taken over.

        A marker that vanishes while the pair is unchanged was dropped by an edit of the
        connection; its holder may still be sending, so its lease is honoured all the same.
        """
        log.info("AAC connection %r: waiting for %s.", self.conn_id, holder.describe())
        started = self.clock()
        outcome = "timeout"
        try:
            with changes() as news:
                outcome, current = self._watch_holder(look, news, holder, seen, deadline)
        finally:
            self.observer.waited_for_holder(outcome, self.clock() - started)
        return current if outcome == "stored" else None

    def _watch_holder(
        self, look: Look, news: Changes, holder: InFlight, seen: TokenState, deadline: float
    ) -> tuple[str, TokenState]:
        """Look at news of a write, else often at first, then less: most holders store within a round trip or two.

        With news, the first look comes at once: a pair stored between the read that found
        the claim and the start of listening sent its news before anyone listened.
        """
        quick_until = self.clock() + QUICK_LOOKS_FOR
        look_now = news.signalled
        while True:
            if not look_now:
                now = self.clock()
                if now >= deadline:
                    raise AACTransientError(
                        f"Timed out waiting for {holder.describe()} on connection {self.conn_id!r}; try again."
                    )
                pause = self.poll_interval if news.signalled or now >= quick_until else QUICK_LOOK
                news.wait(min(pause, self.poll_interval, max(0.0, deadline - now)))
            look_now = False
            current = look()
            if (
                current.generation != seen.generation
                or current.refresh_fingerprint != seen.refresh_fingerprint
                or current.chain_is_dead
            ):
                return "stored", current
            marker = current.in_flight
            if marker is None:
                if holder.lease_until + self.skew_margin <= self.clock():
                    return "taken_over", current
            elif marker.attempt_id != holder.attempt_id or self._holder(current) is None:
                return "taken_over", current
