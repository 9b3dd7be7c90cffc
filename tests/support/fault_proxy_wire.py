"""HTTP/1.1 plumbing for :mod:`tests.support.fault_proxy`: sockets, parsing, forwarding, writing.

Kept apart from the rules so that the fault semantics read as a short list of cases, and
because the byte-level details (which headers are per connection, Content-Length after a
body changes, writes small enough to drip) are the part one gets subtly wrong.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aac.testing.simulator.server import TracksOpenSockets

logger = logging.getLogger("tests.support.fault_proxy")

# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection and are never forwarded.
# Accept-Encoding goes too, so upstreams answer uncompressed and bodies can be edited.
_REQUEST_DROP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host", "content-length", "accept-encoding"}
)  # fmt: skip
_RESPONSE_DROP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "te", "trailer", "transfer-encoding", "upgrade",
     "content-length"}
)  # fmt: skip
_NO_BODY_STATUSES = frozenset({204, 304})
MAX_BODY_BYTES = 16 << 20


@dataclass
class Answer:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


def status_answer(status: int, body: bytes = b"", headers: list[tuple[str, str]] | None = None) -> Answer:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Status"
    return Answer(status, reason, list(headers or []), body)


def json_answer(status: int, payload: Any) -> Answer:
    return status_answer(status, json.dumps(payload).encode(), [("Content-Type", "application/json")])


def strip_json_field(answer: Answer, name: str) -> Answer:
    """``answer`` without the top-level key ``name``; anything but a JSON object passes unchanged."""
    try:
        payload = json.loads(answer.body)
    except ValueError:
        return answer
    if isinstance(payload, dict) and name in payload:
        del payload[name]
        answer.body = json.dumps(payload).encode()
    return answer


@dataclass(frozen=True)
class Upstream:
    host: str
    port: int
    netloc: str
    prefix: str
    timeout: float

    @classmethod
    def parse(cls, url: str, timeout: float) -> Upstream:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// base URL, not {url!r}")
        return cls(parts.hostname, parts.port or 80, parts.netloc, parts.path.rstrip("/"), timeout)

    def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """One request on a fresh connection, read to the end.

        A fresh connection per request means a fault on one request never leaves a
        half-read upstream socket behind for the next one.
        """
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.putrequest(method, self.prefix + target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", self.netloc)
            for name, value in headers:
                if name.lower() not in _REQUEST_DROP:
                    conn.putheader(name, value)
            if body or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            conn.endheaders(body or None)
            resp = conn.getresponse()
            data = resp.read()
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _RESPONSE_DROP]
            if method == "HEAD" and resp.getheader("Content-Length"):
                kept.append(("Content-Length", str(resp.getheader("Content-Length"))))
            return Answer(resp.status, resp.reason, kept, data)
        finally:
            conn.close()


def render(answer: Answer, *, head_only: bool, close: bool) -> bytes:
    """Status line, headers and body as bytes, with a Content-Length that matches the body."""
    has_body = answer.status not in _NO_BODY_STATUSES and not head_only
    lines = [f"HTTP/1.1 {answer.status} {answer.reason}"]
    lines += [f"{name}: {value}" for name, value in answer.headers]
    if has_body:
        lines.append(f"Content-Length: {len(answer.body)}")
    if close:
        lines.append("Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + answer.body if has_body else head


class ThreadTracker:
    """Connection threads of every listener a proxy had, so stop() can join them with a bound."""

    def __init__(self) -> None:
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def start(self, target: Callable[[], object], name: str) -> None:
        def run() -> None:
            try:
                target()
            finally:
                with self._lock:
                    self._threads.discard(threading.current_thread())

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def join(self, timeout: float) -> list[str]:
        """Join all within ``timeout`` in total; returns the names of threads still alive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive()]


class Exchange(BaseHTTPRequestHandler):
    """One client request as the proxy's dispatcher sees it, and the ways to answer it."""

    server: ProxyServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # drip's small writes must leave at once
    timeout = 60  # an idle keep-alive connection does not hold a thread forever
    body: bytes

    @property
    def path_only(self) -> str:
        """The path without the query string (which may carry a token): what gets logged."""
        return urlsplit(self.path).path

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            self.close_connection = True
            self.write(status_answer(400, b"fault proxy: unreadable request body"))
            return
        self.body = body
        self.server.dispatch(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while total <= MAX_BODY_BYTES:
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                for _ in range(100):  # trailers
                    if self.rfile.readline(1024) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)
            total += size
        return None

    def write(
        self,
        answer: Answer,
        *,
        chunk_bytes: int = 0,
        interval: float = 0.0,
        stop: threading.Event | None = None,
    ) -> None:
        """Answer; with ``chunk_bytes``, a few bytes per write and ``interval`` between writes."""
        data = render(answer, head_only=self.command == "HEAD", close=self.close_connection)
        if chunk_bytes <= 0:
            self.wfile.write(data)
            return
        stop = stop or threading.Event()
        for start in range(0, len(data), chunk_bytes):
            if start and stop.wait(interval):
                self.close_connection = True
                return
            self.wfile.write(data[start : start + chunk_bytes])

    def drop(self) -> None:
        """Close the client socket without an answer (the client sees a reset or EOF)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the proxy's own log has the outcome; the request line may carry a token

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ProxyServer(TracksOpenSockets, ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # the proxy joins connection threads itself, with a bound
    request_queue_size = 128

    def __init__(self, port: int, dispatch: Callable[[Exchange], None], threads: ThreadTracker) -> None:
        self.dispatch = dispatch
        self._tracker = threads
        super().__init__(("127.0.0.1", port), Exchange)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup of the host name
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._tracker.start(
            lambda: self.process_request_thread(request, client_address), f"fault-proxy-{self.server_port}"
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("fault proxy connection from %s ended with an error", client_address, exc_info=True)
