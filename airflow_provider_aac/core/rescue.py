"""Holding a new token pair until it is stored.

Once AAC has answered a refresh, the refresh token it spent is dead and the answer is
the only live end of the chain. If the connection cannot be written at that moment (an
api-server restarting in a deploy, the metadata DB failing over), the pair is held in
every rescue place the deployment has, before the store is retried. Whoever refreshes
this connection next, or ``airflow-aac restore``, completes a held pair before anything
else, and only while the connection still holds the refresh token that was spent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_provider_aac.core.token_grant import TokenGrant, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldPair:
    """A grant not yet stored, and where it came from.

    ``spends`` is the fingerprint of the refresh token it replaces. ``requested_at``,
    ``by`` and ``mode`` are the refresh that received it, recorded when the pair is
    stored, whoever stores it (the next refresher, or ``airflow-aac restore``). The
    grant is kept as AAC answered it, a missing token included: the stored pair fills
    the gap at the time it is stored (see ``keeping.rotated``).
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
