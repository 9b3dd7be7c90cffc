"""The simulator's run bookkeeping, AAC's per-minute rate limits and the datasets runs touch.

The simulator owns one :class:`RunsAndLineage` as ``simulator.runs``; its ``/v4`` API
(``api.py``) calls it at a few points: before routing a request (rate limits, injected
delays), when a run starts (the start log tests count runs by), and to serve the lineage
endpoints, which read the simulator's run book.

Shapes follow AAC's OpenAPI spec v2025.23.2 (``JobGroupInputs``, a list of datasets by
``name`` with their ``inputs``; ``JobFilesAndTablesOutputListResponse``, ``files`` and
``tables``): a job group's inputs are the JDBC tables it read (AAC answers 400
``DataServiceInvalidRequest`` "Only Jdbc sources have connect String" when an input is a
file, as observed live), its outputs the files and tables it wrote. Which field names a plan run uses for its flow runs is not
documented; the simulator embeds them as ``flowRuns`` on request (``?embed=flowRuns``).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from airflow_provider_aac.testing.simulator.counters import Counters
from airflow_provider_aac.testing.simulator.faults import Shot, Shots
from airflow_provider_aac.testing.simulator.run_book import RunBook
from airflow_provider_aac.testing.simulator.tokens import CURRENT_PERSON
from airflow_provider_aac.testing.simulator.wire import (
    ApiError,
    Request,
    Response,
    Route,
    compile_routes,
    find,
    json_response,
    number,
    page,
    path_id,
)

DEFAULT_WINDOW = 60.0
WAREHOUSE = "//warehouse.sim.example:5432/analytics"
RESULTS_BUCKET = "s3://aac-sim-results"
FILE_INPUT_REFUSAL = "Illegal Argument: Only Jdbc sources have connect String"


@dataclass(frozen=True)
class RateLimit:
    """Calls allowed per window, per user and per workspace."""

    user: int
    workspace: int


# AAC's API reference: runJobGroup and runPlan 30 per user and 60 per workspace a minute,
# runFlow 20 and 40.
AAC_RATE_LIMITS: Mapping[str, RateLimit] = {
    "runPlan": RateLimit(30, 60),
    "runJobGroup": RateLimit(30, 60),
    "runFlow": RateLimit(20, 40),
}
_RUN_ENDPOINTS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v4/plans/\d+/run"), "runPlan"),
    ("POST", re.compile(r"/v4/jobGroups"), "runJobGroup"),
    ("POST", re.compile(r"/v4/flows/\d+/run"), "runFlow"),
)


@dataclass
class _Window:
    started: float
    used: int = 0


@dataclass(frozen=True)
class RunStart:
    """One run AAC started: what a test counts to prove that a retry did not start another."""

    kind: str  # "plan", "flow" or "job_group", as the provider's RunKind
    target: int  # plan id, flow id or wrangled dataset id
    run_id: int
    execution_id: str | None
    at: float
    body: Any = None  # the decoded JSON request body, so a test can see what reached AAC
    query: Mapping[str, list[str]] = field(default_factory=dict)


@dataclass
class _Datasets:
    inputs: list[dict[str, Any]]
    files: list[dict[str, Any]]
    tables: list[dict[str, Any]]


def jdbc_table(
    schema: str, table: str, *, connect: str = WAREHOUSE, vendor: str = "postgres", action: str = "create"
) -> dict[str, Any]:
    """A table as AAC describes a JDBC source or target (``IoTableResponse``; ``action`` is required)."""
    return {
        "vendor": vendor,
        "databaseConnectString": connect,
        "relationalPath": [schema],
        "table": table,
        "action": action,
    }


def result_file(path: str, *, file_type: str = "FILE", primary: bool = True) -> dict[str, Any]:
    """A file as AAC describes an output (``OutputIoFileResponse``; ``fileType`` is FILE or DIRECTORY)."""
    return {"uri": f"{RESULTS_BUCKET}/{path}", "fileType": file_type, "isPrimaryOutput": primary}


def _default_datasets(dataset_id: int) -> _Datasets:
    return _Datasets(
        inputs=[
            {
                **jdbc_table("public", f"source_{dataset_id}", action="read"),
                "query": [f"SELECT * FROM public.source_{dataset_id}"],
            }
        ],
        files=[result_file(f"recipe-{dataset_id}/output.csv")],
        tables=[],
    )


def _ms_up(seconds: float) -> float:
    """Rounded up to the millisecond: a client that waits exactly this long never comes back early."""
    return math.ceil(seconds * 1000) / 1000


def _user_of(request: Request) -> str:
    """The token's subject; ``_api`` has verified the token before anything here runs."""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("sub") or "?")
    except jwt.InvalidTokenError:
        return "?"


