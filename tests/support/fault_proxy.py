"""An HTTP/1.1 reverse proxy that injects faults between a client and one real upstream.

Rotating refresh tokens are lost or reused exactly when a request reached the token
server but its answer did not reach the client, arrived too late, or never left. Mocks
cannot show what real clients (requests with keep-alive pools, httpx) do then, so this is
a real socket server in front of the real upstream (the AAC simulator, an Airflow
api-server)::

    with FaultProxy(simulator.base_url) as proxy:
        lost = proxy.on("POST", "/as/token", body_contains="grant_type=refresh_token").close_after_forward()
        ...  # point the client at proxy.base_url
        lost.wait_forwarded(timeout=10)  # the simulator rotated; the client got no answer

Rules are tried in the order they were added; a rule matches a method (None: any), a
path prefix and a body substring, ``times`` times (None: always). Each rule counts under
a condition variable, so tests wait for "the refresh reached the upstream" instead of
sleeping. Nothing here logs a body, a query string or a header: they carry tokens.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from tests.support.airflow_env import poll_until
from tests.support.fault_proxy_wire import (
    Answer,
    Exchange,
    ProxyServer,
    ThreadTracker,
    Upstream,
    json_answer,
    status_answer,
    strip_json_field,
)

logger = logging.getLogger(__name__)

DEFAULT_HOLD_TIMEOUT = 30.0
DEFAULT_WAIT = 10.0


class FaultProxyError(AssertionError):
    """A wait on the proxy ran out; the message carries the recent request log."""


class LogEntry(NamedTuple):
    method: str
    path: str  # without the query string
    action: str  # "forward", a rule's action, "down", "upstream_error"
    status: int | None  # what the client got; None when it got no answer


@dataclass(frozen=True)
class _Action:
    name: str
    seconds: float = 0.0
    chunk_bytes: int = 0
    answer: Answer | None = None
    field: str = ""


_FORWARD = _Action("forward")


class Rule:
    """One matching rule and what the proxy saw of it.

    The counters only grow, under one condition variable, so ``wait_seen(n=2)`` is exact
    even when requests race. ``release()`` is a latch: every held request, now or later,
    goes on.
    """

    def __init__(
        self,
        proxy: FaultProxy,
        action: _Action,
        method: str | None,
        path: str,
        body_contains: bytes | None,
        times: int | None,
    ) -> None:
        self._proxy = proxy
        self.action = action
        self.method = method.upper() if method else None
        self.path = path
        self.body_contains = body_contains
        self.times = times
        self.count = 0  # matched requests
        self.forwarded_count = 0  # answered by the upstream
        self.done_count = 0  # finished: answered to the client, or its socket closed
        self.seen = threading.Event()
        self.forwarded = threading.Event()
        self.released = threading.Event()
        self.discarded = False
        self.seen_at: list[float] = []  # wall-clock times the matching requests arrived
        self.done_at: list[float] = []  # ... and were finished (answered, or the client went away)
        self._cond = threading.Condition()

    def __repr__(self) -> str:
        return f"Rule({self.action.name}: {self.method or '*'} {self.path or '/'}* times={self.times})"

    def _claim(self, method: str, path: str, body: bytes) -> bool:
        if self.method is not None and method != self.method:
            return False
        if not path.startswith(self.path):
            return False
        if self.body_contains is not None and self.body_contains not in body:
            return False
        with self._cond:
            if self.times is not None and self.count >= self.times:
                return False
            self.count += 1
            self.seen_at.append(time.time())
            self._cond.notify_all()
        self.seen.set()
        return True

    def _bump(self, counter: str) -> None:
        with self._cond:
            setattr(self, counter, getattr(self, counter) + 1)
            if counter == "done_count":
                self.done_at.append(time.time())
            self._cond.notify_all()
        if counter == "forwarded_count":
            self.forwarded.set()

    def _wait(self, counter: str, n: int, timeout: float, what: str) -> None:
        with self._cond:
            if self._cond.wait_for(lambda: getattr(self, counter) >= n, timeout=timeout):
                return
        raise FaultProxyError(f"{self!r}: not {n} {what} within {timeout}s\n{self._proxy.log_text()}")

    def wait_seen(self, timeout: float = DEFAULT_WAIT, n: int = 1) -> None:
        """Until ``n`` matching requests arrived at the proxy."""
        self._wait("count", n, timeout, "requests seen")

    def wait_forwarded(self, timeout: float = DEFAULT_WAIT, n: int = 1) -> None:
        """Until the upstream answered ``n`` matching requests (so it acted on them)."""
        self._wait("forwarded_count", n, timeout, "requests answered by the upstream")

    def wait_done(self, timeout: float = DEFAULT_WAIT, n: int = 1) -> None:
        """Until the proxy finished ``n`` matching requests (answered, or closed the socket)."""
        self._wait("done_count", n, timeout, "requests finished")

    def release(self) -> None:
        """Let held requests (``hold_request``/``hold_response``) go on."""
        self.released.set()

    def discard(self) -> None:
        """End held ``hold_request`` requests without forwarding: they never reach the upstream."""
        self.discarded = True
        self.released.set()

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.count >= self.times


class RuleSpec:
    """Which requests a rule matches; calling an action method adds the rule to the proxy.

    Adding only once the action is known means no request can match a half-built rule.
    """

    def __init__(
        self, proxy: FaultProxy, method: str | None, path: str, body_contains: bytes | None, times: int | None
    ) -> None:
        self._proxy = proxy
        self._match = (method, path, body_contains, times)

    def _add(self, action: _Action) -> Rule:
        rule = Rule(self._proxy, action, *self._match)
        self._proxy._add_rule(rule)
        return rule

    def forward(self) -> Rule:
        """Pass through unchanged: a rule that only counts and signals."""
        return self._add(_FORWARD)

    def delay_request(self, seconds: float) -> Rule:
        return self._add(_Action("delay_request", seconds=seconds))

    def delay_response(self, seconds: float) -> Rule:
        return self._add(_Action("delay_response", seconds=seconds))

    def drip(self, chunk_bytes: int, interval: float) -> Rule:
        """Forward, then write the whole answer (status line too) ``chunk_bytes`` per ``interval``.

        No single read waits long, so a client's read timeout never fires, but the whole
        answer takes long: what a per-read timeout cannot bound.
        """
        if chunk_bytes < 1 or interval < 0:
            raise ValueError("drip needs chunk_bytes >= 1 and interval >= 0")
        return self._add(_Action("drip", seconds=interval, chunk_bytes=chunk_bytes))

    def respond(self, status: int, body: bytes | Any = b"", headers: dict[str, str] | None = None) -> Rule:
        """Answer without forwarding; a body that is not bytes is sent as JSON."""
        answer = status_answer(status, body) if isinstance(body, bytes) else json_answer(status, body)
        answer.headers += list((headers or {}).items())
        return self._add(_Action("respond", answer=answer))

    def close_before_forward(self) -> Rule:
        """Close the client socket without forwarding: the upstream never sees the request."""
        return self._add(_Action("close_before_forward"))

    def close_after_forward(self) -> Rule:
        """Forward (the upstream acts on it), then close the client socket: a lost answer."""
        return self._add(_Action("close_after_forward"))

    def strip_json_field(self, name: str) -> Rule:
        """Forward, then remove the top-level key ``name`` from a JSON object answer."""
        return self._add(_Action("strip_json_field", field=name))

    def hold_request(self, timeout: float = DEFAULT_HOLD_TIMEOUT) -> Rule:
        """Block before forwarding until ``rule.release()``, or forward after ``timeout``."""
        return self._add(_Action("hold_request", seconds=timeout))

    def hold_response(self, timeout: float = DEFAULT_HOLD_TIMEOUT) -> Rule:
        """Forward, then block before answering until ``rule.release()``, or answer after ``timeout``."""
        return self._add(_Action("hold_response", seconds=timeout))


class FaultProxy:
    """A threaded reverse proxy on 127.0.0.1 (a free port) in front of ``upstream``, a base URL.

    ``down()`` answers every request with one status (an api-server being restarted),
    ``refuse()`` closes the port (connection refused) and drops open connections, and
    ``up()`` undoes both, listening on the same port again.
    """

    def __init__(
        self, upstream: str, *, port: int = 0, upstream_timeout: float = 60.0, log_size: int = 1000
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self._upstream = Upstream.parse(self.upstream, upstream_timeout)
        self._log: deque[LogEntry] = deque(maxlen=log_size)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._down_status: int | None = None
        self._stopping = threading.Event()
        self._threads = ThreadTracker()
        self._server: ProxyServer | None = None
        self._serve_thread: threading.Thread | None = None
        self.port = port
        self._listen()

    # ----------------------------------------------------------------- lifecycle

    def _listen(self) -> None:
        server = ProxyServer(self.port, self._dispatch, self._threads)
        self.port = server.server_port
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fault-proxy-{self.port}",
            daemon=True,
        )
        self._serve_thread.start()

    def _close_listener(self, timeout: float) -> None:
        server, thread = self._server, self._serve_thread
        self._server = self._serve_thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        if thread is not None:
            thread.join(timeout)

    def refuse(self) -> None:
        """Stop listening and drop open connections: new connections are refused."""
        self._close_listener(timeout=5.0)

    def down(self, status: int = 502) -> None:
        """Answer every request with ``status`` without forwarding; rules are not consulted."""
        self._down_status = status

    def up(self) -> None:
        """Undo ``down()`` and ``refuse()``: forward again, on the same port."""
        self._down_status = None
        if self._server is None and not self._stopping.is_set():
            self._listen()

    @property
    def listening(self) -> bool:
        return self._server is not None

    def stop(self, timeout: float = 5.0) -> None:
        """Release holds, cut delays short, close every connection, join threads within ``timeout``."""
        self._stopping.set()
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            rule.release()
        self._close_listener(timeout)
        alive = self._threads.join(timeout)
        if alive:
            logger.warning("fault proxy on %s: %d connection threads still alive", self.port, len(alive))

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- rules and log

    def on(
        self,
        method: str | None = None,
        path: str = "",
        *,
        body_contains: str | bytes | None = None,
        times: int | None = 1,
    ) -> RuleSpec:
        """A rule for ``method`` (None: any), a path prefix and a body substring; add it with an action."""
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for unlimited")
        body = body_contains.encode() if isinstance(body_contains, str) else body_contains
        return RuleSpec(self, method, path, body, times)

    def _add_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def remove(self, rule: Rule) -> None:
        """Take ``rule`` out (releasing what it holds); later requests skip it."""
        rule.release()
        with self._lock:
            self._rules.remove(rule)

    def clear_rules(self) -> None:
        with self._lock:
            rules, self._rules = self._rules, []
        for rule in rules:
            rule.release()

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    @property
    def log(self) -> list[LogEntry]:
        with self._lock:
            return list(self._log)

    def log_text(self, last: int = 30) -> str:
        lines = [
            f"  {e.method} {e.path} -> {e.action} {'-' if e.status is None else e.status}"
            for e in self.log[-last:]
        ]
        return "fault proxy log, oldest first:\n" + ("\n".join(lines) or "  <empty>")

    def wait_for_log(self, predicate: Callable[[LogEntry], bool], timeout: float = DEFAULT_WAIT) -> LogEntry:
        """Until some log entry satisfies ``predicate`` (for traffic no rule covers)."""
        return poll_until(
            lambda: next((e for e in self.log if predicate(e)), None),
            timeout=timeout,
            interval=0.02,
            what="a matching fault proxy log entry",
            on_timeout=self.log_text,
        )

    def _record(self, ex: Exchange, action: str, status: int | None) -> None:
        entry = LogEntry(ex.command, ex.path_only, action, status)
        with self._lock:
            self._log.append(entry)
        logger.debug("%s %s -> %s %s", entry.method, entry.path, action, status)

    # ----------------------------------------------------------------- one request

    def _dispatch(self, ex: Exchange) -> None:
        down = self._down_status
        if down is not None:
            self._record(ex, "down", down)
            ex.write(json_answer(down, {"detail": "fault proxy: upstream down"}))
            return
        with self._lock:
            rules = list(self._rules)
        rule = next((r for r in rules if r._claim(ex.command, ex.path_only, ex.body)), None)
        try:
            self._apply(ex, rule, rule.action if rule is not None else _FORWARD)
        finally:
            if rule is not None:
                rule._bump("done_count")

    def _apply(self, ex: Exchange, rule: Rule | None, action: _Action) -> None:
        if action.answer is not None:
            self._record(ex, action.name, action.answer.status)
            ex.write(action.answer)
            return
        if action.name == "close_before_forward":
            self._record(ex, action.name, None)
            ex.drop()
            return
        if action.name == "delay_request":
            self._stopping.wait(action.seconds)
        elif action.name == "hold_request" and rule is not None:
            self._hold(rule, action.seconds)
            if rule.discarded:
                self._record(ex, "discarded", None)
                ex.drop()
                return
        try:
            answer = self._upstream.send(ex.command, ex.path, list(ex.headers.items()), ex.body)
        except OSError as exc:  # refused, reset, timed out: what a gateway answers 502/504 for
            status = 504 if isinstance(exc, TimeoutError) else 502
            self._record(ex, "upstream_error", status)
            ex.write(status_answer(status, f"fault proxy: upstream {type(exc).__name__}".encode()))
            return
        except Exception as exc:  # http.client.HTTPException: the upstream spoke no valid HTTP
            self._record(ex, "upstream_error", 502)
            ex.write(status_answer(502, f"fault proxy: upstream {type(exc).__name__}".encode()))
            return
        if rule is not None:
            rule._bump("forwarded_count")
        if action.name == "close_after_forward":
            self._record(ex, action.name, None)
            ex.drop()
            return
        if action.name == "delay_response":
            self._stopping.wait(action.seconds)
        elif action.name == "hold_response" and rule is not None:
            self._hold(rule, action.seconds)
        elif action.name == "strip_json_field":
            answer = strip_json_field(answer, action.field)
        self._record(ex, action.name, answer.status)
        ex.write(answer, chunk_bytes=action.chunk_bytes, interval=action.seconds, stop=self._stopping)

    def _hold(self, rule: Rule, timeout: float) -> None:
        # stop(), remove() and clear_rules() release too, so a hold never outlives the proxy.
        if not rule.released.wait(timeout):
            logger.warning("%r: hold timed out after %ss, going on", rule, timeout)
