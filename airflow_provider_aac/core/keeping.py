"""Keeping what AAC answered: the new pair is held before it is stored, and stored with patience.

Once the token endpoint has answered, the refresh token it spent is dead and the new
pair is the only live end of the chain. If the connection cannot be written at that
moment (an api-server restarting in a deploy, the metadata DB failing over), the pair
must not be lost: it is held in every rescue place the deployment has first
(``Rescue``), then stored, retrying an unavailable store for minutes (``Keeper``). It is
accepted while the stored refresh token is still the one spent, whatever else changed
in the extra; a different refresh token (a newer pair, or one a person pasted) wins. A
pair left held by a refresher that died is stored by whoever refreshes this connection
next, or by ``airflow-aac restore``, before anything else.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from airflow_provider_aac.core.errors import (
    AACConfigError,
    AACError,
    AACPairHeldError,
    AACStoreConflictError,
    AACStoreError,
    AACStoreUnavailableError,
    AACTransientError,
)
from airflow_provider_aac.core.refresh_observer import RefreshObserver, Unobserved
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_grant import TokenGrant, text
from airflow_provider_aac.core.token_state import (
    LAST_INTERRUPTED,
    InFlight,
    TokenState,
    Version,
    fingerprint,
    utc_iso,
)
from airflow_provider_aac.core.token_store import Extra, Section, TokenStore

log = logging.getLogger(__name__)

STORE_PATIENCE = 600.0
STORE_BACKOFF = Backoff(attempts=1_000_000, base=0.5, cap=15.0)
# Past its lease, a holder retries its store at least this often, so that a taker can
# tell a live holder (still storing after an outage) from a dead one.
STORE_RETRY_PAST_LEASE = 2.0


@dataclass(frozen=True)
class HeldPair:
    """A grant not yet stored, and where it came from.

    ``spends`` is the fingerprint of the refresh token it replaces. ``requested_at``,
    ``by`` and ``mode`` are the refresh that received it, recorded when the pair is
    stored, whoever stores it (the next refresher, or ``airflow-aac restore``). The
    grant is kept as AAC answered it, a missing token included: the stored pair fills
    the gap at the time it is stored (see ``rotated``).
    """

    conn_id: str
    spends: str
    grant: TokenGrant
    requested_at: float
    held_at: float
    by: str
    mode: str | None = None

    def to_bytes(self) -> bytes:
        """The format every rescue place holds; older providers read it, so its keys stay flat."""
        return json.dumps(
            {
                "conn_id": self.conn_id,
                "spends": self.spends,
                "access_token": self.grant.access_token,
                "refresh_token": self.grant.refresh_token,
                "expires_in": self.grant.expires_in,
                "requested_at": self.requested_at,
                "held_at": self.held_at,
                "by": self.by,
                "mode": self.mode,
            }
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> HeldPair | None:
        try:
            value: Any = json.loads(raw.decode())
            return cls(
                conn_id=str(value["conn_id"]),
                spends=str(value["spends"]),
                grant=TokenGrant(
                    value.get("access_token"), value.get("refresh_token"), value.get("expires_in")
                ),
                requested_at=float(value["requested_at"]),
                held_at=float(value["held_at"]),
                by=str(value.get("by", "unknown")),
                mode=text(value.get("mode")),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None


class RescuePlace(Protocol):
    """One place a pair can be held: the lock backend, a local spool, this process's memory."""

    @property
    def where(self) -> str:
        """Where, in words a person can act on (a host and a path, a Redis key)."""

    def hold(self, pair: HeldPair) -> None: ...

    def held(self, conn_id: str) -> list[HeldPair]: ...

    def drop(self, conn_id: str, spends: str) -> None: ...


