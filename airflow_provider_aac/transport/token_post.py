"""The token POST: the refresh request on the wire, gated and bounded.

Its one job beyond sending is to tell whether a failed request may have reached the
server, because the core retries only what cannot have taken effect. It gets two more
guarantees, because a refresh token may be spent only while its sender is certain
nobody else may spend it. ``requests`` timeouts bound each
connect and each read, not the whole answer (a server dripping bytes never trips them),
so a watchdog ends the exchange at the attempt's deadline by shutting its socket. And
the last check of the caller's exclusivity runs after the connection is open and before
the first byte of the request is written, so a slow DNS lookup or connect cannot carry
a send past the moment the caller stopped being the only one allowed to spend.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from airflow_provider_aac.core.api import USER_AGENT
from airflow_provider_aac.core.exchange import HttpAnswer, TransportFailure
from airflow_provider_aac.core.oauth import SendWindow, TokenTransport
from airflow_provider_aac.transport.requests_edge import requests_was_sent

CONNECT_TIMEOUT = 10.0


class _TooLateToSend(Exception):
    """The attempt's deadline passed before the request was written: nothing was sent."""


class _Attempt:
    """One token POST: whether it was sent, and the socket to cut at its deadline."""

    def __init__(self, window: SendWindow) -> None:
        self.window = window
        self.sent = False
        self.cut_off = False
        self._done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def open_gate(self, sock: socket.socket) -> None:
        self.window.before_send()
        with self._lock:
            if self.cut_off:
                raise _TooLateToSend()
            self._sock = sock
            self.sent = True

    def cut(self) -> None:
        with self._lock:
            if self._done:
                return
            self.cut_off = True
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> bool:
        """End the attempt; True if the watchdog cut it off first (the answer may be truncated)."""
        with self._lock:
            self._done = True
            return self.cut_off


_CURRENT: ContextVar[_Attempt | None] = ContextVar("aac_token_attempt", default=None)


class _GatedSend:
    """Runs the attempt's gate between opening the connection and writing the request."""

    sock: Any

    def send(self, data: Any) -> None:
        attempt = _CURRENT.get()
        if attempt is not None and not attempt.sent:
            if self.sock is None:
                self.connect()  # type: ignore[attr-defined]
            attempt.open_gate(self.sock)
        super().send(data)  # type: ignore[misc]


class _GatedHTTPConnection(_GatedSend, HTTPConnection):
    pass


class _GatedHTTPSConnection(_GatedSend, HTTPSConnection):
    pass


class _GatedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GatedHTTPConnection


class _GatedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GatedHTTPSConnection


_GATED_POOLS = {"http": _GatedHTTPPool, "https": _GatedHTTPSPool}


class _GatedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_GATED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_GATED_POOLS)
        return manager


def token_session() -> requests.Session:
    """A session for the token endpoint only; its connections run each attempt's gate."""
    session = requests.Session()
    adapter = _GatedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def requests_token_transport(session: requests.Session | None = None) -> TokenTransport:
    http = session or token_session()
    gated = _runs_gates(http)

    def post(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        attempt = _Attempt(window)
        token = _CURRENT.set(attempt)
        watchdog = threading.Timer(max(window.seconds, 0.0), attempt.cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            if not gated:
                window.before_send()
            response = http.post(
                url,
                data=dict(form),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT, "Connection": "close"},
                timeout=(min(CONNECT_TIMEOUT, window.seconds), window.seconds),
                allow_redirects=False,
            )
            content = response.content
            if attempt.finish():
                raise requests.exceptions.ReadTimeout("the answer was cut off at the attempt's deadline")
        except _TooLateToSend:
            raise TransportFailure(
                f"the connection took longer than the {window.seconds:.1f} s this attempt had",
                request_sent=False,
            ) from None
        except requests.RequestException as err:
            sent = attempt.sent if gated else requests_was_sent(err)
            detail = (
                f"no complete answer within the {window.seconds:.1f} s this attempt had"
                if attempt.cut_off or isinstance(err, requests.exceptions.ReadTimeout)
                else type(err).__name__
            )
            raise TransportFailure(detail, request_sent=sent) from None
        finally:
            attempt.finish()
            watchdog.cancel()
            _CURRENT.reset(token)
            http.close()  # a fresh connection per attempt: a stale keep-alive one makes "sent?" unanswerable
        return HttpAnswer(response.status_code, dict(response.headers), content)

    return post


def _runs_gates(session: requests.Session) -> bool:
    """Whether the session's adapters run the gate, so an attempt knows for sure if it was sent."""
    return all(isinstance(adapter, _GatedAdapter) for adapter in session.adapters.values())
