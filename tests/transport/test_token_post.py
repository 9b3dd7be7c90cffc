"""The HTTP edges must tell "never sent" from "may have reached the server".

Real sockets on 127.0.0.1: a closed port (refused), a listener whose backlog is full
(connect timeout), a server that reads the request and hangs up, and one that reads it
and never answers (read timeout).
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import requests
import urllib3

from airflow_provider_aac.core.exchange import TransportFailure
from airflow_provider_aac.core.oauth import SendWindow
from airflow_provider_aac.transport.httpx_edge import httpx_was_sent
from airflow_provider_aac.transport.requests_edge import requests_was_sent
from airflow_provider_aac.transport.token_post import requests_token_transport

SHORT = 0.3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_request(conn: socket.socket) -> bytes:
    """The whole request (headers, then Content-Length bytes of body), or what came before EOF.

    Closing with part of the request unread would reset the connection under the client.
    """
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
        head, separator, body = data.partition(b"\r\n\r\n")
        if separator:
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if len(body) >= (int(length.group(1)) if length else 0):
                break
    return data


@contextlib.contextmanager
def tcp_server(behaviour: str) -> Iterator[str]:
    """A one-purpose server: ``hang_up`` closes after reading, ``silent`` never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []
    received = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                read_request(conn)  # all of it: closing on unread bytes would reset, not hang up
            received.set()
            if behaviour == "hang_up":
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/as/token"
        assert received.is_set(), "the server never received the request"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


@contextlib.contextmanager
def full_backlog() -> Iterator[str]:
    """A listener that never accepts, with its queue filled, so new SYNs go unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield f"http://127.0.0.1:{port}/as/token"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def requests_error(url: str) -> requests.RequestException:
    with pytest.raises(requests.RequestException) as info:
        requests.post(url, data={"a": "b"}, timeout=(SHORT, SHORT))
    return info.value


def httpx_error(url: str) -> httpx.HTTPError:
    with pytest.raises(httpx.HTTPError) as info:
        httpx.post(url, data={"a": "b"}, timeout=httpx.Timeout(SHORT))
    return info.value


# --------------------------------------------------------------------------- requests


def test_requests_connection_refused_was_not_sent() -> None:
    err = requests_error(f"http://127.0.0.1:{closed_port()}/as/token")
    assert isinstance(err, requests.ConnectionError)
    assert requests_was_sent(err) is False


def test_requests_connect_timeout_was_not_sent() -> None:
    with full_backlog() as url:
        err = requests_error(url)
    if not isinstance(err, requests.exceptions.ConnectTimeout):
        pytest.skip(f"this kernel did not leave the connection hanging ({type(err).__name__})")
    assert requests_was_sent(err) is False


def test_requests_hang_up_after_the_request_was_sent() -> None:
    with tcp_server("hang_up") as url:
        err = requests_error(url)
    assert isinstance(err, requests.ConnectionError)
    assert requests_was_sent(err) is True


def test_requests_read_timeout_was_sent() -> None:
    with tcp_server("silent") as url:
        err = requests_error(url)
    assert isinstance(err, requests.exceptions.ReadTimeout)
    assert requests_was_sent(err) is True


@pytest.mark.parametrize(
    ("err", "sent"),
    [
        (requests.exceptions.ConnectTimeout("x"), False),
        (requests.exceptions.SSLError("x"), False),
        (requests.exceptions.InvalidURL("x"), False),
        (requests.exceptions.MissingSchema("x"), False),
        (
            requests.ConnectionError(
                urllib3.exceptions.MaxRetryError(
                    None,  # type: ignore[arg-type]
                    "/",
                    urllib3.exceptions.NameResolutionError("aac.invalid", None, OSError("no name")),  # type: ignore[arg-type]
                )
            ),
            False,
        ),
        (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), True),
        (requests.exceptions.ChunkedEncodingError("x"), True),
        (requests.exceptions.ReadTimeout("x"), True),
    ],
)
def test_requests_was_sent_by_error_type(err: requests.RequestException, sent: bool) -> None:
    assert requests_was_sent(err) is sent


def test_token_transport_reports_transport_failures_with_the_sent_flag() -> None:
    post = requests_token_transport(requests.Session())
    with pytest.raises(TransportFailure) as refused:
        post(f"http://127.0.0.1:{closed_port()}/as/token", {"a": "b"}, SendWindow(SHORT))
    assert refused.value.request_sent is False
    assert str(refused.value) == "ConnectionError"
    with tcp_server("hang_up") as url, pytest.raises(TransportFailure) as hung_up:
        post(url, {"a": "b"}, SendWindow(SHORT))
    assert hung_up.value.request_sent is True
    with tcp_server("silent") as url, pytest.raises(TransportFailure) as silent:
        post(url, {"a": "b"}, SendWindow(SHORT))
    assert silent.value.request_sent is True
    assert str(silent.value) == "no complete answer within the 0.3 s this attempt had"


def test_token_transport_does_not_follow_redirects() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/as/token"

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            read_request(conn)
            conn.sendall(
                b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        response = requests_token_transport(requests.Session())(url, {"a": "b"}, SendWindow(5.0))
    finally:
        thread.join(5)
        listener.close()
    assert response.status == 302


@contextlib.contextmanager
def dripping_server(interval: float) -> Iterator[tuple[str, Callable[[int], list[bytes]]]]:
    """Answers 200 one byte every ``interval`` seconds: no single read waits long.

    Also yields ``received(n)``: what each of the first ``n`` connections sent, in the order
    they were accepted, once each has been read.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.05)
    stop = threading.Event()
    received: list[bytes | None] = []
    arrived = threading.Condition()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    def drip(conn: socket.socket, slot: int) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            data = read_request(conn)
            with arrived:
                received[slot] = data
                arrived.notify_all()
            for byte in answer:
                conn.sendall(bytes([byte]))
                if stop.wait(interval):
                    return

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            with arrived:
                received.append(None)
                slot = len(received) - 1
            threading.Thread(target=drip, args=(conn, slot), daemon=True).start()

    def first(count: int) -> list[bytes]:
        with arrived:
            done = arrived.wait_for(
                lambda: len(received) >= count and None not in received[:count], timeout=5
            )
            assert done, f"{count} connections were not read within 5 s: {received}"
            return [data for data in received[:count] if data is not None]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/as/token", first
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_token_transport_ends_a_dripped_answer_at_the_attempt_deadline() -> None:
    """Per-read timeouts never trip on a drip; the attempt's deadline bounds the whole answer."""
    post = requests_token_transport()
    with dripping_server(interval=0.05) as (url, _):
        started = time.monotonic()
        with pytest.raises(TransportFailure) as cut:
            post(url, {"a": "b"}, SendWindow(1.0))
        took = time.monotonic() - started
        whole = post(url, {"a": "b"}, SendWindow(30.0))
    assert cut.value.request_sent is True
    assert str(cut.value) == "no complete answer within the 1.0 s this attempt had"
    assert 0.9 <= took < 2.0, took
    assert whole.status == 200 and whole.body == b"{}"


