"""A local, threaded stand-in for the Alteryx Analytics Cloud API and its token endpoint.

The provider's hardest promise is that a rotating refresh token is spent exactly once.
Only a server that rotates on every refresh and revokes the whole token family on reuse,
as AAC does, can show that promise holding (or breaking) under real concurrency. So this
is a real HTTP server on 127.0.0.1 rather than a mock, shared by the test suite, the demo,
the benchmarks and users testing their DAGs offline. It depends on the standard library
and pyjwt only, so importing it stays fast and never pulls in Airflow.

:class:`AACSimulator` is the front: it owns one reentrant state lock and hands it to the
parts (token authority, run book, counters, fault schedule), so a rotation and its counts,
or a run start and its idempotency check, are each one atomic step.

Run it standalone with ``python -m airflow_provider_aac.testing.simulator --help``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal

from airflow_provider_aac.testing.simulator.admin import AdminApi
from airflow_provider_aac.testing.simulator.api import V4Api
from airflow_provider_aac.testing.simulator.counters import STAT_KEYS, Counters
from airflow_provider_aac.testing.simulator.faults import FaultSchedule, Shot
from airflow_provider_aac.testing.simulator.openapi import SpecDocument
from airflow_provider_aac.testing.simulator.run_book import RunBook
from airflow_provider_aac.testing.simulator.runs_and_lineage import RunsAndLineage
from airflow_provider_aac.testing.simulator.server import ServerThread
from airflow_provider_aac.testing.simulator.token_endpoint import TOKEN_PATH, TokenEndpoint
from airflow_provider_aac.testing.simulator.tokens import TokenAuthority
from airflow_provider_aac.testing.simulator.wire import ROUTE_NOT_FOUND, ApiError, Request, Response

logger = logging.getLogger(__name__)

__all__ = ["STAT_KEYS", "AACSimulator"]


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
        refresh_token_format: Literal["opaque", "jwt"] = "opaque",
        refresh_cap: float | None = None,
        reuse_grace: float = 0.0,
        run_duration: float = 2.0,
        client_id: str = "aac-sim-client",
        clock: Callable[[], float] = time.time,
        without_operations: Iterable[str] = (),
    ) -> None:
        """``clock`` drives token lifetimes and rate-limit windows (a benchmark can compress a month).

        ``refresh_token_format="jwt"`` mints refresh tokens as JWTs whose ``exp`` is their
        deadline (whether AAC's are is unconfirmed: its help pages show opaque ones).

        The PingOne settings (see ``tokens.py`` for their sources): ``refresh_deadline="sliding"``
        renews the refresh deadline by ``refresh_ttl`` at each rotation, ``refresh_cap`` (seconds
        from "Generate", None for none) is the absolute cap no deadline passes, and
        ``reuse_grace`` (seconds, 0 for off) forgives presenting the immediately preceding
        refresh token again with the answer it already got.

        ``without_operations`` (AAC operation ids such as ``"runFlow"``) are left out of the
        routes and of the spec served at ``GET /v4/open-api-spec``: a tenant whose API drifted.
        """
        if refresh_deadline not in ("fixed", "sliding"):
            raise ValueError("refresh_deadline must be 'fixed' or 'sliding'")
        self._host = host
        self._port = port
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.refresh_deadline = refresh_deadline
        self.client_id = client_id
        self._clock = clock

        self._lock = threading.RLock()
        self._counters = Counters(self._lock)
        self._faults = FaultSchedule(self._lock)
        self._authority = TokenAuthority(
            lock=self._lock,
            counters=self._counters,
            issuer=lambda: self.issuer,
            clock=clock,
            client_id=client_id,
            refresh_deadline=refresh_deadline,
            refresh_token_format=refresh_token_format,
            refresh_cap=refresh_cap,
            reuse_grace=reuse_grace,
        )
        self._book = RunBook(self._lock, self._counters, run_duration)
        self._server: ServerThread | None = None
        # rate limits, the run start log, lineage endpoints
        self.runs = RunsAndLineage(self._book, self._counters, clock=clock)
        self._token_endpoint = TokenEndpoint(self._authority, self._faults, self._counters)
        self._api = V4Api(
            authority=self._authority,
            faults=self._faults,
            counters=self._counters,
            book=self._book,
            lineage=self.runs,
            spec=SpecDocument(without_operations),
        )
        self._admin = AdminApi(
            stats=self.stats, reset_stats=self.reset_stats, mint_pair=self.mint_pair, disable=self.disable
        )
        self._seed()

    def _seed(self) -> None:
        self.add_plan(1, name="Daily sales")
        self.add_plan(2, outcome="Failed", name="Broken plan")
        self.add_flow(10, name="Sales flow")
        self.add_flow(11, outcome="Failed", name="Broken flow")
        self.add_wrangled_dataset(100)
        self.add_wrangled_dataset(101, outcome="Failed")

    @property
    def run_duration(self) -> float:
        """How long a run takes when its definition names no duration; read when a run starts."""
        return self._book.run_duration

    @run_duration.setter
    def run_duration(self, seconds: float) -> None:
        self._book.run_duration = seconds

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> AACSimulator:
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._server = ServerThread((self._host, self._port), self._handle)
        return self

    def stop(self) -> None:
        server = self._server
        if server is None:
            return
        server.stop()
        self._server = None

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
        host, port = self._server.server.server_name, self._server.server.server_port
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        return f"http://{shown}:{port}"

    @property
    def issuer(self) -> str:
        return self.base_url + "/as"

    @property
    def token_url(self) -> str:
        return self.issuer + "/token"

    # ----------------------------------------------------------------- tokens

    def mint_pair(
        self,
        *,
        client_id: str | None = None,
        refresh_ttl: float | None = None,
        access_ttl: float | None = None,
    ) -> dict[str, Any]:
        """Start a new token family, like "Generate" in the AAC UI."""
        return self._authority.mint_pair(
            client_id or self.client_id,
            self.access_ttl if access_ttl is None else access_ttl,
            self.refresh_ttl if refresh_ttl is None else refresh_ttl,
        )

    def revoke_family_of(self, refresh_token: str) -> None:
        """Revoke the family, as a user does in the UI; a KeyError for an unknown token."""
        self._authority.revoke_family_of(refresh_token)

    def disable(self, refresh_token: str) -> None:
        """An AAC admin's Disable or Delete of the user's API token: the refresh token stops working,
        access tokens already issued keep working until they expire. A KeyError for an unknown token.
        """
        self._authority.disable(refresh_token)

    @property
    def reuse_grace(self) -> float:
        """PingOne's refresh-token reuse grace period, in seconds (0: off)."""
        return self._authority.reuse_grace

    @property
    def refresh_cap(self) -> float | None:
        """The absolute cap on a token family's life, in seconds from "Generate" (None: no cap)."""
        return self._authority.refresh_cap

    def family_info(self, token: str) -> dict[str, Any]:
        """The family of a refresh or access token, so tests can check a chain's length."""
        return self._authority.family_info(token)

    def refresh_token_status(self, refresh_token: str) -> str:
        """'live', 'spent', 'revoked', 'disabled', 'expired' or 'unknown': what presenting it now would meet."""
        return self._authority.refresh_token_status(refresh_token)

    def stats(self) -> dict[str, int]:
        """A consistent snapshot of every counter (a copy: later traffic does not change it)."""
        return self._counters.snapshot()

    def reset_stats(self) -> None:
        """Zero the counters only; tokens, runs and pending faults stay as they are."""
        self._counters.reset()

    # ----------------------------------------------------------------- faults

    def fail_token_endpoint(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` token requests with `status`; the token presented stays unspent."""
        self._faults.token_failures.add(Shot(times, status=status, retry_after=retry_after, body=body))

    def fail_api(
        self,
        status: int,
        *,
        times: int = 1,
        path_prefix: str = "/v4/",
        method: str | None = None,
        retry_after: float | None = None,
        text: str | None = None,
        content_type: str = "text/plain",
    ) -> None:
        """Fail the next `times` authorized /v4 requests matching `path_prefix` (and `method`).

        Authorization is checked first, so a 401 never uses up a shot meant for a valid caller.
        A 429 carries AAC's rate-limit headers; `x-retry-after` only when `retry_after` is given.
        `text` answers that body as `content_type` instead of AAC's JSON error body, as a
        gateway in front of AAC may (an HTML 400 or 502 page).
        """
        shot = Shot(
            times,
            status=status,
            retry_after=retry_after,
            path_prefix=path_prefix,
            method=method,
            text=text,
            content_type=content_type,
        )
        self._faults.api_failures.add(shot)

    def slow_token_endpoint(self, delay: float, *, times: int = 1) -> None:
        """Hold the next `times` token requests `delay` seconds, outside the lock: races stay races."""
        self._faults.token_delays.add(Shot(times, delay=delay))

    def lose_token_response(self, *, times: int = 1) -> None:
        """Let the next `times` token requests take effect but close the socket instead of answering.

        This is the lost-response case: the server has rotated, the client never saw the new
        pair, and presenting the old token again is a reuse.
        """
        self._faults.token_losses.add(Shot(times))

    # ----------------------------------------------------------------- runnable things

    def add_plan(
        self,
        plan_id: int,
        *,
        outcome: str = "Complete",
        duration: float | None = None,
        name: str | None = None,
        missing_flow_references: bool = False,
        jobs_survive_cancel: bool = False,
    ) -> None:
        """Make a plan runnable; its runs end in `outcome` after `duration` (None: run_duration).

        ``missing_flow_references``: runPlan answers ``validationStatus: MissingFlowReferences``
        (the plan's tasks reference deleted flows or outputs) and its snapshot run never starts.
        ``jobs_survive_cancel``: a cancel answers ``failedToCancelSomeJobs: true``.
        """
        self._book.define(
            "plan",
            plan_id,
            outcome,
            duration,
            name or f"Plan {plan_id}",
            missing_flow_references=missing_flow_references,
            jobs_survive_cancel=jobs_survive_cancel,
        )

    def add_flow(
        self,
        flow_id: int,
        *,
        outcome: str = "Complete",
        duration: float | None = None,
        name: str | None = None,
        sync_answer_delay: float = 0.0,
        outputs: int = 1,
    ) -> None:
        """``sync_answer_delay``: seconds a runFlow answer without ``runAsync=true`` takes after
        the run exists, as AAC's does while it creates the job groups; with ``runAsync=true``
        the answer comes at once. ``outputs``: how many outputs (recipes ``flow_id * 1000 + 1``
        onwards) the flow has."""
        self._book.define(
            "flow",
            flow_id,
            outcome,
            duration,
            name or f"Flow {flow_id}",
            answer_delay=sync_answer_delay,
            outputs=outputs,
        )

    def add_wrangled_dataset(
        self,
        dataset_id: int,
        *,
        outcome: str = "Complete",
        duration: float | None = None,
        name: str | None = None,
        flow_id: int = 10,
    ) -> None:
        """A recipe a job group can run; ``flow_id``: the flow it belongs to, as its listing row says."""
        self._book.define(
            "dataset", dataset_id, outcome, duration, name or f"Recipe {dataset_id}", flow_id=flow_id
        )

    # ----------------------------------------------------------------- request handling

    def _handle(self, request: Request) -> Response:
        """Answer one HTTP request; called by the server's handler threads."""
        try:
            response = self._dispatch(request)
        except ApiError as error:
            response = error.response()
        except Exception:
            logger.exception("the AAC simulator failed on %s %s", request.method, request.path)
            response = ApiError(500, "The simulator failed; see its log").response()
        return response  # the server stamps x-trifacta-request-id on whatever it writes

    def _dispatch(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            return self._token_endpoint.handle(request)
        if request.path.startswith("/_sim/"):
            return self._admin.handle(request)
        if request.path.startswith("/v4/"):
            return self._api.handle(request)
        raise ApiError(404, f"No such path: {request.path}", name=ROUTE_NOT_FOUND)
