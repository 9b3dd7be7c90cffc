"""The one IO vocabulary: exchanges with AAC as generators of effects, and what answers them.

An exchange (one ``/v4`` call across its retries, or a run's status read that makes two
calls) is written once, without IO: it yields what it needs done (``FreshToken``, ``Send``,
``Wait``, ``ReplaceToken``) and is resumed with the outcome. The drivers
(``hooks.driver``, run by ``AACHook.run_exchange`` with requests and
``AACHook.arun_exchange`` with httpx) are the only code that does the IO, so the worker
path and the triggerer path cannot drift apart. A ``Send`` is answered with an
``HttpAnswer``; when no answer came, the driver raises the edge's ``TransportFailure``
into the exchange at its ``yield``, as it does anything else it fails at (a token it
cannot get). The token POST (``core.oauth``) speaks the same two words: its transport
returns an ``HttpAnswer`` or raises a ``TransportFailure``. Exchanges compose with
``yield from``: an error an inner call raises reaches the outer exchange as an ordinary
exception.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from airflow_provider_aac.core.errors import AACApiError

T = TypeVar("T")


@dataclass(frozen=True)
class FreshToken:
    """Take an access token fresh enough for the sends that follow; resumed with ``None``."""


@dataclass(frozen=True)
class Send:
    """Send this request with the token taken last; resumed with an ``HttpAnswer``."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Wait:
    """Wait ``delay`` seconds, then send again; resumed with ``None``."""

    delay: float


@dataclass(frozen=True)
class ReplaceToken:
    """AAC rejected the token (401): replace it once and resend, or raise ``rejection`` reworded; resumed with ``None``."""

    rejection: AACApiError


Effect = FreshToken | Send | Wait | ReplaceToken


@dataclass(frozen=True)
class HttpAnswer:
    """What a server answered (any status), as the edges hand it to the core; the body may hold tokens."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


class TransportFailure(Exception):
    """No answer came; ``request_sent`` says whether the request may have reached the server."""

    def __init__(self, detail: str, *, request_sent: bool) -> None:
        super().__init__(detail)
        self.request_sent = request_sent

    @classmethod
    def reaching(cls, err: Exception, base_url: str, *, request_sent: bool) -> TransportFailure:
        """A ``/v4`` edge's failure: the error's kind and the host, never the request (it carries the token)."""
        return cls(f"{type(err).__name__} reaching {base_url}", request_sent=request_sent)

    @property
    def detail(self) -> str:
        return str(self)


Exchange = Generator[Effect, HttpAnswer | None, T]
"""An exchange yields effects, is resumed with a ``Send``'s answer (else ``None``), returns a ``T``."""