class RunsAndLineage:
    """Rate limits, the run start log, injected delays and the lineage endpoints.

    Called with the simulator's lock held only where a method says so; everything else
    takes this object's own lock, so a rate-limit check never waits on token traffic.
    """

    def __init__(self, book: RunBook, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        """``book`` is the run book the lineage endpoints read; ``counters`` count refused runs."""
        self._book = book
        self._counters = counters
        self._clock = clock
        self._lock = threading.Lock()
        self._limits: dict[str, RateLimit] = dict(AAC_RATE_LIMITS)
        self._window = DEFAULT_WINDOW
        self._retry_after = True
        self._windows: dict[tuple[str, str, str], _Window] = {}
        self._starts: list[RunStart] = []
        self._datasets: dict[int, _Datasets] = {}
        self._delays = Shots(self._lock)

    # ----------------------------------------------------------------- public

    def set_rate_limits(
        self,
        *,
        window: float | None = None,
        enabled: bool = True,
        retry_after: bool = True,
        **limits: tuple[int, int],
    ) -> None:
        """Change the window (seconds) or per-endpoint limits, e.g. ``runPlan=(30, 60)``.

        ``enabled=False`` lifts every limit; ``retry_after=False`` leaves ``x-retry-after``
        off a 429, so only the ``-remaining`` and ``-reset`` headers say when to come back.
        Counting starts afresh either way.
        """
        unknown = set(limits) - set(AAC_RATE_LIMITS)
        if unknown:
            raise ValueError(f"unknown run endpoints {sorted(unknown)}; use {sorted(AAC_RATE_LIMITS)}")
        if window is not None and not window > 0:
            raise ValueError("window must be a positive number of seconds")
        with self._lock:
            self._retry_after = retry_after
            if window is not None:
                self._window = float(window)
            if not enabled:
                self._limits = {}
            else:
                self._limits = dict(self._limits or AAC_RATE_LIMITS)
                for name, (user, workspace) in limits.items():
                    self._limits[name] = RateLimit(user, workspace)
            self._windows.clear()

    def set_datasets(
        self,
        dataset_id: int,
        *,
        inputs: list[dict[str, Any]] | None = None,
        files: list[dict[str, Any]] | None = None,
        tables: list[dict[str, Any]] | None = None,
    ) -> None:
        """What the job groups of a recipe read and write (see :func:`jdbc_table`, :func:`result_file`).

        An input given as ``{"uri": ...}`` is a file source: AAC then refuses the inputs call.
        """
        default = _default_datasets(dataset_id)
        with self._lock:
            self._datasets[dataset_id] = _Datasets(
                inputs=default.inputs if inputs is None else list(inputs),
                files=default.files if files is None else list(files),
                tables=default.tables if tables is None else list(tables),
            )

    def slow(
        self, delay: float, *, path_prefix: str = "/v4/", method: str | None = None, times: int = 1
    ) -> None:
        """Hold the next ``times`` matching authorized ``/v4`` requests ``delay`` seconds before answering.

        A task stuck in such a request is a task caught mid-wait, which is where a crash
        test kills it.
        """
        self._delays.add(Shot(times, delay=delay, path_prefix=path_prefix, method=method))

    def pending_delays(self) -> int:
        """How many requests the delays of :meth:`slow` will still hold."""
        return self._delays.pending()

    def starts(self, kind: str | None = None, target: int | None = None) -> list[RunStart]:
        """Every run started so far (optionally of one kind and target), oldest first."""
        with self._lock:
            return [
                start
                for start in self._starts
                if (kind is None or start.kind == kind) and (target is None or start.target == target)
            ]

    # ----------------------------------------------------------------- hooks from the simulator

    def before_route(self, request: Request) -> dict[str, str]:
        """Apply injected delays and the rate limit; the headers go on the answer."""
        shot = self._delays.take(request)
        if shot is not None:
            time.sleep(shot.delay)
        endpoint = next(
            (
                name
                for method, pattern, name in _RUN_ENDPOINTS
                if method == request.method and pattern.fullmatch(request.path)
            ),
            None,
        )
        if endpoint is None:
            return {}
        return self._admit(endpoint, _user_of(request))

    def record_start(self, kind: str, target: int, run_id: int, request: Request) -> None:
        execution_id = request.headers.get("x-execution-id", "").strip() or None
        with self._lock:
            body = json.loads(request.body) if request.body.strip() else None
            self._starts.append(
                RunStart(kind, target, run_id, execution_id, self._clock(), body, dict(request.query))
            )

    def routes(self) -> list[Route]:
        return compile_routes(
            [
                ("GET", r"/v4/jobGroups/(?P<id>\d+)/inputs", self._job_group_inputs),
                ("GET", r"/v4/jobGroups/(?P<id>\d+)/outputs", self._job_group_outputs),
                ("GET", r"/v4/flowRuns/(?P<id>\d+)/jobGroups", self._flow_run_job_groups),
            ]
        )

    # ----------------------------------------------------------------- rate limits

    def _admit(self, endpoint: str, user: str) -> dict[str, str]:
        workspace = str(CURRENT_PERSON["workspace"]["id"])
        with self._lock:
            limit = self._limits.get(endpoint)
            if limit is None:
                return {}
            now = self._clock()
            scopes = (("user", user, limit.user), ("workspace", workspace, limit.workspace))
            windows = [
                (scope, self._current(endpoint, scope, key, now), allowed) for scope, key, allowed in scopes
            ]
            refused = [(scope, window) for scope, window, allowed in windows if window.used >= allowed]
            if not refused:
                for _, window, _ in windows:
                    window.used += 1
            headers: dict[str, str] = {}
            for scope, window, allowed in windows:
                headers[f"x-rate-limit-{scope}-limit"] = str(allowed)
                headers[f"x-rate-limit-{scope}-remaining"] = str(max(0, allowed - window.used))
                # epoch milliseconds, as in the examples of AAC's OpenAPI spec v2025.23.2
                headers[f"x-rate-limit-{scope}-reset"] = str(
                    math.ceil((window.started + self._window) * 1000)
                )
        if not refused:
            return headers
        wait = max(window.started + self._window for _, window in refused) - now
        if self._retry_after:
            headers["x-retry-after"] = str(number(_ms_up(max(wait, 0.001))) if wait < 10 else math.ceil(wait))
        self._counters.count("rate_limited")
        scope = refused[0][0]
        raise ApiError(
            429,
            f"Too many {endpoint} requests for this {scope}; try again in {wait:.3g} s",
            details={"endpoint": endpoint, "scope": scope},
            headers=headers,
        )

    def _current(self, endpoint: str, scope: str, key: str, now: float) -> _Window:
        """Fixed windows, each starting with its first call. Lock held."""
        window = self._windows.get((endpoint, scope, key))
        if window is None or now >= window.started + self._window:
            window = self._windows[(endpoint, scope, key)] = _Window(now)
        return window

    # ----------------------------------------------------------------- lineage endpoints

    def _datasets_of(self, dataset_id: int) -> _Datasets:
        with self._lock:
            return self._datasets.get(dataset_id) or _default_datasets(dataset_id)

    def _job_group_inputs(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            group = find(self._book.job_groups, path_id(match), "Job group")
        inputs = self._datasets_of(group.dataset_id).inputs
        if any("uri" in item for item in inputs):
            body = {
                "exception": {
                    "name": "DataServiceInvalidRequest",
                    "message": FILE_INPUT_REFUSAL,
                    "details": None,
                }
            }
            return json_response(400, body)
        return json_response(200, {"data": [{"name": f"Recipe {group.dataset_id}", "inputs": inputs}]})

    def _job_group_outputs(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            group = find(self._book.job_groups, path_id(match), "Job group")
            objects = group.output_views()
        datasets = self._datasets_of(group.dataset_id)
        return json_response(
            200, {**page(objects, request.query), "files": datasets.files, "tables": datasets.tables}
        )

    def _flow_run_job_groups(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            run = find(self._book.flow_runs, path_id(match), "Flow run")
            groups = [group.view() for group in run.job_groups]
        return json_response(200, page(groups, request.query))


__all__ = [
    "AAC_RATE_LIMITS",
    "FILE_INPUT_REFUSAL",
    "RateLimit",
    "RunStart",
    "RunsAndLineage",
    "jdbc_table",
    "result_file",
]