def test_token_transport_checks_the_gate_after_connecting_and_before_sending() -> None:
    post = requests_token_transport()
    checks: list[str] = []

    def lock_lost() -> None:
        checks.append("checked")
        raise RuntimeError("the lock is gone")

    with dripping_server(interval=0.0) as (url, received):
        with pytest.raises(RuntimeError, match="the lock is gone"):
            post(url, {"refresh_token": "r"}, SendWindow(5.0, lock_lost))
        ok = post(url, {"refresh_token": "r"}, SendWindow(5.0, lambda: checks.append("passed")))
        refused, sent = received(2)
    assert checks == ["checked", "passed"]
    assert ok.status == 200
    assert refused == b"", "nothing of the refused request reached the server"
    assert sent.startswith(b"POST /as/token")


# --------------------------------------------------------------------------- httpx (transport.httpx_edge)


def test_httpx_connection_refused_was_not_sent() -> None:
    err = httpx_error(f"http://127.0.0.1:{closed_port()}/as/token")
    assert isinstance(err, httpx.ConnectError)
    assert httpx_was_sent(err) is False


def test_httpx_connect_timeout_was_not_sent() -> None:
    with full_backlog() as url:
        err = httpx_error(url)
    if not isinstance(err, httpx.ConnectTimeout):
        pytest.skip(f"this kernel did not leave the connection hanging ({type(err).__name__})")
    assert httpx_was_sent(err) is False


def test_httpx_hang_up_after_the_request_was_sent() -> None:
    with tcp_server("hang_up") as url:
        err = httpx_error(url)
    assert isinstance(err, httpx.RemoteProtocolError)
    assert httpx_was_sent(err) is True


def test_httpx_read_timeout_was_sent() -> None:
    with tcp_server("silent") as url:
        err = httpx_error(url)
    assert isinstance(err, httpx.ReadTimeout)
    assert httpx_was_sent(err) is True


def test_httpx_unsupported_protocol_was_not_sent() -> None:
    err = httpx_error("ftp://127.0.0.1/as/token")
    assert isinstance(err, httpx.UnsupportedProtocol)
    assert httpx_was_sent(err) is False


def test_httpx_pool_timeout_was_not_sent() -> None:
    assert httpx_was_sent(httpx.PoolTimeout("no connection available")) is False
