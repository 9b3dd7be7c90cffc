"""Token families and rotation: the rules the provider exists to respect.

A refresh spends the presented token and issues its successor; presenting a spent one
again is a reuse, which revokes the whole family, as AAC does. Access tokens are HS256
JWTs signed with a per-instance secret, so a token from another simulator is invalid here.

AAC's token server is PingOne, and the optional rules follow PingOne's application
settings (AAC publishes none of its own values):

- ``reuse_grace`` is PingOne's ``refreshTokenRollingGracePeriodDuration`` (0 to 86,400 s,
  default 0), "the number of seconds that a refresh token may be reused after having been
  exchanged for a new set of tokens ... useful in the case of network errors on the
  client". Only the immediately preceding token is forgiven, and it gets the answer it
  already got, so the pair a client lost is the pair it recovers.
- A reuse outside it revokes the family's refresh tokens and its access tokens: PingOne's
  replay protection (``additionalRefreshTokenReplayProtectionEnabled``, default on)
  "revokes the reused refresh token, as well as all descendant tokens", and its page
  "Refresh token rotation" says it invalidates access tokens when a refresh token is reused.
- A sliding deadline (``refreshTokenDuration``, default 30 days) renews with each
  rotation, up to ``refresh_cap`` after the family began (``refreshTokenRollingDuration``,
  default 180 days); both "generate the value for the exp claim", so a JWT refresh
  token's ``exp`` is the earlier of the two.
- :meth:`TokenAuthority.disable` is an AAC admin's Disable or Delete of a user's API
  token: the refresh token stops working, access tokens already issued keep working
  until their ``exp``.

Sources: PingOne, "Refresh token rotation"
(https://docs.pingidentity.com/pingone/applications/p1_refresh_token_rotation.html) and
"Editing an application - OIDC"
(https://docs.pingidentity.com/pingone/applications/p1_edit_application_oidc.html); the
setting names, ranges and defaults as Ping Identity documents them for its Terraform
provider (github.com/pingidentity/terraform-provider-pingone, docs/resources/application.md,
``oidc_options.refresh_token_*``).
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import jwt

from airflow_provider_aac.testing.simulator.counters import Counters
from airflow_provider_aac.testing.simulator.wire import number

SCOPE = "openid profile aac:api"
MAX_REUSE_GRACE = 86400.0
CURRENT_PERSON: dict[str, Any] = {
    "id": 1,
    "email": "sim@example.com",
    "name": "Simulated User",
    "isDisabled": False,
    "state": "active",
    "workspace": {"id": 1},
}


class OAuthError(Exception):
    """Raised by the token endpoint's rules to answer with an RFC 6749 error body."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass
class Family:
    """Every token descended from one "Generate" in the AAC UI; revoked as a whole."""

    client_id: str
    access_ttl: float
    refresh_ttl: float
    deadline: float  # epoch seconds; where a "fixed" refresh deadline stays
    cap: float | None = None  # epoch seconds; no sliding deadline passes it
    rotations: int = 0
    revoked: bool = False  # replay or revocation: refresh and access tokens are dead
    disabled: bool = False  # an admin's disable: refresh tokens are dead, access tokens live on


@dataclass
class RefreshRecord:
    family: Family
    expires_at: float
    spent_at: float | None = None
    answer: dict[str, Any] | None = None  # what spending it returned, replayed inside the grace
    successor: RefreshRecord | None = None

    @property
    def spent(self) -> bool:
        return self.spent_at is not None


@dataclass(frozen=True)
class AccessRecord:
    family: Family
    expires_at: float  # exact; the JWT's integer `exp` is rounded down from it


