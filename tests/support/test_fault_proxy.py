"""The fault proxy does to real clients what each action promises, against real upstreams.

Against the AAC simulator where the token endpoint's reaction matters (a lost answer is a
spent token), and against a tiny echo server where the bytes on the wire matter (what was
forwarded, with which Host). Synchronisation is the rules' own counters, never a sleep.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.fault_proxy import FaultProxy, FaultProxyError
from tests.support.fault_proxy_wire import ThreadTracker
from tests.support.local_http import serving

REFRESH = "grant_type=refresh_token"


class _Echo(BaseHTTPRequestHandler):
    """Answers with what it received, so a test can see exactly what the proxy forwarded."""

    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        payload = {
            "method": self.command,
            "target": self.path,
            "host": self.headers.get("Host"),
            "x_test": self.headers.get("X-Test"),
            "accept_encoding": self.headers.get("Accept-Encoding"),
            "body": body.decode(),
        }
        data = json.dumps(payload).encode()
        self.send_response(201 if self.command == "POST" else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "echo")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    with serving(server):
        yield f"http://127.0.0.1:{server.server_port}"


@pytest.fixture
def simulator() -> Iterator[AACSimulator]:
    with AACSimulator(access_ttl=300) as sim:
        yield sim


@pytest.fixture
def proxy_to(fault_proxy_factory: Callable[..., FaultProxy]) -> Callable[[str], FaultProxy]:
    return lambda upstream: fault_proxy_factory(upstream)


def _refresh(
    session: requests.Session, proxy: FaultProxy, sim: AACSimulator, refresh_token: str
) -> requests.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": sim.client_id}
    return session.post(f"{proxy.base_url}/as/token", data=form, timeout=10)


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call`` in a thread; the dict gets ``result`` or ``error`` and ``finished_at``."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = call()
        except Exception as exc:
            out["error"] = exc
        out["finished_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_forwards_request_and_answer_over_keep_alive(
    proxy_to: Callable[[str], FaultProxy], echo_url: str
) -> None:
    proxy = proxy_to(echo_url)
    with requests.Session() as session:
        first = session.post(
            f"{proxy.base_url}/a/b?x=1&y=2", data=b"hello", headers={"X-Test": "t"}, timeout=5
        )
        second = session.get(f"{proxy.base_url}/c", timeout=5)
    assert first.status_code == 201
    assert first.headers["X-Upstream"] == "echo"
    assert first.json() == {
        "method": "POST",
        "target": "/a/b?x=1&y=2",
        "host": echo_url.removeprefix("http://"),
        "x_test": "t",
        "accept_encoding": None,
        "body": "hello",
    }
    assert second.json()["target"] == "/c"
    with httpx.Client(base_url=proxy.base_url) as client:
        assert client.patch("/d", json={"k": 1}).json()["body"] == '{"k":1}'
    assert [(e.method, e.path, e.action, e.status) for e in proxy.log] == [
        ("POST", "/a/b", "forward", 201),
        ("GET", "/c", "forward", 200),
        ("PATCH", "/d", "forward", 200),
    ]


def test_rules_match_in_order_on_method_path_and_body_with_times(
    proxy_to: Callable[[str], FaultProxy], echo_url: str
) -> None:
    proxy = proxy_to(echo_url)
    first = proxy.on("POST", "/as/", body_contains=REFRESH, times=1).respond(503, {"error": "busy"})
    always = proxy.on("POST", "/as/", times=None).respond(429, b"slow down", headers={"Retry-After": "1"})
    with requests.Session() as session:
        a = session.post(f"{proxy.base_url}/as/token", data={"grant_type": "refresh_token"}, timeout=5)
        b = session.post(f"{proxy.base_url}/as/token", data={"grant_type": "refresh_token"}, timeout=5)
        c = session.post(f"{proxy.base_url}/other", data=REFRESH, timeout=5)
        d = session.get(f"{proxy.base_url}/as/token", timeout=5)
    assert (a.status_code, a.json()) == (503, {"error": "busy"})
    assert (b.status_code, b.content, b.headers["Retry-After"]) == (429, b"slow down", "1")
    assert (c.status_code, d.status_code) == (201, 200)
    assert (first.count, first.exhausted, always.count, always.exhausted) == (1, True, 1, False)


def test_close_after_forward_spends_the_token_but_loses_the_answer(
    proxy_to: Callable[[str], FaultProxy], simulator: AACSimulator
) -> None:
    proxy = proxy_to(simulator.base_url)
    pair = simulator.mint_pair()
    lost = proxy.on("POST", "/as/token", body_contains=REFRESH).close_after_forward()
    with requests.Session() as session:
        session.get(f"{proxy.base_url}/_sim/stats", timeout=5)  # the refresh reuses this connection
        with pytest.raises(requests.ConnectionError):
            _refresh(session, proxy, simulator, pair["refresh_token"])
        lost.wait_forwarded(timeout=5)
        assert simulator.stats()["refreshes"] == 1
        retry = _refresh(session, proxy, simulator, pair["refresh_token"])
    assert retry.json()["error"] == "invalid_grant"
    assert simulator.stats()["reuses"] == 1
    assert [e.action for e in proxy.log] == ["forward", "close_after_forward", "forward"]  # no hidden retry


def test_close_before_forward_never_reaches_the_upstream(
    proxy_to: Callable[[str], FaultProxy], simulator: AACSimulator
) -> None:
    proxy = proxy_to(simulator.base_url)
    pair = simulator.mint_pair()
    cut = proxy.on("POST", "/as/token").close_before_forward()
    with requests.Session() as session, pytest.raises(requests.ConnectionError):
        _refresh(session, proxy, simulator, pair["refresh_token"])
    cut.wait_done(timeout=5)
    assert (cut.count, cut.forwarded_count) == (1, 0)
    assert simulator.stats()["token_requests"] == 0
    assert _refresh(requests.Session(), proxy, simulator, pair["refresh_token"]).status_code == 200


def test_drip_outlasts_the_read_timeout_without_tripping_it(
    proxy_to: Callable[[str], FaultProxy], echo_url: str
) -> None:
    proxy = proxy_to(echo_url)
    proxy.on("GET", "/slow").drip(chunk_bytes=12, interval=0.1)
    started = time.monotonic()
    resp = requests.get(f"{proxy.base_url}/slow?pad={'p' * 200}", timeout=(2, 1))  # ~500 bytes: 40 writes
    elapsed = time.monotonic() - started
    assert resp.json()["target"].startswith("/slow?pad=ppp")
    assert elapsed > 3.0, f"the whole answer took only {elapsed:.1f}s"


def test_delay_request_and_delay_response_put_the_wait_on_either_side(
    proxy_to: Callable[[str], FaultProxy], simulator: AACSimulator
) -> None:
    proxy = proxy_to(simulator.base_url)
    pair = simulator.mint_pair()
    before = proxy.on("POST", "/as/token").delay_request(0.4)
    started = time.monotonic()
    first = _refresh(requests.Session(), proxy, simulator, pair["refresh_token"])
    assert first.status_code == 200 and time.monotonic() - started >= 0.4
    assert before.forwarded_count == 1

    after = proxy.on("POST", "/as/token").delay_response(1.0)
    thread, out = _in_thread(
        lambda: _refresh(requests.Session(), proxy, simulator, first.json()["refresh_token"])
    )
    after.wait_forwarded(timeout=5)
    assert simulator.stats()["refreshes"] == 2  # the upstream acted ...
    assert "finished_at" not in out  # ... while the client still waits for the answer
    thread.join(10)
    assert out["result"].status_code == 200


def test_hold_and_release_order_answers(proxy_to: Callable[[str], FaultProxy], echo_url: str) -> None:
    proxy = proxy_to(echo_url)
    held_a = proxy.on("POST", "/held", body_contains="a").hold_request()
    held_b = proxy.on("POST", "/held", body_contains="b").hold_response()
    thread_a, out_a = _in_thread(lambda: requests.post(f"{proxy.base_url}/held", data="a", timeout=10))
    thread_b, out_b = _in_thread(lambda: requests.post(f"{proxy.base_url}/held", data="b", timeout=10))
    held_a.wait_seen(timeout=5)
    held_b.wait_forwarded(timeout=5)  # hold_response: the upstream has answered already
    assert held_a.forwarded_count == 0  # hold_request: the upstream has not seen it yet

    held_b.release()
    thread_b.join(5)
    assert out_b["result"].json()["body"] == "b"
    assert "finished_at" not in out_a
    held_a.release()
    thread_a.join(5)
    assert out_a["result"].json()["body"] == "a"
    assert out_b["finished_at"] < out_a["finished_at"]


def test_hold_request_times_out_into_forwarding(proxy_to: Callable[[str], FaultProxy], echo_url: str) -> None:
    proxy = proxy_to(echo_url)
    proxy.on("GET", "/").hold_request(timeout=0.3)
    assert requests.get(f"{proxy.base_url}/x", timeout=5).status_code == 200


def test_strip_json_field_fixes_content_length(
    proxy_to: Callable[[str], FaultProxy], simulator: AACSimulator
) -> None:
    proxy = proxy_to(simulator.base_url)
    pair = simulator.mint_pair()
    proxy.on("POST", "/as/token").strip_json_field("refresh_token")
    resp = _refresh(requests.Session(), proxy, simulator, pair["refresh_token"])
    assert resp.status_code == 200
    assert "refresh_token" not in resp.json() and "access_token" in resp.json()
    assert int(resp.headers["Content-Length"]) == len(resp.content)
    assert simulator.stats()["refreshes"] == 1  # spent, and the successor never arrived


def test_down_answers_everything_and_up_forwards_again(
    proxy_to: Callable[[str], FaultProxy], echo_url: str
) -> None:
    proxy = proxy_to(echo_url)
    rule = proxy.on("GET", "/").respond(200, b"rule")
    proxy.down(503)
    with requests.Session() as session:
        assert session.get(f"{proxy.base_url}/x", timeout=5).status_code == 503
        assert rule.count == 0
        proxy.up()
        assert session.get(f"{proxy.base_url}/x", timeout=5).content == b"rule"
        assert session.get(f"{proxy.base_url}/x", timeout=5).status_code == 200
    assert [e.action for e in proxy.log] == ["down", "respond", "forward"]


def test_refuse_closes_the_port_and_up_listens_on_the_same_one(
    proxy_to: Callable[[str], FaultProxy], echo_url: str
) -> None:
    proxy = proxy_to(echo_url)
    url = f"{proxy.base_url}/x"
    with requests.Session() as session:
        assert session.get(url, timeout=5).status_code == 200  # a pooled keep-alive connection
        proxy.refuse()
        assert not proxy.listening
        with pytest.raises(requests.ConnectionError):
            session.get(url, timeout=5)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=5)
        proxy.up()
        assert session.get(url, timeout=5).status_code == 200
    assert proxy.base_url == url.removesuffix("/x")


def test_upstream_unreachable_is_a_502(proxy_to: Callable[[str], FaultProxy]) -> None:
    with AACSimulator() as gone:
        upstream = gone.base_url
    proxy = proxy_to(upstream)
    assert requests.get(f"{proxy.base_url}/v4/people/current", timeout=5).status_code == 502
    assert proxy.log[-1].action == "upstream_error"


def test_log_is_bounded_and_never_holds_tokens(
    echo_url: str, simulator: AACSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.support.fault_proxy")
    pair = simulator.mint_pair()
    with FaultProxy(simulator.base_url, log_size=2) as proxy:
        proxy.on("POST", "/as/token").hold_response(timeout=0.1)
        resp = _refresh(requests.Session(), proxy, simulator, pair["refresh_token"])
        headers = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        requests.get(
            f"{proxy.base_url}/v4/people/current?token={pair['refresh_token']}", headers=headers, timeout=5
        )
        requests.get(f"{proxy.base_url}/_sim/stats", timeout=5)
        text = proxy.log_text() + caplog.text
        assert len(proxy.log) == 2
    for secret in (pair["refresh_token"], resp.json()["refresh_token"], resp.json()["access_token"]):
        assert secret not in text
    assert "/v4/people/current -> forward 200" in text


def test_waits_fail_with_the_log(proxy_to: Callable[[str], FaultProxy], echo_url: str) -> None:
    proxy = proxy_to(echo_url)
    rule = proxy.on("DELETE", "/never").forward()
    requests.get(f"{proxy.base_url}/other", timeout=5)
    with pytest.raises(FaultProxyError, match=r"GET /other -> forward 200"):
        rule.wait_seen(timeout=0.05)


def test_stop_ends_holds_and_keep_alive_connections_within_its_bound(echo_url: str) -> None:
    proxy = FaultProxy(echo_url)
    held = proxy.on("GET", "/held").hold_request(timeout=60)
    session = requests.Session()
    assert session.get(f"{proxy.base_url}/idle", timeout=5).status_code == 200  # stays open, idle
    thread, out = _in_thread(lambda: requests.get(f"{proxy.base_url}/held", timeout=10))
    held.wait_seen(timeout=5)
    started = time.monotonic()
    proxy.stop(timeout=5)
    assert time.monotonic() - started < 3
    thread.join(5)
    assert "finished_at" in out
    assert proxy._threads.join(0) == []
    session.close()


def test_thread_tracker_reports_threads_that_outlive_the_bound() -> None:
    tracker = ThreadTracker()
    gate = threading.Event()
    tracker.start(lambda: gate.wait(5), "stuck")
    assert tracker.join(0.05) == ["stuck"]
    gate.set()
    assert tracker.join(5) == []
