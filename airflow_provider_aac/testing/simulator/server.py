"""The HTTP side of the simulator: a keep-alive handler and a ThreadingHTTPServer around one callable.

The server knows nothing of AAC: it turns each HTTP request into a :class:`Request`, hands
it to the callable it was given, and writes the :class:`Response` back (or hangs up, for a
lost response). Bodies it will not read (chunked, missing or too large lengths) are refused
here, before the callable sees anything.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_provider_aac.testing.simulator.wire import ApiError, Request, Response

logger = logging.getLogger("airflow_provider_aac.testing.simulator.simulator")

MAX_BODY_BYTES = 1 << 20

RequestCallable = Callable[[Request], Response]


class RequestHandler(BaseHTTPRequestHandler):
    """Turns HTTP into `Request`s for the server's callable and writes its `Response`s back."""

    server: Server
    protocol_version = "HTTP/1.1"  # keep-alive, so pooled clients behave as against AAC
    server_version = "AACSimulator/1.0"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    timeout = 60  # an idle keep-alive connection does not hold a thread forever

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        response = self.server.handle(request)
        if response.drop_connection:
            self.close_connection = True
            return
        self._write(response)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a body we will not read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(411, "Send a Content-Length instead of a chunked body")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self._refuse(413 if length > 0 else 400, "Bad or too large Content-Length")
            return None
        return self.rfile.read(length) if length else b""

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True
        self._write(ApiError(status, message).response())

    def _write(self, response: Response) -> None:
        response.headers.setdefault("x-trifacta-request-id", str(uuid.uuid4()))
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        has_body = response.status not in (204, 304)
        if has_body:
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if has_body and response.body:
            self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Path only: a query string is the one place a careless client could put a token.
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s: " + format, self.address_string(), *args)


class TracksOpenSockets(socketserver.BaseServer):
    """Remembers the client sockets a server is serving, so stopping it can end keep-alive ones too.

    Mix it in ahead of the server class (``class S(TracksOpenSockets, ThreadingHTTPServer)``).
    A socket is remembered once accepted (in ``verify_request``, which runs before any
    ``process_request``, overridden or not) and forgotten in ``shutdown_request``;
    :meth:`close_open_connections` shuts down the ones still open. The simulator's server
    and the test suite's fault proxy both use it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open_sockets: set[Any] = set()
        self._open_sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._open_sockets_lock:
            self._open_sockets.add(request)
        return super().verify_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_sockets_lock:
            self._open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End keep-alive connections too: a stopped (or refusing) server leaves no thread waiting on a client."""
        with self._open_sockets_lock:
            connections = list(self._open_sockets)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Server(TracksOpenSockets, ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the benchmarks connect 64 callers at once

    def __init__(self, address: tuple[str, int], handle: RequestCallable) -> None:
        self.handle = handle
        super().__init__(address, RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall for seconds offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("the AAC simulator failed while serving %s", client_address)


class ServerThread:
    """A :class:`Server` serving on a daemon thread until :meth:`stop`."""

    def __init__(self, address: tuple[str, int], handle: RequestCallable) -> None:
        self.server = Server(address, handle)
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="aac-simulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.server.close_open_connections()
        self._thread.join(timeout=5)
