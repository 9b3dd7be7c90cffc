"""The token pair (a grant and where it came from) and its bookkeeping, as kept in the extra.

The extra is both the user's configuration and the provider's store. The provider owns
only the keys in ``MAINTAINED_KEYS`` (plus the two tokens) and keeps every other key as
it found it. None of the maintained keys contains "token", so Airflow's REST API shows
them unmasked, which lets a writer check the stored generation without seeing secrets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from typing import Any, cast

from airflow_provider_aac.core.errors import AACConfigError, AACStoreConflictError, new_pair_hint
from airflow_provider_aac.core.token_grant import AccessTokenClaims, TokenGrant, read_claims, text

ACCESS_TOKEN = "access_token"
REFRESH_TOKEN = "refresh_token"
GENERATION = "generation"
ACCESS_EXPIRES_AT = "access_expires_at"
ACCESS_LIFETIME = "access_lifetime"
ACCESS_FINGERPRINT = "access_fingerprint"
REFRESHED_AT = "refreshed_at"
REFRESHED_BY = "refreshed_by"
REFRESHED_MODE = "refreshed_mode"
IN_FLIGHT = "refresh_in_flight"
LAST_INTERRUPTED = "last_interrupted_refresh"
DEAD_CHAIN = "dead_chain"

MAINTAINED_KEYS = (
    GENERATION,
    ACCESS_EXPIRES_AT,
    ACCESS_LIFETIME,
    ACCESS_FINGERPRINT,
    REFRESHED_AT,
    REFRESHED_BY,
    REFRESHED_MODE,
    IN_FLIGHT,
    LAST_INTERRUPTED,
    DEAD_CHAIN,
)

DEFAULT_MIN_TTL = 300.0
MAX_CLOCK_SKEW = 30.0
# A short token's skew margin is at most this share of its life, so that it is still used at all.
JWT_SKEW_SHARE = 1 / 10


def jwt_skew_margin(lifetime: float | None) -> float:
    """Seconds taken off a JWT's ``exp`` (the server's clock) for a clock that may be ahead of ours."""
    return MAX_CLOCK_SKEW if lifetime is None else min(MAX_CLOCK_SKEW, lifetime * JWT_SKEW_SHARE)


def utc_iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds")


def parse_utc_iso(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def fingerprint(token: str) -> str:
    """A short digest that tells whether a recorded expiry belongs to the stored token."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def parse_extra(raw: str | dict[str, Any] | None, *, conn_id: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return dict(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        raise AACConfigError(
            f"The extra of connection {conn_id!r} is not valid JSON. Edit the connection and "
            'make the extra a JSON object such as {"access_token": "...", "refresh_token": "..."}.'
        ) from None
    if not isinstance(value, dict):
        raise AACConfigError(
            f"The extra of connection {conn_id!r} must be a JSON object, not {type(value).__name__}."
        )
    return value


@dataclass(frozen=True)
class InFlight:
    """A refresh that has been started and not yet recorded as finished.

    ``spends`` is the fingerprint of the refresh token it presents, so that a later
    diagnosis applies only while that same token is still the stored one.
    """

    attempt_id: str
    by: str
    started_at: float
    lease_until: float
    generation: int
    spends: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt_id": self.attempt_id,
            "by": self.by,
            "started_at": utc_iso(self.started_at),
            "lease_until": utc_iso(self.lease_until),
            "generation": self.generation,
            "spends": self.spends,
        }

    @classmethod
    def from_json(cls, value: Any) -> InFlight | None:
        if not isinstance(value, dict):
            return None
        started = parse_utc_iso(value.get("started_at"))
        lease = parse_utc_iso(value.get("lease_until"))
        if started is None or lease is None:
            return None
        return cls(
            attempt_id=str(value.get("attempt_id", "")),
            by=str(value.get("by", "unknown")),
            started_at=started,
            lease_until=lease,
            generation=as_int(value.get("generation")),
            spends=str(value.get("spends", "")),
        )

    def describe(self) -> str:
        return f"the refresh started at {utc_iso(self.started_at)} by {self.by}"


@dataclass(frozen=True)
class DeadChain:
    """AAC answered ``invalid_grant`` for the refresh token with fingerprint ``spends``.

    Recorded once, so that every later caller fails at once with the recovery steps
    instead of presenting the dead token again; a newly stored pair has another
    fingerprint, which is what ends it.
    """

    spends: str
    at: float
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"spends": self.spends, "at": utc_iso(self.at), "by": self.by}

    @classmethod
    def from_json(cls, value: Any) -> DeadChain | None:
        if not isinstance(value, dict) or not isinstance(value.get("spends"), str):
            return None
        at = parse_utc_iso(value.get("at"))
        return cls(spends=value["spends"], at=0.0 if at is None else at, by=str(value.get("by", "unknown")))

    def describe(self) -> str:
        return f"recorded dead at {utc_iso(self.at)} by {self.by}"


