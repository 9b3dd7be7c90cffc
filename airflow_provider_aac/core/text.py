"""Reading a string out of JSON that a person or a server wrote."""

from __future__ import annotations

from typing import Any


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
