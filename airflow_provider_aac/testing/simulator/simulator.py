"""A local, threaded stand-in for the Alteryx Analytics Cloud API and its token endpoint.

The provider's hardest promise is that a rotating refresh token is spent exactly once.
Only a server that rotates on every refresh and revokes the whole token family on reuse,
as AAC does, can show that promise holding (or breaking) under real concurrency. So this
is a real HTTP server on 127.0.0.1 rather than a mock, shared by the test suite, the demo,
the benchmarks and users testing their DAGs offline. It depends on the standard library
and pyjwt only, so importing it stays fast and never pulls in Airflow.

Run it standalone with ``python -m airflow_provider_aac.testing.simulator --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import os
import re
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import jwt

logger = logging.getLogger(__name__)

TOKEN_PATH = "/as/token"
SCOPE = "openid profile aac:api"
STAT_KEYS = (
    "refreshes",
    "reuses",
    "invalid_grant",
    "invalid_client",
    "token_requests",
    "api_calls",
    "api_authorized",
    "api_unauthorized",
    "families_revoked",
    "runs_started",
    "runs_canceled",
    "rate_limited",
)
OUTCOMES = frozenset({"Complete", "Failed"})
TERMINAL = frozenset({"Complete", "Failed", "Canceled"})
DEFAULT_PAGE_LIMIT = 25
MAX_BODY_BYTES = 1 << 20
CURRENT_PERSON: dict[str, Any] = {
    "id": 1,
    "email": "sim@example.com",
    "name": "Simulated User",
    "isDisabled": False,
    "state": "active",
    "workspace": {"id": 1},
}
EXCEPTION_NAMES = {
    400: "ValidationException",
    401: "UnauthorizedException",
    403: "ForbiddenException",
    404: "NotFoundException",
    405: "MethodNotAllowedException",
    410: "GoneException",
    411: "LengthRequiredException",
    413: "PayloadTooLargeException",
    415: "UnsupportedMediaTypeException",
    429: "RateLimitException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
}


# --------------------------------------------------------------------------- wire types


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased, so lookups need not care about case
    body: bytes


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering (a "lost" response)


def _json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    return _Response(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


class _ApiError(Exception):
    """Raised anywhere under /v4 to answer with AAC's error body."""

    def __init__(
        self, status: int, message: str, *, details: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}

    def response(self) -> _Response:
        name = EXCEPTION_NAMES.get(self.status, "Exception")
        body = {"exception": {"name": name, "message": self.message, "details": self.details}}
        return _json_response(self.status, body, self.headers)