@dataclass(frozen=True)
class TokenState:
    """One generation of the token chain: its grant and where it came from, as kept in the extra.

    ``grant`` holds both tokens and, as ``expires_in``, the lifetime recorded with the
    access token when it was stored; the rest is where the pair came from (its
    generation, who refreshed it, the expiry by our clock) and the claims on it.
    ``conn_id`` only names the connection in errors (a stored access token that is no
    JWT): the state is what decodes its token, so it must be able to say whose it is.
    States are immutable, so each decodes its access token at most once.
    """

    grant: TokenGrant
    generation: int = 0
    access_expires_at: float | None = None
    access_fingerprint: str | None = None
    refreshed_at: float | None = None
    refreshed_by: str | None = None
    refreshed_mode: str | None = None
    in_flight: InFlight | None = None
    dead_chain: DeadChain | None = None
    conn_id: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (self.grant.access_token and self.grant.refresh_token):
            raise ValueError("A stored token pair has both tokens.")

    def __repr__(self) -> str:
        return f"TokenState(generation={self.generation}, access_expires_at={self.access_expires_at})"

    @property
    def access_token(self) -> str:
        return cast(str, self.grant.access_token)

    @property
    def refresh_token(self) -> str:
        return cast(str, self.grant.refresh_token)

    @property
    def access_lifetime(self) -> float | None:
        return self.grant.expires_in

    @classmethod
    def from_extra(cls, extra: dict[str, Any], *, conn_id: str) -> TokenState:
        access = extra.get(ACCESS_TOKEN)
        refresh = extra.get(REFRESH_TOKEN)
        missing = [
            name for name, value in ((ACCESS_TOKEN, access), (REFRESH_TOKEN, refresh)) if text(value) is None
        ]
        if missing:
            raise AACConfigError(
                f"Connection {conn_id!r} has no {' and no '.join(missing)} in its extra. "
                + new_pair_hint(conn_id)
            )
        assert isinstance(access, str) and isinstance(refresh, str)
        return cls(
            TokenGrant(access.strip(), refresh.strip(), _as_float(extra.get(ACCESS_LIFETIME))),
            generation=as_int(extra.get(GENERATION)),
            access_expires_at=parse_utc_iso(extra.get(ACCESS_EXPIRES_AT)),
            access_fingerprint=extra.get(ACCESS_FINGERPRINT)
            if text(extra.get(ACCESS_FINGERPRINT)) is not None
            else None,
            refreshed_at=parse_utc_iso(extra.get(REFRESHED_AT)),
            refreshed_by=extra.get(REFRESHED_BY) if text(extra.get(REFRESHED_BY)) is not None else None,
            refreshed_mode=text(extra.get(REFRESHED_MODE)),
            in_flight=InFlight.from_json(extra.get(IN_FLIGHT)),
            dead_chain=DeadChain.from_json(extra.get(DEAD_CHAIN)),
            conn_id=conn_id,
        )

    def merged_into(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The extra to write: the user's keys untouched, ours replaced."""
        merged = {k: v for k, v in extra.items() if k not in MAINTAINED_KEYS}
        merged[ACCESS_TOKEN] = self.access_token
        merged[REFRESH_TOKEN] = self.refresh_token
        merged[GENERATION] = self.generation
        optional: dict[str, Any] = {
            ACCESS_EXPIRES_AT: utc_iso(self.access_expires_at)
            if self.access_expires_at is not None
            else None,
            ACCESS_LIFETIME: self.access_lifetime,
            ACCESS_FINGERPRINT: self.access_fingerprint,
            REFRESHED_AT: utc_iso(self.refreshed_at) if self.refreshed_at is not None else None,
            REFRESHED_BY: self.refreshed_by,
            REFRESHED_MODE: self.refreshed_mode,
            IN_FLIGHT: self.in_flight.to_json() if self.in_flight else None,
            LAST_INTERRUPTED: extra.get(LAST_INTERRUPTED),
            DEAD_CHAIN: self.dead_chain.to_json() if self.dead_chain else None,
        }
        merged.update({k: v for k, v in optional.items() if v is not None})
        return merged

    def claims(self) -> AccessTokenClaims:
        return self._claims

    @cached_property
    def _claims(self) -> AccessTokenClaims:
        where = "the connection" if self.conn_id is None else f"connection {self.conn_id!r}"
        return read_claims(self.access_token, where=where)

    @cached_property
    def has_recorded_expiry(self) -> bool:
        """True when the expiry recorded at the last refresh belongs to the stored access token."""
        return self.access_expires_at is not None and self.access_fingerprint == fingerprint(
            self.access_token
        )

    @property
    def _expiry_claims(self) -> AccessTokenClaims | None:
        """The claims, decoded only when the recorded expiry does not already answer (the hot path)."""
        return None if self.has_recorded_expiry else self._claims

    def expires_at(self) -> float | None:
        """When the stored access token stops working, by our clock, with margin.

        The expiry recorded from ``expires_in`` (our clock) wins when it belongs to this
        token; otherwise the JWT's ``exp`` (the server's clock) less a skew margin.
        """
        if self.has_recorded_expiry:
            return self.access_expires_at
        claims = self._claims
        if claims.expires_at is None:
            return None
        return claims.expires_at - jwt_skew_margin(claims.lifetime)

    def lifetime(self) -> float | None:
        if self.access_lifetime is not None and self.access_fingerprint == fingerprint(self.access_token):
            return self.access_lifetime
        claims = self._expiry_claims
        return claims.lifetime if claims else None

    def seconds_left(self, now: float) -> float:
        """Seconds the stored access token still works; unknown expiry counts as expired."""
        expires_at = self.expires_at()
        return float("-inf") if expires_at is None else expires_at - now

    def is_fresh(self, now: float, min_ttl: float | None) -> bool:
        return self.seconds_left(now) >= effective_min_ttl(min_ttl, self.lifetime())

    def with_in_flight(self, in_flight: InFlight | None) -> TokenState:
        return replace(self, in_flight=in_flight)

    @property
    def refresh_fingerprint(self) -> str:
        return fingerprint(self.refresh_token)

    @property
    def chain_is_dead(self) -> bool:
        """True while the stored refresh token is the one AAC was seen to reject."""
        return self.dead_chain is not None and self.dead_chain.spends == self.refresh_fingerprint

    @property
    def version(self) -> Version:
        return Version(
            self.generation, self.in_flight.attempt_id if self.in_flight else None, self.refresh_fingerprint
        )


@dataclass(frozen=True)
class Version:
    """What a writer must still find stored before it writes.

    A claim (or its release) must find exactly what it read: the generation, whose claim,
    and the refresh token. Generation alone cannot tell two claims on one generation
    apart; the claim's id can. A rotated pair only needs the refresh token it spent to
    be still the stored one (``rotation``): whatever else a person or the UI changed in
    the meantime, that pair is the newest, and discarding it would lose the chain.
    """

    generation: int
    claim: str | None
    refresh: str
    rotation: bool = False


def check_version(stored: TokenState, expected: Version, *, conn_id: str) -> None:
    """Refuse a write over anything but what the writer read: never older over newer."""
    if stored.refresh_fingerprint != expected.refresh:
        raise AACStoreConflictError(
            f"Connection {conn_id!r} now holds another refresh token than the one this process "
            + ("spent" if expected.rotation else "read")
            + " (a newer pair, or one pasted by a person); the stored one wins and is kept"
            + (", and the pair this refresh received was not stored." if expected.rotation else ".")
        )
    if expected.rotation or stored.version == expected:
        return
    if stored.generation != expected.generation:
        raise AACStoreConflictError(
            f"Connection {conn_id!r} holds generation {stored.generation}, not {expected.generation}; "
            "refusing to overwrite a newer token pair with an older one."
        )
    changed_by = (
        stored.in_flight.describe() if stored.in_flight else "a manual edit or a process in another mode"
    )
    raise AACStoreConflictError(
        f"Connection {conn_id!r} was changed after this process read it ({changed_by}); "
        "refusing to write over it."
    )


def effective_min_ttl(min_ttl: float | None, lifetime: float | None) -> float:
    """The requested margin, never more than half the access token's lifetime."""
    wanted = DEFAULT_MIN_TTL if min_ttl is None else max(0.0, float(min_ttl))
    return wanted if lifetime is None else min(wanted, lifetime / 2)


def as_int(value: Any) -> int:
    """Lenient: a missing or odd generation counts as 0, the value of a freshly pasted pair."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
