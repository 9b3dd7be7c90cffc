"""The httpx edge for async ``/v4`` calls: one client per event loop, and what a failure sent.

Kept apart from ``requests_edge`` so that trigger code and DAG files import no requests at all.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import httpx

from airflow_provider_aac.core.api import api_headers
from airflow_provider_aac.core.exchange import HttpAnswer, Send, TransportFailure


def httpx_was_sent(err: httpx.HTTPError) -> bool:
    return not isinstance(
        err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol
    )


# Requests at once per event loop. httpcore's pool does work per queued request and
# connection on every change, so a triggerer with 1,000 polls queued in it spent seconds of
# loop time there; polls beyond this many wait on a semaphore instead, which costs nothing.
LOOP_CONNECTIONS = 16


@dataclass
class LoopHttp:
    """The running event loop's one httpx client and the slots that bound its requests."""

    client: httpx.AsyncClient
    slots: asyncio.Semaphore


_loop_http: dict[asyncio.AbstractEventLoop, LoopHttp] = {}
_loop_http_lock = threading.Lock()


def loop_http() -> LoopHttp:
    """The running loop's client, shared by every AAC call on that loop.

    A triggerer runs hundreds of polls a minute on one loop: a client per request would
    cost each poll a new SSL context (about 20 ms of loop time) and a new connection.
    Clients of loops that have closed are dropped here. Timeouts are per request.
    """
    loop = asyncio.get_running_loop()
    with _loop_http_lock:
        for closed in [other for other in _loop_http if other.is_closed()]:
            del _loop_http[closed]
        http = _loop_http.get(loop)
        if http is None or http.client.is_closed:
            limits = httpx.Limits(
                max_connections=LOOP_CONNECTIONS, max_keepalive_connections=LOOP_CONNECTIONS
            )
            http = _loop_http[loop] = LoopHttp(
                httpx.AsyncClient(follow_redirects=False, limits=limits), asyncio.Semaphore(LOOP_CONNECTIONS)
            )
        return http


async def send_with_httpx(
    client: httpx.AsyncClient, send: Send, base_url: str, access_token: str, timeout: float
) -> HttpAnswer:
    """One attempt of ``send``; raises ``TransportFailure`` when no answer came. Redirects are not followed."""
    try:
        response = await client.request(
            send.method,
            base_url + send.path,
            json=send.json,
            params=send.params,
            headers=api_headers(access_token, send.headers),
            timeout=timeout,
        )
    except httpx.HTTPError as err:
        raise TransportFailure.reaching(err, base_url, request_sent=httpx_was_sent(err)) from None
    return HttpAnswer(response.status_code, response.headers, response.content)