class _OAuthError(Exception):
    """Raised by the token endpoint to answer with an RFC 6749 error body."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


# --------------------------------------------------------------------------- tokens


@dataclass
class _Family:
    """Every token descended from one "Generate" in the AAC UI; revoked as a whole."""

    client_id: str
    access_ttl: float
    refresh_ttl: float
    deadline: float  # epoch seconds; where a "fixed" refresh deadline stays
    rotations: int = 0
    revoked: bool = False


@dataclass
class _RefreshRecord:
    family: _Family
    expires_at: float
    spent: bool = False


@dataclass(frozen=True)
class _AccessRecord:
    family: _Family
    expires_at: float  # exact; the JWT's integer `exp` is rounded down from it


# --------------------------------------------------------------------------- runs


@dataclass
class _Definition:
    """A plan, flow or wrangled dataset, and how its runs end."""

    id: int
    name: str
    outcome: str
    duration: float | None  # None: the simulator's run_duration
    created_at: float = field(default_factory=time.time)

    def listing(self) -> dict[str, Any]:
        stamp = _iso(self.created_at)
        return {"id": self.id, "name": self.name, "createdAt": stamp, "updatedAt": stamp}


@dataclass
class _Progress:
    """A run's status as a pure function of the time since it was created.

    Deriving status from the clock, instead of advancing it in a background thread,
    keeps the simulator free of timers and makes every poll consistent with wall time.
    """

    outcome: str
    duration: float
    failure_message: str
    created_wall: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    canceled_after: float | None = None

    def _timeline(self) -> list[tuple[float, str]]:
        steps = [
            (0.0, "Created"),
            (0.10 * self.duration, "Pending"),
            (0.25 * self.duration, "InProgress"),
            (self.duration, self.outcome),
        ]
        if self.canceled_after is None:
            return steps
        return [step for step in steps if step[0] < self.canceled_after] + [(self.canceled_after, "Canceled")]

    def _reached(self) -> list[tuple[float, str]]:
        elapsed = time.monotonic() - self.created_mono
        return [step for step in self._timeline() if step[0] <= elapsed]

    def status(self) -> str:
        return self._reached()[-1][1]

    def cancel(self) -> bool:
        """Cancel unless already finished; says whether anything changed."""
        if self.status() in TERMINAL:
            return False
        self.canceled_after = time.monotonic() - self.created_mono
        return True

    def fields(self) -> dict[str, Any]:
        reached = self._reached()
        last_offset, status = reached[-1]
        started = next((offset for offset, name in reached if name == "InProgress"), None)
        fields: dict[str, Any] = {
            "status": status,
            "createdAt": _iso(self.created_wall),
            "updatedAt": _iso(self.created_wall + last_offset),
            "startedAt": None if started is None else _iso(self.created_wall + started),
            "finishedAt": _iso(self.created_wall + last_offset) if status in TERMINAL else None,
        }
        if status == "Failed":
            fields["errorMessage"] = self.failure_message
        return fields


@dataclass
class _PlanRun:
    id: int
    plan_id: int
    progress: _Progress

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "planId": self.plan_id, "plan": {"id": self.plan_id}, **self.progress.fields()}


@dataclass
class _JobGroup:
    id: int
    dataset_id: int
    job_id: int
    output_id: int
    progress: _Progress
    flow_run_id: int | None = None
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def job_views(self) -> list[dict[str, Any]]:
        return [{"id": self.job_id, "status": self.progress.status(), "jobType": "wrangle"}]

    def output_views(self) -> list[dict[str, Any]]:
        return [{"id": self.output_id, "execution": "photon", "profiler": False, "outputObjectType": "file"}]

    def view(self, *, embed_jobs: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id,
            "wrangledDataset": {"id": self.dataset_id},
            "sessionId": self.session_id,
            **self.progress.fields(),
        }
        if self.flow_run_id is not None:
            view["flowRun"] = {"id": self.flow_run_id}
        if embed_jobs:
            view["jobs"] = {"data": self.job_views()}
        return view


def _combined_status(statuses: Sequence[str]) -> str:
    """A flow run's status from its job groups': running until all are done, then the worst."""
    if all(status in TERMINAL for status in statuses):
        return next((s for s in ("Failed", "Canceled") if s in statuses), "Complete")
    if any(status == "InProgress" or status in TERMINAL for status in statuses):
        return "InProgress"
    return "Pending" if "Pending" in statuses else "Created"


@dataclass
class _FlowRun:
    id: int
    flow_id: int
    job_groups: list[_JobGroup]
    created_at: float = field(default_factory=time.time)

    def status(self) -> str:
        return _combined_status([group.progress.status() for group in self.job_groups])

    def view(self) -> dict[str, Any]:
        groups = [group.view() for group in self.job_groups]
        view: dict[str, Any] = {
            "id": self.id,
            "status": _combined_status([group["status"] for group in groups]),
            "flow": {"id": self.flow_id},
            "createdAt": _iso(self.created_at),
            "updatedAt": max(group["updatedAt"] for group in groups),
            "jobGroups": {"data": [{"id": group["id"], "status": group["status"]} for group in groups]},
        }
        failed = [group["errorMessage"] for group in groups if group["status"] == "Failed"]
        if failed and view["status"] == "Failed":
            view["errorMessage"] = failed[0]
        return view


# --------------------------------------------------------------------------- faults


@dataclass
class _Shot:
    """One injected fault and how many more matching requests it applies to."""

    remaining: int
    status: int = 0
    delay: float = 0.0
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    path_prefix: str = ""
    method: str | None = None

    def matches(self, request: _Request) -> bool:
        method_ok = self.method is None or self.method.upper() == request.method
        return method_ok and request.path.startswith(self.path_prefix)


def _check_times(times: int) -> None:
    if times < 1:
        raise ValueError("times must be at least 1")


# --------------------------------------------------------------------------- helpers


def _iso(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _number(seconds: float) -> int | float:
    """Whole seconds as a JSON integer, as AAC sends them; fractions survive for tiny test TTLs."""
    return int(seconds) if float(seconds).is_integer() else seconds


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit():
        raise _ApiError(400, f"'{name}' must be a non-negative integer", details={"parameter": name})
    return int(raw)


def _page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    limit = _query_int(query, "limit", DEFAULT_PAGE_LIMIT)
    offset = _query_int(query, "offset", 0)
    return {"data": items[offset : offset + limit], "count": len(items)}


def _json_body(request: _Request, *, required: bool) -> dict[str, Any] | None:
    if not request.body.strip():
        if required:
            raise _ApiError(400, "A JSON request body is required")
        return None
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise _ApiError(415, "Request bodies must be application/json")
    try:
        body = json.loads(request.body)
    except ValueError:
        raise _ApiError(400, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _ApiError(400, "The request body must be a JSON object")
    return body


def _require_type(body: dict[str, Any] | None, key: str, kind: type, label: str) -> None:
    if body is not None and key in body and not isinstance(body[key], kind):
        raise _ApiError(400, f"'{key}' must be {label}", details={"field": key})


def _default_oauth_error(status: int) -> str:
    if status == 500:
        return "server_error"
    if status == 429 or status > 500:
        return "temporarily_unavailable"
    return "invalid_request"


def _seconds_header(seconds: float) -> str:
    return str(_number(seconds))


def _path_id(match: re.Match[str]) -> int:
    return int(match["id"])


_T = TypeVar("_T")


def _find(table: dict[int, _T], ident: int, kind: str) -> _T:
    found = table.get(ident)
    if found is None:
        raise _ApiError(404, f"{kind} {ident} not found", details={"id": ident})
    return found


def _execution_key(request: _Request, kind: str, ident: int) -> tuple[str, int, str] | None:
    """What makes a repeated run request (same x-execution-id, same target) a no-op."""
    execution_id = request.headers.get("x-execution-id", "").strip()
    return (kind, ident, execution_id) if execution_id else None


_Handler = Callable[[_Request, re.Match[str]], _Response]
_Route = tuple[str, re.Pattern[str], _Handler]  # method, path pattern, handler


# --------------------------------------------------------------------------- the simulator


class AACSimulator:
    """An in-process AAC: token endpoint, /v4 API, fault injection and counters.

    All state sits behind one lock, so a refresh's check-and-rotate is atomic: of two
    concurrent refreshes with the same token exactly one wins and the other is a reuse,
    which is the race the provider exists to prevent.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        access_ttl: float = 300.0,
        refresh_ttl: float = 30 * 86400.0,
        refresh_deadline: Literal["fixed", "sliding"] = "fixed",
        run_duration: float = 2.0,
        client_id: str = "aac-sim-client",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` drives token lifetimes and rate-limit windows (a benchmark can compress a month)."""
        if refresh_deadline not in ("fixed", "sliding"):
            raise ValueError("refresh_deadline must be 'fixed' or 'sliding'")
        self._host = host
        self._port = port
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.refresh_deadline = refresh_deadline
        self.run_duration = run_duration
        self.client_id = client_id
        self._clock = clock

        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)
        self._stats = dict.fromkeys(STAT_KEYS, 0)
        self._client_ids = {client_id}
        self._refresh_tokens: dict[str, _RefreshRecord] = {}
        self._access_tokens: dict[str, _AccessRecord] = {}  # by jti

        self._plans: dict[int, _Definition] = {}
        self._flows: dict[int, _Definition] = {}
        self._datasets: dict[int, _Definition] = {}
        self._plan_runs: dict[int, _PlanRun] = {}
        self._job_groups: dict[int, _JobGroup] = {}
        self._flow_runs: dict[int, _FlowRun] = {}
        self._executions: dict[tuple[str, int, str], int] = {}
        self._plan_run_ids = itertools.count(5001)
        self._job_group_ids = itertools.count(7001)
        self._flow_run_ids = itertools.count(9001)
        self._job_ids = itertools.count(30001)
        self._output_ids = itertools.count(60001)

        self._token_failures: list[_Shot] = []
        self._token_delays: list[_Shot] = []
        self._token_losses: list[_Shot] = []
        self._api_failures: list[_Shot] = []

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        from airflow_provider_aac.testing.simulator.runs_and_lineage import RunsAndLineage

        self.runs = RunsAndLineage(self, clock=clock)  # rate limits, the run start log, lineage endpoints
        self._api_routes = self._build_api_routes()
        self._admin_routes = self._build_admin_routes()
        self._seed()

    def _seed(self) -> None:
        self.add_plan(1, name="Daily sales")
        self.add_plan(2, outcome="Failed", name="Broken plan")
        self.add_flow(10, name="Sales flow")
        self.add_flow(11, outcome="Failed", name="Broken flow")
        self.add_wrangled_dataset(100)
        self.add_wrangled_dataset(101, outcome="Failed")

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> AACSimulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="aac-simulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        server.close_open_connections()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> AACSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the simulator is not running; call start() first")
        host, port = self._server.server_name, self._server.server_port
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{shown}:{port}"

    @property
    def issuer(self) -> str:
        return self.base_url + "/as"

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    # ----------------------------------------------------------------- tokens (public)

    def mint_pair(
        self,
        *,
        client_id: str | None = None,
        refresh_ttl: float | None = None,
        access_ttl: float | None = None,
    ) -> dict[str, Any]:
        """Start a new token family, like "Generate" in the AAC UI."""
        access_ttl = self.access_ttl if access_ttl is None else access_ttl
        refresh_ttl = self.refresh_ttl if refresh_ttl is None else refresh_ttl
        if access_ttl < 0 or refresh_ttl < 0:
            raise ValueError("token lifetimes must not be negative")
        now = self._clock()
        family = _Family(client_id or self.client_id, access_ttl, refresh_ttl, deadline=now + refresh_ttl)
        with self._lock:
            self._client_ids.add(family.client_id)
            return self._issue(family, now, family.deadline)

    def revoke_family_of(self, refresh_token: str) -> None:
        """Revoke the family, as a user does in the UI; a KeyError for an unknown token."""
        with self._lock:
            record = self._refresh_tokens.get(refresh_token)
            if record is None:
                raise KeyError("unknown refresh token")
            self._revoke(record.family)

    def family_info(self, token: str) -> dict[str, Any]:
        """The family of a refresh or access token, so tests can check a chain's length."""
        jti = self._verified_jti(token)
        with self._lock:
            record: _RefreshRecord | _AccessRecord | None = self._refresh_tokens.get(token)
            if record is None and jti is not None:
                record = self._access_tokens.get(jti)
            if record is None:
                raise KeyError("unknown token")
            family = record.family
            return {"client_id": family.client_id, "rotations": family.rotations, "revoked": family.revoked}

    def refresh_token_status(self, refresh_token: str) -> str:
        """'live', 'spent', 'revoked', 'expired' or 'unknown': what presenting it now would meet."""
        with self._lock:
            record = self._refresh_tokens.get(refresh_token)
            if record is None:
                return "unknown"
            if record.family.revoked:
                return "revoked"
            if record.spent:
                return "spent"
            return "expired" if self._clock() >= record.expires_at else "live"

    def stats(self) -> dict[str, int]:
        """A consistent snapshot of every counter (a copy: later traffic does not change it)."""
        with self._lock:
            return dict(self._stats)

    def reset_stats(self) -> None:
        """Zero the counters only; tokens, runs and pending faults stay as they are."""
        with self._lock:
            self._stats = dict.fromkeys(STAT_KEYS, 0)

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._stats[key] += 1

    # ----------------------------------------------------------------- faults (public)

    def fail_token_endpoint(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` token requests with `status`; the token presented stays unspent."""
        _check_times(times)
        with self._lock:
            self._token_failures.append(_Shot(times, status=status, retry_after=retry_after, body=body))

    def fail_api(
        self,
        status: int,
        *,
        times: int = 1,
        path_prefix: str = "/v4/",
        method: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Fail the next `times` authorized /v4 requests matching `path_prefix` (and `method`).

        Authorization is checked first, so a 401 never uses up a shot meant for a valid caller.
        A 429 carries AAC's rate-limit headers; `x-retry-after` only when `retry_after` is given.
        """
        _check_times(times)
        shot = _Shot(times, status=status, retry_after=retry_after, path_prefix=path_prefix, method=method)
        with self._lock:
            self._api_failures.append(shot)

    def slow_token_endpoint(self, delay: float, *, times: int = 1) -> None:
        """Hold the next `times` token requests `delay` seconds, outside the lock: races stay races."""
        _check_times(times)
        with self._lock:
            self._token_delays.append(_Shot(times, delay=delay))

    def lose_token_response(self, *, times: int = 1) -> None:
        """Let the next `times` token requests take effect but close the socket instead of answering.

        This is the lost-response case: the server has rotated, the client never saw the new
        pair, and presenting the old token again is a reuse.
        """
        _check_times(times)
        with self._lock:
            self._token_losses.append(_Shot(times))

    # ----------------------------------------------------------------- runnable things (public)

    def add_plan(
        self,
        plan_id: int,
        *,
        outcome: str = "Complete",
        duration: float | None = None,
        name: str | None = None,
    ) -> None:
        """Make a plan runnable; its runs end in `outcome` after `duration` (None: run_duration)."""
        self._define(self._plans, plan_id, outcome, duration, name or f"Plan {plan_id}")

    def add_flow(
        self,
        flow_id: int,
        *,
        outcome: str = "Complete",
        duration: float | None = None,
        name: str | None = None,
    ) -> None:
        self._define(self._flows, flow_id, outcome, duration, name or f"Flow {flow_id}")

    def add_wrangled_dataset(
        self, dataset_id: int, *, outcome: str = "Complete", duration: float | None = None
    ) -> None:
        self._define(self._datasets, dataset_id, outcome, duration, f"Recipe {dataset_id}")

    def _define(
        self, table: dict[int, _Definition], ident: int, outcome: str, duration: float | None, name: str
    ) -> None:
        """Replaces any earlier definition, so a test can change the outcome of a seeded id."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        with self._lock:
            table[ident] = _Definition(ident, name, outcome, duration)

    # ----------------------------------------------------------------- token internals (lock held)

    def _issue(self, family: _Family, now: float, refresh_deadline: float) -> dict[str, Any]:
        refresh_token = secrets.token_urlsafe(48)
        self._refresh_tokens[refresh_token] = _RefreshRecord(family, refresh_deadline)
        return {
            "access_token": self._mint_access_token(family, now),
            "refresh_token": refresh_token,
            "expires_in": _number(family.access_ttl),
        }

    def _mint_access_token(self, family: _Family, now: float) -> str:
        jti = uuid.uuid4().hex
        expires_at = now + family.access_ttl
        self._access_tokens[jti] = _AccessRecord(family, expires_at)
        claims = {
            "iss": self.issuer,
            "client_id": family.client_id,
            "sub": CURRENT_PERSON["email"],
            "iat": int(now),
            "exp": int(expires_at),
            "jti": jti,
            "scope": SCOPE,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def _revoke(self, family: _Family) -> None:
        if not family.revoked:
            family.revoked = True
            self._stats["families_revoked"] += 1

    def _verified_jti(self, token: str) -> str | None:
        """The id of an access token this instance signed, expired or not; no lock needed."""
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=self.issuer,
                options={"verify_exp": False, "require": ["iss", "exp", "jti"]},
            )
        except jwt.InvalidTokenError:
            return None
        jti: str = claims["jti"]
        return jti

    def _rotate(self, presented: str, client_id: str) -> dict[str, Any]:
        """Spend `presented` and issue its successor, or say why not; the core of AAC's rules."""
        now = self._clock()
        record = self._refresh_tokens.get(presented)
        if client_id not in self._client_ids or (record is not None and record.family.client_id != client_id):
            raise _OAuthError(401, "invalid_client", "Client authentication failed: unknown client_id")
        if record is None:
            raise _OAuthError(400, "invalid_grant", "The refresh token is invalid")
        family = record.family
        if family.revoked:
            raise _OAuthError(400, "invalid_grant", "The refresh token has been revoked")
        if record.spent:
            self._stats["reuses"] += 1
            self._revoke(family)
            raise _OAuthError(
                400, "invalid_grant", "Refresh token reuse detected; the token family is revoked"
            )
        if now >= record.expires_at:
            raise _OAuthError(400, "invalid_grant", "The refresh token has expired")
        record.spent = True
        family.rotations += 1
        self._stats["refreshes"] += 1
        deadline = family.deadline if self.refresh_deadline == "fixed" else now + family.refresh_ttl
        return {**self._issue(family, now, deadline), "token_type": "Bearer", "scope": SCOPE}

    def _unauthorized_reason(self, headers: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "A bearer access token is required"
        jti = self._verified_jti(token)
        with self._lock:
            record = None if jti is None else self._access_tokens.get(jti)
            if record is None:
                return "The access token is invalid"
            if record.family.revoked:
                return "The access token has been revoked"
            if self._clock() >= record.expires_at:
                return "The access token has expired"
        return None

    def _take_shot(self, shots: list[_Shot], request: _Request) -> _Shot | None:
        with self._lock:
            shot = next((candidate for candidate in shots if candidate.matches(request)), None)
            if shot is not None:
                shot.remaining -= 1
                if shot.remaining == 0:
                    shots.remove(shot)
            return shot

    # ----------------------------------------------------------------- request handling

    def _handle(self, request: _Request) -> _Response:
        """Answer one HTTP request; called by the server's handler threads."""
        try:
            response = self._dispatch(request)
        except _ApiError as error:
            response = error.response()
        except Exception:
            logger.exception("the AAC simulator failed on %s %s", request.method, request.path)
            response = _ApiError(500, "The simulator failed; see its log").response()
        response.headers["x-trifacta-request-id"] = str(uuid.uuid4())
        return response

    def _dispatch(self, request: _Request) -> _Response:
        if request.path == TOKEN_PATH:
            return self._token_endpoint(request)
        if request.path.startswith("/_sim/"):
            return self._route(request, self._admin_routes)
        if request.path.startswith("/v4/"):
            return self._api(request)
        raise _ApiError(404, f"No such path: {request.path}")

    def _route(self, request: _Request, routes: list[_Route]) -> _Response:
        path_known = False
        for method, pattern, handler in routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method == request.method:
                return handler(request, match)
            path_known = True
        if path_known:
            raise _ApiError(405, f"{request.method} is not allowed on {request.path}")
        raise _ApiError(404, f"No such path: {request.path}")

    # ----------------------------------------------------------------- token endpoint

    def _token_endpoint(self, request: _Request) -> _Response:
        if request.method != "POST":
            return self._oauth_error_response(_OAuthError(405, "invalid_request", "Use POST"))
        self._count("token_requests")
        delay = self._take_shot(self._token_delays, request)
        if delay is not None:
            time.sleep(delay.delay)
        failure = self._take_shot(self._token_failures, request)
        if failure is not None:
            return self._token_failure_response(failure)
        try:
            response = _json_response(200, self._refresh(request), {"Cache-Control": "no-store"})
        except _OAuthError as error:
            response = self._oauth_error_response(error)
        if self._take_shot(self._token_losses, request) is not None:
            return _Response(0, drop_connection=True)
        return response

    def _refresh(self, request: _Request) -> dict[str, Any]:
        form = self._token_form(request)
        if "grant_type" not in form:
            raise _OAuthError(400, "invalid_request", "grant_type is required")
        if form["grant_type"] != "refresh_token":
            raise _OAuthError(400, "unsupported_grant_type", "Only grant_type=refresh_token is supported")
        if not form.get("refresh_token"):
            raise _OAuthError(400, "invalid_request", "refresh_token is required")
        if not form.get("client_id"):
            raise _OAuthError(401, "invalid_client", "client_id is required")
        with self._lock:
            return self._rotate(form["refresh_token"], form["client_id"])

    @staticmethod
    def _token_form(request: _Request) -> dict[str, str]:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            raise _OAuthError(400, "invalid_request", "Send application/x-www-form-urlencoded")
        try:
            fields = parse_qs(
                request.body.decode(), keep_blank_values=True, strict_parsing=bool(request.body)
            )
        except (UnicodeDecodeError, ValueError):
            raise _OAuthError(400, "invalid_request", "The form body is malformed") from None
        if any(len(values) > 1 for values in fields.values()):
            raise _OAuthError(400, "invalid_request", "A parameter was sent more than once")
        return {name: values[0] for name, values in fields.items()}

    def _oauth_error_response(self, error: _OAuthError) -> _Response:
        body = {"error": error.error, "error_description": error.description}
        return self._token_error_response(error.status, body, {})

    def _token_failure_response(self, shot: _Shot) -> _Response:
        error = _default_oauth_error(shot.status)
        body = shot.body
        if body is None:
            body = {"error": error, "error_description": "Simulated token endpoint failure"}
        headers: dict[str, str] = {}
        if shot.retry_after is not None:
            headers = {
                "Retry-After": str(math.ceil(shot.retry_after)),
                "x-retry-after": _seconds_header(shot.retry_after),
            }
        return self._token_error_response(shot.status, body, headers)

    def _token_error_response(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> _Response:
        keys = [key for key in ("invalid_grant", "invalid_client") if body.get("error") == key]
        self._count(*keys, *(["rate_limited"] if status == 429 else []))
        return _json_response(status, body, {"Cache-Control": "no-store", **headers})

    # ----------------------------------------------------------------- /v4

    def _api(self, request: _Request) -> _Response:
        self._count("api_calls")
        reason = self._unauthorized_reason(request.headers)
        if reason is not None:
            self._count("api_unauthorized")
            raise _ApiError(401, reason)
        self._count("api_authorized")
        failure = self._take_shot(self._api_failures, request)
        if failure is not None:
            raise self._api_failure(failure)
        limit_headers = self.runs.before_route(request)
        response = self._route(request, self._api_routes)
        response.headers.update(limit_headers)
        return response

    def _api_failure(self, shot: _Shot) -> _ApiError:
        headers: dict[str, str] = {}
        if shot.status == 429:
            self._count("rate_limited")
            window = shot.retry_after if shot.retry_after is not None else 60.0
            headers = {
                "x-rate-limit-user-limit": "30",
                "x-rate-limit-user-remaining": "0",
                "x-rate-limit-user-reset": str(math.ceil(time.time() + window)),
            }
            if shot.retry_after is not None:
                headers["x-retry-after"] = _seconds_header(shot.retry_after)
        elif shot.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(shot.retry_after))
        return _ApiError(shot.status, f"Simulated failure (HTTP {shot.status})", headers=headers)

    def _build_api_routes(self) -> list[_Route]:
        table: list[tuple[str, str, _Handler]] = [
            ("GET", r"/v4/people/current", self._current_person),
            ("GET", r"/v4/plans", self._list_plans),
            ("POST", r"/v4/plans/(?P<id>\d+)/run", self._run_plan),
            ("GET", r"/v4/planSnapshotRuns/(?P<id>\d+)", self._get_plan_run),
            ("POST", r"/v4/planSnapshotRuns/(?P<id>\d+)/cancel", self._cancel_plan_run),
            ("POST", r"/v4/jobGroups", self._create_job_group),
            ("GET", r"/v4/jobGroups/(?P<id>\d+)", self._get_job_group),
            ("GET", r"/v4/jobGroups/(?P<id>\d+)/status", self._job_group_status),
            ("POST", r"/v4/jobGroups/(?P<id>\d+)/cancel", self._cancel_job_group),
            ("GET", r"/v4/flows", self._list_flows),
            ("POST", r"/v4/flows/(?P<id>\d+)/run", self._run_flow),
            ("GET", r"/v4/flowRuns/(?P<id>\d+)", self._get_flow_run),
            ("GET", r"/v4/flowRuns/(?P<id>\d+)/status", self._flow_run_status),
        ]
        return [
            (method, re.compile(pattern), handler) for method, pattern, handler in table
        ] + self.runs.routes()

    def _current_person(self, request: _Request, match: re.Match[str]) -> _Response:
        return _json_response(200, CURRENT_PERSON)

    def _list_plans(self, request: _Request, match: re.Match[str]) -> _Response:
        return self._listing(self._plans, request)

    def _list_flows(self, request: _Request, match: re.Match[str]) -> _Response:
        return self._listing(self._flows, request)

    def _listing(self, table: dict[int, _Definition], request: _Request) -> _Response:
        with self._lock:
            items = [definition.listing() for _, definition in sorted(table.items())]
        return _json_response(200, _page(items, request.query))

    def _progress_for(self, definition: _Definition, what: str) -> _Progress:
        duration = self.run_duration if definition.duration is None else definition.duration
        message = f"{what} failed (simulated): a step reported an error"
        return _Progress(definition.outcome, duration, message)

    def _run_plan(self, request: _Request, match: re.Match[str]) -> _Response:
        body = _json_body(request, required=False)
        _require_type(body, "planNodeOverrides", list, "a list")
        plan_id = _path_id(match)
        key = _execution_key(request, "plan", plan_id)
        with self._lock:
            plan = _find(self._plans, plan_id, "Plan")
            if key is not None and key in self._executions:
                return _Response(304)
            run = _PlanRun(next(self._plan_run_ids), plan_id, self._progress_for(plan, f"Plan '{plan.name}'"))
            self._plan_runs[run.id] = run
            self.runs.plan_run_started(run)
            if key is not None:
                self._executions[key] = run.id
            self._stats["runs_started"] += 1
        self.runs.record_start("plan", plan_id, run.id, request)
        return _json_response(201, {"validationStatus": "Valid", "planSnapshotRunId": run.id})

    def _get_plan_run(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            run = _find(self._plan_runs, _path_id(match), "Plan run")
            return _json_response(200, {**run.view(), **self.runs.plan_run_embeds(run, request)})

    def _cancel_plan_run(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            run = _find(self._plan_runs, _path_id(match), "Plan run")
            if run.progress.cancel():
                self._stats["runs_canceled"] += 1
            return _json_response(200, run.view())

    def _new_job_group(self, dataset_id: int, progress: _Progress, flow_run_id: int | None) -> _JobGroup:
        group = _JobGroup(
            next(self._job_group_ids),
            dataset_id,
            next(self._job_ids),
            next(self._output_ids),
            progress,
            flow_run_id,
        )
        self._job_groups[group.id] = group
        return group

    def _create_job_group(self, request: _Request, match: re.Match[str]) -> _Response:
        body = _json_body(request, required=True) or {}
        dataset = body.get("wrangledDataset")
        if not isinstance(dataset, dict) or not _is_int(dataset.get("id")):
            raise _ApiError(
                400, "'wrangledDataset.id' must be an integer", details={"field": "wrangledDataset"}
            )
        _require_type(body, "overrides", dict, "an object")
        _require_type(body, "runParameters", dict, "an object")
        key = _execution_key(request, "job_group", dataset["id"])
        with self._lock:
            recipe = _find(self._datasets, dataset["id"], "Wrangled dataset")
            if key is not None and key in self._executions:
                return _Response(304)
            progress = self._progress_for(recipe, f"Job for wrangled dataset {recipe.id}")
            group = self._new_job_group(recipe.id, progress, None)
            if key is not None:
                self._executions[key] = group.id
            self._stats["runs_started"] += 1
            jobs = group.job_views()
        self.runs.record_start("job_group", recipe.id, group.id, request)
        payload = {
            "id": group.id,
            "reason": "JobStarted",
            "sessionId": group.session_id,
            "jobs": {"data": jobs},
        }
        return _json_response(201, payload)

    def _get_job_group(self, request: _Request, match: re.Match[str]) -> _Response:
        embed = {part.strip() for value in request.query.get("embed", []) for part in value.split(",")}
        with self._lock:
            group = _find(self._job_groups, _path_id(match), "Job group")
            return _json_response(200, group.view(embed_jobs="jobs" in embed))

    def _job_group_status(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            group = _find(self._job_groups, _path_id(match), "Job group")
            return _json_response(200, group.progress.status())

    def _cancel_job_group(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            group = _find(self._job_groups, _path_id(match), "Job group")
            if group.progress.cancel():
                self._stats["runs_canceled"] += 1
            return _json_response(200, group.view())

    def _run_flow(self, request: _Request, match: re.Match[str]) -> _Response:
        body = _json_body(request, required=False)
        _require_type(body, "runParameters", dict, "an object")
        flow_id = _path_id(match)
        key = _execution_key(request, "flow", flow_id)
        with self._lock:
            flow = _find(self._flows, flow_id, "Flow")
            if key is not None and key in self._executions:
                return _Response(304)
            run = _FlowRun(next(self._flow_run_ids), flow_id, [])
            # A flow's single output recipe gets a synthetic id, so job groups look like AAC's.
            progress = self._progress_for(flow, f"Flow '{flow.name}'")
            run.job_groups.append(self._new_job_group(flow_id * 1000 + 1, progress, run.id))
            self._flow_runs[run.id] = run
            if key is not None:
                self._executions[key] = run.id
            self._stats["runs_started"] += 1
        self.runs.record_start("flow", flow_id, run.id, request)
        data = [
            {"id": group.id, "reason": "JobStarted", "sessionId": group.session_id}
            for group in run.job_groups
        ]
        return _json_response(201, {"flowRunId": run.id, "data": data})

    def _get_flow_run(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            run = _find(self._flow_runs, _path_id(match), "Flow run")
            return _json_response(200, run.view())

    def _flow_run_status(self, request: _Request, match: re.Match[str]) -> _Response:
        with self._lock:
            run = _find(self._flow_runs, _path_id(match), "Flow run")
            return _json_response(200, run.status())

    # ----------------------------------------------------------------- admin (/_sim)

    def _build_admin_routes(self) -> list[_Route]:
        return [
            ("GET", re.compile(r"/_sim/stats"), lambda request, match: _json_response(200, self.stats())),
            ("POST", re.compile(r"/_sim/reset"), self._admin_reset),
            ("POST", re.compile(r"/_sim/mint"), self._admin_mint),
        ]

    def _admin_reset(self, request: _Request, match: re.Match[str]) -> _Response:
        self.reset_stats()
        return _json_response(200, self.stats())

    def _admin_mint(self, request: _Request, match: re.Match[str]) -> _Response:
        body = _json_body(request, required=False) or {}
        _require_type(body, "client_id", str, "a string")
        for key in ("refresh_ttl", "access_ttl"):
            if key in body and (not isinstance(body[key], (int, float)) or isinstance(body[key], bool)):
                raise _ApiError(400, f"'{key}' must be a number of seconds", details={"field": key})
        try:
            pair = self.mint_pair(
                client_id=body.get("client_id"),
                refresh_ttl=body.get("refresh_ttl"),
                access_ttl=body.get("access_ttl"),
            )
        except ValueError as error:
            raise _ApiError(400, str(error)) from None
        return _json_response(200, pair)


# --------------------------------------------------------------------------- HTTP plumbing


class _RequestHandler(BaseHTTPRequestHandler):
    """Turns HTTP into `_Request`s for the simulator and writes its `_Response`s back."""

    server: _Server
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
        request = _Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        response = self.server.simulator._handle(request)
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
        response = _ApiError(status, message).response()
        response.headers["x-trifacta-request-id"] = str(uuid.uuid4())
        self._write(response)

    def _write(self, response: _Response) -> None:
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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the benchmarks connect 64 callers at once

    def __init__(self, address: tuple[str, int], simulator: AACSimulator) -> None:
        self.simulator = simulator
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall for seconds offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._open_lock:
                self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """End keep-alive connections too, so stop() leaves no thread waiting on a client."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("the AAC simulator failed while serving %s", client_address)


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aac.testing.simulator",
        description="Serve a local Alteryx Analytics Cloud simulator until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--access-ttl", type=float, default=300.0, help="access-token lifetime, seconds")
    parser.add_argument(
        "--refresh-ttl", type=float, default=30 * 86400.0, help="refresh-token lifetime, seconds"
    )
    parser.add_argument("--refresh-deadline", choices=("fixed", "sliding"), default="fixed")
    parser.add_argument("--run-duration", type=float, default=2.0, help="seconds a run takes to finish")
    parser.add_argument("--client-id", default="aac-sim-client")
    parser.add_argument("--pair-file", help="write a freshly minted token pair here as JSON (mode 0600)")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    parser.add_argument("--verbose", action="store_true", help="log each request (method, path, status)")
    return parser.parse_args(argv)


def _write_file_atomically(path: str, text: str, mode: int) -> None:
    """Readers polling for the file never see it half-written or, for secrets, world-readable."""
    temporary = f"{path}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(text)
    os.replace(temporary, path)


def _enable_request_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    return stop


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.verbose:
        _enable_request_logging()
    stop = _stop_on_signals()
    simulator = AACSimulator(
        host=args.host,
        port=args.port,
        access_ttl=args.access_ttl,
        refresh_ttl=args.refresh_ttl,
        refresh_deadline=args.refresh_deadline,
        run_duration=args.run_duration,
        client_id=args.client_id,
    )
    with simulator:
        if args.pair_file:
            pair = {
                **simulator.mint_pair(),
                "client_id": simulator.client_id,
                "base_url": simulator.base_url,
                "token_url": simulator.token_url,
            }
            _write_file_atomically(args.pair_file, json.dumps(pair, indent=2), 0o600)
        print(f"AAC simulator listening on {simulator.base_url}", flush=True)
        if args.ready_file:
            _write_file_atomically(args.ready_file, simulator.base_url, 0o644)
        stop.wait()
    return 0