class MemoryPlace:
    """This process's memory: lost with the process, so never the only place when another exists."""

    where = "this process's memory"

    def __init__(self) -> None:
        self._pairs: dict[tuple[str, str], HeldPair] = {}

    def hold(self, pair: HeldPair) -> None:
        self._pairs[(pair.conn_id, pair.spends)] = pair

    def held(self, conn_id: str) -> list[HeldPair]:
        return [pair for (conn, _), pair in self._pairs.items() if conn == conn_id]

    def drop(self, conn_id: str, spends: str) -> None:
        self._pairs.pop((conn_id, spends), None)


class Rescue:
    """Every rescue place of one deployment, used together; a failing place never stops the others."""

    def __init__(self, places: Sequence[RescuePlace] = ()) -> None:
        self.places = list(places)

    def hold(self, pair: HeldPair) -> list[str]:
        """Hold the pair wherever possible; returns where it is held."""
        held = []
        for place in self.places:
            try:
                place.hold(pair)
            except Exception as err:  # a rescue place failing must never cost the pair
                log.warning(
                    "Could not hold the new AAC token pair in %s: %s", place.where, type(err).__name__
                )
            else:
                held.append(place.where)
        return held

    def pending(self, conn_id: str, spends: str) -> HeldPair | None:
        """The newest held pair that replaces the refresh token with fingerprint ``spends``."""
        found: list[HeldPair] = []
        for place in self.places:
            try:
                found.extend(pair for pair in place.held(conn_id) if pair.spends == spends)
            except Exception as err:
                log.warning(
                    "Could not look for a held AAC token pair in %s: %s", place.where, type(err).__name__
                )
        return max(found, key=lambda pair: pair.held_at, default=None)

    def drop(self, conn_id: str, spends: str) -> None:
        for place in self.places:
            try:
                place.drop(conn_id, spends)
            except Exception as err:
                log.warning(
                    "Could not remove a held AAC token pair from %s: %s", place.where, type(err).__name__
                )


