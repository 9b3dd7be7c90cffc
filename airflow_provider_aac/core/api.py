"""Calling AAC's ``/v4`` API: what each answer means and whether to try again.

The decisions live here, once: ``ApiCall`` turns each answer into the call's next step
(return the ``ApiResponse``, raise, or the effect to yield: ``Wait`` then resend, or
``ReplaceToken`` then resend), and ``api_exchange`` yields those effects for the hook's
sync (requests) and async (httpx) drivers (``core.exchange``). A 429 is retried for every method
(AAC refused it before doing anything), after the wait AAC names (``x-retry-after``, or
the reset of the exhausted per-minute window); 5xx and lost connections only for idempotent
requests, which include a run POST that carries ``x-execution-id``.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.core.errors import (
    AACApiError,
    AACConfigError,
    AACNotFoundError,
    AACTransientError,
)
from airflow_provider_aac.core.exchange import (
    Exchange,
    FreshToken,
    HttpAnswer,
    ReplaceToken,
    Send,
    TransportFailure,
    Wait,
)
from airflow_provider_aac.core.rate_limits import rate_limit_wait
from airflow_provider_aac.core.retry import Backoff, parse_retry_after

USER_AGENT = "airflow-provider-aac"
API_PREFIX = "/v4/"
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
EXECUTION_ID_HEADER = "x-execution-id"
REQUEST_ID_HEADER = "x-trifacta-request-id"
DEFAULT_API_BACKOFF = Backoff(attempts=5, base=1.0, cap=30.0, max_retry_after=120.0)

STATUS_HINTS = {
    400: "AAC rejected the request as invalid; check the ids, overrides and parameters.",
    401: "AAC rejected the access token even after a refresh; the token family may have been revoked. "
    "Generate a new pair in AAC (Preferences > OAuth 2.0 API Tokens) and store it in the connection.",
    403: "The token's user may not do this: check the user's role in the workspace, and that the object "
    "belongs to the workspace the token was generated in.",
    404: "No such object in this workspace: check the id, and that the connection's token belongs to "
    "the workspace that holds it.",
    410: "AAC says the object is gone.",
    415: "AAC refused the content type; send a JSON body.",
    429: "AAC kept rate-limiting the calls (about 30 runs per user and 60 per workspace a minute); "
    "spread the runs out or try later.",
}


def validate_api_path(path: str) -> str:
    """Only ``/v4/...``; dot segments would let a request (and its bearer token) leave ``/v4``."""
    if not isinstance(path, str) or not path.startswith(API_PREFIX):
        raise AACConfigError(
            f"AAC endpoint {path!r} must start with {API_PREFIX!r}, e.g. '/v4/people/current'."
        )
    route = path.split("?", 1)[0]
    if any(segment in (".", "..") for segment in route.lower().replace("%2e", ".").split("/")) or any(
        c in path for c in "#\\ \t\r\n"
    ):
        raise AACConfigError(
            f"AAC endpoint {path!r} has dot segments, a fragment, a backslash or white space; give a "
            "plain path such as '/v4/plans/42', and query arguments as params."
        )
    return path


def api_headers(access_token: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    """A ``/v4`` request's headers; the bearer token wins over any ``Authorization`` the caller gave."""
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **(extra or {})}
    headers["Authorization"] = f"Bearer {access_token}"
    return headers


def is_idempotent(method: str, headers: Mapping[str, str] | None) -> bool:
    if method.upper() in IDEMPOTENT_METHODS:
        return True
    return any(name.lower() == EXECUTION_ID_HEADER for name in (headers or {}))


