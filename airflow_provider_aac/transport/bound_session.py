"""The session ``AACHook.get_conn()`` returns: requests, bound to the connection's ``/v4``.

Its requests carry the AAC access token, so it sends to nothing else: a URL on another
scheme, host, port or path (dot segments and redirects included) is refused before the
token is attached. What it does send runs through the hook's own driver and the one
``/v4`` policy (``core.api.ApiCall``): the same retries of 429, of 5xx and lost connections
where repeating is safe, and one token replacement after a 401. Unlike ``hook.request``,
an answer that is not retried is returned as a ``requests.Response``, as requests does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import requests

from airflow_provider_aac.core.api import API_PREFIX, USER_AGENT, ApiCall, api_exchange, validate_api_path
from airflow_provider_aac.core.errors import AACApiError, AACConfigError
from airflow_provider_aac.core.exchange import Exchange, HttpAnswer, Send, TransportFailure
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.transport.requests_edge import requests_was_sent

T = TypeVar("T")
DEFAULT_PORTS = {"http": 80, "https": 443}


class ExchangeDriver(Protocol):
    """What the session needs of ``AACHook``: its retry policy, and its driver with a send of the session's own."""

    aac_conn_id: str
    backoff: Backoff

    def run_exchange(
        self, exchange: Exchange[T], send: Callable[[Send, str, str], HttpAnswer] | None = None
    ) -> T: ...


class AACSession(requests.Session):
    """A ``requests.Session`` that sends only to ``base_url``'s ``/v4``, with the hook's token and retries."""

    def __init__(self, hook: ExchangeDriver, base_url: str) -> None:
        super().__init__()
        self.hook = hook
        self.base_url = base_url
        self.headers["User-Agent"] = USER_AGENT

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        call = ApiCall(
            request.method or "GET",
            self.route_of(request.url or "", request.method),
            dict(request.headers),
            backoff=self.hook.backoff,
        )
        kwargs["allow_redirects"] = False  # a redirect would carry the token elsewhere
        responses: list[requests.Response] = []

        def send_attempt(_: Send, base_url: str, access_token: str) -> HttpAnswer:
            if base_url != self.base_url:
                raise AACConfigError(
                    f"The host of connection {self.hook.aac_conn_id!r} changed to {base_url} after this "
                    f"session was bound to {self.base_url}; nothing was sent. Call hook.get_conn() again."
                )
            attempt = request.copy()
            attempt.headers["Authorization"] = f"Bearer {access_token}"
            responses.clear()
            try:
                response = super(AACSession, self).send(attempt, **kwargs)
            except requests.RequestException as err:
                raise TransportFailure.reaching(err, base_url, request_sent=requests_was_sent(err)) from None
            responses.append(response)
            return HttpAnswer(response.status_code, response.headers, response.content)

        try:
            self.hook.run_exchange(api_exchange(call), send=send_attempt)
        except AACApiError as err:
            if not responses or err.status_code != responses[-1].status_code:
                raise
        return responses[-1]

    def route_of(self, url: str, method: str | None) -> str:
        """The ``/v4/...`` route (with its query) of ``url``; refuses a URL outside the bound API."""
        target, bound = urlsplit(url), urlsplit(self.base_url)
        prefix = bound.path.rstrip("/")
        if _origin(target) != _origin(bound) or not target.path.startswith(prefix + API_PREFIX):
            raise AACConfigError(
                f"Refused to send {method} {url}: the session from AACHook.get_conn() adds the AAC access "
                f"token of connection {self.hook.aac_conn_id!r}, so it sends only to {self.base_url}"
                f"{API_PREFIX}... and nothing was sent. Use a session of your own for other URLs."
            )
        route = target.path[len(prefix) :] + (f"?{target.query}" if target.query else "")
        return validate_api_path(route)


def _origin(url: Any) -> tuple[str, str | None, int | None]:
    scheme = url.scheme.lower()
    try:
        port = url.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = -1  # not a port: matches no bound origin
    return scheme, url.hostname, port