class TokenAuthority:
    """Issues, rotates, revokes and checks tokens, all under the simulator's state lock.

    One lock makes a refresh's check-and-rotate atomic: of two concurrent refreshes with
    the same token exactly one wins and the other is a reuse.
    """

    def __init__(
        self,
        *,
        lock: threading.RLock,
        counters: Counters,
        issuer: Callable[[], str],
        clock: Callable[[], float],
        client_id: str,
        refresh_deadline: Literal["fixed", "sliding"],
        refresh_token_format: Literal["opaque", "jwt"] = "opaque",
        refresh_cap: float | None = None,
        reuse_grace: float = 0.0,
    ) -> None:
        if refresh_cap is not None and refresh_cap < 0:
            raise ValueError("refresh_cap must not be negative")
        if not 0 <= reuse_grace <= MAX_REUSE_GRACE:
            raise ValueError(f"reuse_grace must be 0 to {MAX_REUSE_GRACE:.0f} seconds, as PingOne allows")
        self.refresh_cap = refresh_cap
        self.reuse_grace = reuse_grace
        self._lock = lock
        self._counters = counters
        self._issuer = issuer  # known only once the server listens
        self._clock = clock
        self._refresh_deadline = refresh_deadline
        self._refresh_token_format = refresh_token_format
        self._secret = secrets.token_bytes(32)
        self._client_ids = {client_id}
        self._refresh_tokens: dict[str, RefreshRecord] = {}
        self._access_tokens: dict[str, AccessRecord] = {}  # by jti

    def mint_pair(self, client_id: str, access_ttl: float, refresh_ttl: float) -> dict[str, Any]:
        if access_ttl < 0 or refresh_ttl < 0:
            raise ValueError("token lifetimes must not be negative")
        now = self._clock()
        cap = None if self.refresh_cap is None else now + self.refresh_cap
        family = Family(
            client_id, access_ttl, refresh_ttl, deadline=_earlier(now + refresh_ttl, cap), cap=cap
        )
        with self._lock:
            self._client_ids.add(family.client_id)
            return self._issue(family, now, family.deadline)

    def revoke_family_of(self, refresh_token: str) -> None:
        with self._lock:
            self._revoke(self._family_of(refresh_token))

    def disable(self, refresh_token: str) -> None:
        """An admin's Disable or Delete in AAC: no refresh succeeds, issued access tokens live to ``exp``."""
        with self._lock:
            family = self._family_of(refresh_token)
            if not family.disabled:
                family.disabled = True
                self._counters.count("families_disabled")

    def _family_of(self, refresh_token: str) -> Family:
        """The family a refresh token this simulator issued belongs to; a test's typo is a KeyError."""
        record = self._refresh_tokens.get(refresh_token)
        if record is None:
            raise KeyError("unknown refresh token")
        return record.family

    def family_info(self, token: str) -> dict[str, Any]:
        jti = self._verified_jti(token)
        with self._lock:
            record: RefreshRecord | AccessRecord | None = self._refresh_tokens.get(token)
            if record is None and jti is not None:
                record = self._access_tokens.get(jti)
            if record is None:
                raise KeyError("unknown token")
            family = record.family
            return {"client_id": family.client_id, "rotations": family.rotations, "revoked": family.revoked}

    def refresh_token_status(self, refresh_token: str) -> str:
        with self._lock:
            record = self._refresh_tokens.get(refresh_token)
            if record is None:
                return "unknown"
            if record.family.revoked:
                return "revoked"
            if record.family.disabled:
                return "disabled"
            if record.spent:
                return "spent"
            return "expired" if self._clock() >= record.expires_at else "live"

    def rotate(self, presented: str, client_id: str) -> dict[str, Any]:
        """Spend `presented` and issue its successor, or say why not; the core of AAC's rules."""
        with self._lock:
            now = self._clock()
            record = self._refresh_tokens.get(presented)
            if client_id not in self._client_ids or (
                record is not None and record.family.client_id != client_id
            ):
                raise OAuthError(401, "invalid_client", "Client authentication failed: unknown client_id")
            if record is None:
                raise OAuthError(400, "invalid_grant", "The refresh token is invalid")
            family = record.family
            if family.revoked or family.disabled:
                raise OAuthError(400, "invalid_grant", "The refresh token has been revoked")
            if record.spent:
                replay = self._grace_answer(record, now)
                if replay is not None:
                    self._counters.count("grace_replays")
                    return replay
                self._counters.count("reuses")
                self._revoke(family)
                raise OAuthError(
                    400, "invalid_grant", "Refresh token reuse detected; the token family is revoked"
                )
            if now >= record.expires_at:
                raise OAuthError(400, "invalid_grant", "The refresh token has expired")
            family.rotations += 1
            self._counters.count("refreshes")
            deadline = family.deadline if self._refresh_deadline == "fixed" else now + family.refresh_ttl
            answer = {
                **self._issue(family, now, _earlier(deadline, family.cap)),
                "token_type": "Bearer",
                "scope": SCOPE,
            }
            record.spent_at, record.answer = now, answer
            record.successor = self._refresh_tokens[answer["refresh_token"]]
            return dict(answer)

    def _grace_answer(self, record: RefreshRecord, now: float) -> dict[str, Any] | None:
        """The answer ``record`` already got, when PingOne's grace period forgives presenting it again.

        Lock held. Only the immediately preceding token qualifies: its successor must still
        be unspent, and the grace counts from when it was spent.
        """
        assert record.spent_at is not None
        successor = record.successor
        if (
            self.reuse_grace <= 0
            or record.answer is None
            or successor is None
            or successor.spent
            or now - record.spent_at > self.reuse_grace
        ):
            return None
        return dict(record.answer)

    def unauthorized_reason(self, headers: dict[str, str]) -> str | None:
        """Why a /v4 request's bearer token is refused, or None when it is good."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "A bearer access token is required"
        jti = self._verified_jti(token)
        with self._lock:
            record = None if jti is None else self._access_tokens.get(jti)
            if record is None:
                return "The access token is invalid"
            if record.family.revoked:
                return "The access token has been revoked"
            if self._clock() >= record.expires_at:
                return "The access token has expired"
        return None

    def _issue(self, family: Family, now: float, refresh_deadline: float) -> dict[str, Any]:
        """Lock held."""
        refresh_token = secrets.token_urlsafe(48)
        if self._refresh_token_format == "jwt":
            claims = {"iss": self._issuer(), "exp": int(refresh_deadline), "jti": refresh_token}
            refresh_token = jwt.encode(claims, self._secret, algorithm="HS256")
        self._refresh_tokens[refresh_token] = RefreshRecord(family, refresh_deadline)
        return {
            "access_token": self._mint_access_token(family, now),
            "refresh_token": refresh_token,
            "expires_in": number(family.access_ttl),
        }

    def _mint_access_token(self, family: Family, now: float) -> str:
        """Lock held."""
        jti = uuid.uuid4().hex
        expires_at = now + family.access_ttl
        self._access_tokens[jti] = AccessRecord(family, expires_at)
        claims = {
            "iss": self._issuer(),
            "client_id": family.client_id,
            "sub": CURRENT_PERSON["email"],
            "iat": int(now),
            "exp": int(expires_at),
            "jti": jti,
            "scope": SCOPE,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _revoke(self, family: Family) -> None:
        """Lock held."""
        if not family.revoked:
            family.revoked = True
            self._counters.count("families_revoked")

    def _verified_jti(self, token: str) -> str | None:
        """The id of an access token this instance signed, expired or not; no lock needed."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self._issuer(),
                options={"verify_exp": False, "require": ["iss", "exp", "jti"]},
            )
        except jwt.InvalidTokenError:
            return None
        jti: str = claims["jti"]
        return jti


def _earlier(deadline: float, cap: float | None) -> float:
    return deadline if cap is None else min(deadline, cap)