def decode_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ApiResponse:
    status_code: int
    data: Any
    request_id: str | None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ApiCall:
    """One logical call, across its retries."""

    method: str
    path: str
    headers: Mapping[str, str] | None = None
    backoff: Backoff = DEFAULT_API_BACKOFF
    attempt: int = 0
    refreshed_after_401: bool = False

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        validate_api_path(self.path)

    @property
    def idempotent(self) -> bool:
        return is_idempotent(self.method, self.headers)

    def start_attempt(self) -> None:
        self.attempt += 1

    def after_response(self, answer: HttpAnswer) -> ApiResponse | Wait | ReplaceToken:
        """The answer for the caller, or the effect before the next attempt; raises when the call failed for good."""
        status, body = answer.status, answer.body
        lowered = {k.lower(): v for k, v in answer.headers.items()}
        request_id = lowered.get(REQUEST_ID_HEADER)
        if status < 400:
            return ApiResponse(status, decode_body(body), request_id, lowered)
        if status == 401 and not self.refreshed_after_401:
            self.refreshed_after_401 = True
            return ReplaceToken(self.error_for(status, body, request_id))
        if status == 429 or (status >= 500 and self.idempotent):
            wait = rate_limit_wait(lowered) if status == 429 else parse_retry_after(lowered)
            delay = self.backoff.delay(self.attempt, wait)
            if delay is not None:
                return Wait(delay)
        raise self.error_for(status, body, request_id)

    def after_transport_failure(self, failure: TransportFailure) -> Wait:
        """The wait before the next attempt; raises when no attempt is left or repeating is unsafe."""
        if not failure.request_sent or self.idempotent:
            delay = self.backoff.delay(self.attempt)
            if delay is not None:
                return Wait(delay)
        consequence = (
            " It was a non-idempotent request, so it was not repeated: check in AAC whether it took effect."
            if failure.request_sent and not self.idempotent
            else ""
        )
        raise AACTransientError(
            f"{self.method} {self.path} failed after {self.attempt} attempt(s): {failure.detail}.{consequence}"
        )

    def error_for(self, status: int, body: bytes, request_id: str | None) -> AACApiError:
        name, message = aac_exception(decode_body(body))
        hint = STATUS_HINTS.get(status) or self._default_hint(status)
        text = f"AAC answered {status} to {self.method} {self.path}"
        if name:
            text += f": {name}: {message or ''}".rstrip(": ")
        elif message:
            text += f": {message}"
        text += f". {hint}"
        if request_id:
            text += f" (AAC request id {request_id})"
        error_type = AACNotFoundError if status == 404 else AACApiError
        return error_type(text, status_code=status, aac_name=name, aac_message=message, request_id=request_id)

    def _default_hint(self, status: int) -> str:
        if status < 500:
            return "AAC refused the request; check the method, endpoint and body against AAC's API reference."
        if self.idempotent:
            return (
                "AAC had a server error, and retries did not help; it is usually transient, try again later."
            )
        return (
            "AAC had a server error answering a request that is not repeated automatically, because it "
            "may already have taken effect (a run may have started): check in AAC whether it took effect before trying again."
        )


def api_exchange(
    call: ApiCall, *, json: Any = None, params: Mapping[str, Any] | None = None
) -> Exchange[ApiResponse]:
    """One ``/v4`` call across its retries, yielding the effects ``call`` decides on."""
    yield FreshToken()
    while True:
        call.start_attempt()
        try:
            answer = yield Send(call.method, call.path, params, json, call.headers)
        except TransportFailure as failure:
            step: ApiResponse | Wait | ReplaceToken = call.after_transport_failure(failure)
        else:
            if not isinstance(answer, HttpAnswer):
                raise TypeError(f"A Send is answered with an HttpAnswer, not {answer!r}.")
            step = call.after_response(answer)
        if isinstance(step, ApiResponse):
            return step
        yield step


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


def plain_text(body: str, limit: int = 300) -> str | None:
    """The words of a non-JSON answer: AAC's plain-text ``Unauthorized`` (a 401, seen live), or a
    gateway's HTML page reduced to its title, else its text without tags."""
    title = _HTML_TITLE.search(body)
    text = title.group(1) if title else _HTML_TAG.sub(" ", _HTML_HIDDEN.sub(" ", body))
    words = " ".join(html.unescape(text).split())
    return (words[: limit - 1] + "…" if len(words) > limit else words) or None


_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_HTML_HIDDEN = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HTML_TAG = re.compile(r"<[^>]*>")


def aac_exception(body: Any) -> tuple[str | None, str | None]:
    """AAC's ``{"exception": {"name", "message"}}``, tolerating other shapes and non-JSON bodies."""
    if not isinstance(body, dict):
        return None, (plain_text(body) if isinstance(body, str) and body else None)
    exception = body.get("exception")
    if isinstance(exception, dict):
        name, message = exception.get("name"), exception.get("message")
        return (str(name) if name else None), (str(message)[:500] if message else None)
    message = body.get("message") or body.get("error")
    return None, (str(message)[:500] if message else None)