@dataclass
class Keeper:
    """Holds and stores the pairs of one connection's refreshes.

    ``identity`` and ``mode`` (the refresh mode's value, chosen by the caller) are
    recorded with every pair kept, as ``refreshed_by`` and ``refreshed_mode``.
    """

    conn_id: str
    rescue: Rescue
    identity: str
    mode: str | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    store_patience: float = STORE_PATIENCE
    observer: RefreshObserver = field(default_factory=Unobserved)

    def settle(self, store: TokenStore) -> tuple[TokenState, Extra]:
        """Complete a pair held back by an earlier refresh, before deciding anything else."""
        state, extra = store.read()
        held = self.rescue.pending(self.conn_id, state.refresh_fingerprint)
        if held is not None:
            log.warning(
                "AAC connection %r: completing the token pair that %s received at %s and could not store.",
                self.conn_id,
                held.by,
                utc_iso(held.held_at),
            )
            self._write_held(store, held)
            self.rescue.drop(self.conn_id, held.spends)
            self.observer.held_pair_completed()
            state, extra = store.read()
        return state, extra

    def complete_held(self, section: Section) -> TokenState | None:
        """Store a held pair now (``airflow-aac restore``); None when none is held for the stored token."""
        with section() as store:
            state, _ = store.read()
            held = self.rescue.pending(self.conn_id, state.refresh_fingerprint)
            if held is None:
                return None
            stored = self._write_held(store, held)
        self.rescue.drop(self.conn_id, held.spends)
        self.observer.held_pair_completed()
        return stored

    def keep(
        self, section: Section, spent: TokenState, attempt: InFlight, grant: TokenGrant
    ) -> TokenState | None:
        """Hold the answer, store it, and only then use it; None when another pair won meanwhile."""
        held = HeldPair(
            conn_id=self.conn_id,
            spends=spent.refresh_fingerprint,
            grant=grant,
            requested_at=attempt.started_at,
            held_at=self.clock(),
            by=self.identity,
            mode=self.mode,
        )
        places = self.rescue.hold(held)
        try:
            stored = self._store_with_patience(section, held, attempt, places)
        except AACStoreConflictError as err:
            log.warning("AAC connection %r: %s", self.conn_id, err)
            self.rescue.drop(self.conn_id, held.spends)
            return None
        self.rescue.drop(self.conn_id, held.spends)
        if grant.access_token is None:
            raise AACTransientError(
                f"AAC's token endpoint answered without an access token for connection {self.conn_id!r}. "
                "The rotated refresh token was stored; the next call refreshes again."
            )
        return stored

    def _store_with_patience(
        self, section: Section, held: HeldPair, attempt: InFlight, places: list[str]
    ) -> TokenState:
        """Store the held pair, retrying an unavailable store for ``store_patience`` seconds."""
        give_up = self.clock() + self.store_patience
        tries = 0
        while True:
            tries += 1
            try:
                with section() as store:
                    return self._write_held(store, held)
            except AACStoreUnavailableError as err:
                failure: AACError = err
            except AACStoreConflictError:
                raise
            except (AACConfigError, AACStoreError) as err:
                raise self._held_error(held, places, err) from None
            except AACTransientError as err:
                failure = err
            now = self.clock()
            delay = STORE_BACKOFF.delay(tries) or STORE_BACKOFF.cap
            if now >= attempt.lease_until:
                delay = min(delay, STORE_RETRY_PAST_LEASE)
            if now + delay > give_up:
                raise self._held_error(held, places, failure) from None
            log.warning(
                "AAC connection %r: the refresh succeeded but the new pair could not be stored yet (%s). "
                "Retrying in %.1f s, for up to %.0f s more; the pair is held in %s.",
                self.conn_id,
                failure,
                delay,
                give_up - now,
                ", ".join(places) or "no rescue place",
            )
            self.sleep(delay)

    def _held_error(self, held: HeldPair, places: list[str], cause: AACError) -> AACPairHeldError:
        self.observer.pair_held()
        where = ", ".join(places) if places else "no rescue place (only this process's memory, now gone)"
        return AACPairHeldError(
            f"AAC connection {self.conn_id!r}: the refresh token was spent and AAC answered with a new pair, "
            f"but the pair could not be stored ({cause}). It is held in {where}. The next refresh of this "
            f"connection stores it first; to store it now, run: airflow-aac restore {self.conn_id}"
        )

    def _write_held(self, store: TokenStore, held: HeldPair) -> TokenState:
        """Store a held pair over whatever is stored now, while the spent refresh token is still there."""
        stored, _ = store.read()
        if held.grant.refresh_token and stored.refresh_fingerprint == fingerprint(held.grant.refresh_token):
            return stored

        def rotated_over(current: TokenState, extra: Extra) -> Extra:
            new_state = rotated(
                current,
                held.grant,
                requested_at=held.requested_at,
                by=held.by,
                mode=held.mode,
                now=self.clock(),
            )
            return new_state.merged_into({k: v for k, v in extra.items() if k != LAST_INTERRUPTED})

        written = store.update(Version(stored.generation, None, held.spends, rotation=True), rotated_over)
        new_state = TokenState.from_extra(written, conn_id=self.conn_id)
        log.info(
            "AAC connection %r: stored generation %d (access token valid for %.0f s).",
            self.conn_id,
            new_state.generation,
            new_state.access_lifetime or 0.0,
        )
        return new_state


def rotated(
    state: TokenState,
    grant: TokenGrant,
    *,
    requested_at: float,
    by: str,
    now: float,
    mode: str | None = None,
) -> TokenState:
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
        TokenGrant(
            access,
            grant.refresh_token or state.refresh_token,
            grant.expires_in if grant.access_token else None,
        ),
        generation=state.generation + 1,
        access_expires_at=expires_at,
        access_fingerprint=fingerprint(access) if expires_at is not None else None,
        refreshed_at=now,
        refreshed_by=by,
        refreshed_mode=mode,
        in_flight=None,
        conn_id=state.conn_id,
    )
