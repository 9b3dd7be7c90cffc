"""Exchanges with AAC as generators of IO effects, so one sync and one async driver run them all.

An exchange (one ``/v4`` call across its retries, or a run's status read that makes two
calls) is written once, without IO: it yields what it needs done (``FreshToken``, ``Send``,
``Wait``, ``ReplaceToken``) and is resumed with the outcome. The drivers, ``AACHook.run_exchange``
(requests) and ``AACHook.arun_exchange`` (httpx), are the only code that does the IO, so the
worker path and the triggerer path cannot drift apart. A ``Send`` is answered with an
``HttpAnswer`` or a ``TransportFailed``; what a driver fails at (a token it cannot get) is
raised into the exchange at its ``yield``. Exchanges compose with ``yield from``: an error an
inner call raises reaches the outer exchange as an ordinary exception.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_aac.core.api import (
    DEFAULT_API_BACKOFF,
    ApiCall,
    ApiResponse,
    Decision,
    Raise,
    ReplaceTokenThenRetry,
    RetryAfter,
    Return,
)
from airflow_provider_aac.core.errors import AACApiError
from airflow_provider_aac.core.retry import Backoff

T = TypeVar("T")


@dataclass(frozen=True)
class FreshToken:
    """Take an access token fresh enough for the sends that follow; resumed with ``None``."""


@dataclass(frozen=True)
class Send:
    """Send this request with the current token; resumed with an ``HttpAnswer`` or ``TransportFailed``."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Wait:
    """Wait ``delay`` seconds; resumed with ``None``."""

    delay: float


@dataclass(frozen=True)
class ReplaceToken:
    """AAC rejected the token (401): replace it once, or raise ``rejection`` reworded; resumed with ``None``."""

    rejection: AACApiError


@dataclass(frozen=True)
class HttpAnswer:
    """AAC answered (any status)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class TransportFailed:
    """No answer came; ``request_sent`` says whether the request may have reached AAC."""

    detail: str
    request_sent: bool


Effect = FreshToken | Send | Wait | ReplaceToken
Answer = HttpAnswer | TransportFailed
Exchange = Generator[Effect, Answer | None, T]
"""An exchange yields effects, is resumed with a ``Send``'s answer (else ``None``), returns a ``T``."""


def api_exchange(
    call: ApiCall, *, json: Any = None, params: Mapping[str, Any] | None = None
) -> Exchange[ApiResponse]:
    """One ``/v4`` call across its retries, following ``call``'s decisions."""
    yield FreshToken()
    while True:
        call.start_attempt()
        answer = yield Send(call.method, call.path, params, json, call.headers)
        decision: Decision
        match answer:
            case HttpAnswer(status, headers, body):
                decision = call.after_response(status, headers, body)
            case TransportFailed(detail, request_sent):
                decision = call.after_transport_failure(detail, request_sent=request_sent)
            case _:
                raise TypeError(
                    f"A Send is answered with an HttpAnswer or a TransportFailed, not {answer!r}."
                )
        match decision:
            case Return(response):
                return response
            case Raise(error):
                raise error
            case RetryAfter(delay):
                yield Wait(delay)
            case ReplaceTokenThenRetry(rejection):
                yield ReplaceToken(rejection)


def api_call(
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    backoff: Backoff = DEFAULT_API_BACKOFF,
) -> Exchange[ApiResponse]:
    """``api_exchange`` of a new ``ApiCall``; the path is checked now, before anything is sent."""
    return api_exchange(ApiCall(method, path, headers, backoff=backoff), json=json, params=params)
