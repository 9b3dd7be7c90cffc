"""A token pair as AAC's token endpoint granted it: the one shape the two tokens take.

The endpoint's answer is a grant. A pair the connection stores (``TokenState``) and a
pair held back until it can be stored (``HeldPair``) each hold one, and add only where
it came from: its generation and who refreshed it, or the refresh token it replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
