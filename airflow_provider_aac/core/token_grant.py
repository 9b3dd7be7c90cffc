"""A token pair as AAC's token endpoint granted it, and what its tokens claim.

The endpoint's answer is a grant: the one shape the two tokens take. A pair the
connection stores (``TokenState``) and a pair held back until it can be stored
(``HeldPair``) each hold one, and add only where it came from: its generation and who
refreshed it, or the refresh token it replaces.

The access token is a JWT whose claims tell where to refresh (``iss``), as whom
(``client_id``) and until when (``exp``); a refresh token may be one too, with its own
``exp``. AAC publishes no key for clients, so no signature is verified.

Every string read out of that JSON (the answer, the claims) goes through ``text``, as
does every string read out of a connection's extra, which a person typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.core.errors import AACConfigError


def text(value: Any, *, strip: bool = True) -> str | None:
    """A non-empty string, or None for anything else.

    What people type into a connection's extra is stripped: a pasted value often brings
    a space or a newline along. What a server sent (a token in AAC's answer, a JWT
    claim) is kept as it came (``strip=False``): a token presented back must be exactly
    the one received.
    """
    if not isinstance(value, str):
        return None
    kept = value.strip() if strip else value
    return kept if kept.strip() else None


@dataclass(frozen=True)
class TokenGrant:
    """Two tokens and the access token's lifetime in seconds, as granted.

    In an answer either token may be missing: without a refresh token AAC did not rotate
    it; without an access token the rotated refresh token is stored all the same. A
    stored pair always has both.
    """

    access_token: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: float | None = None


@dataclass(frozen=True)
class AccessTokenClaims:
    issuer: str | None
    client_id: str | None
    expires_at: float | None
    issued_at: float | None

    @property
    def lifetime(self) -> float | None:
        if self.expires_at is None or self.issued_at is None:
            return None
        return self.expires_at - self.issued_at


def read_claims(access_token: str, *, where: str = "the connection") -> AccessTokenClaims:
    """Decode the payload without verification; a non-JWT is a configuration error."""
    # Imported here: PyJWT pulls in cryptography (~80 ms), which every DAG file importing an
    # operator would pay at parse time, though only a task that reads a token needs it.
    import jwt

    shown = access_token.strip()
    if shown and not shown.strip("*"):
        raise AACConfigError(
            f"The access token in {where} is Airflow's mask ({shown!r}), not a "
            "token: the form and the REST API show secrets masked, and Airflow 3.0's connection "
            "test (the Test button) sends back what it was shown. Type both tokens into the "
            "form before pressing Test, or test the saved connection with "
            "'airflow aac status CONN_ID' ('airflow-aac status CONN_ID' before Airflow 3.2)."
        )
    try:
        payload: dict[str, Any] = jwt.decode(
            access_token, options={"verify_signature": False}, algorithms=["RS256", "HS256", "ES256"]
        )
    except jwt.PyJWTError as err:
        raise AACConfigError(
            f"The access token in {where} is not a JWT ({type(err).__name__}). Paste the access "
            "token exactly as AAC shows it under Preferences > OAuth 2.0 API Tokens: three "
            "base64url parts separated by dots, without quotes or a 'Bearer ' prefix."
        ) from None
    return AccessTokenClaims(
        issuer=text(payload.get("iss"), strip=False),
        client_id=text(payload.get("client_id"), strip=False),
        expires_at=_number_claim(payload, "exp"),
        issued_at=_number_claim(payload, "iat"),
    )


def _number_claim(payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def refresh_token_expiry(refresh_token: str) -> float | None:
    """The ``exp`` claim of a refresh token that is a JWT; None for an opaque one (or no ``exp``).

    AAC documents nothing about its refresh tokens' format, so an opaque token is normal,
    never an error: the deadline then comes only from the connection's ``refresh_expires_at``.
    """
    if refresh_token.count(".") != 2:
        return None
    import jwt

    try:
        payload = jwt.decode(refresh_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return _number_claim(payload, "exp") if isinstance(payload, dict) else None
