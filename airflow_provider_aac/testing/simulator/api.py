"""``/v4``: AAC's API as the provider calls it, behind bearer-token checks and injected failures.

Authorization is checked first, so a 401 never uses up a failure shot meant for a valid
caller; then come injected failures, then the rate limits and delays of
:class:`RunsAndLineage`, then the route itself. Answers follow the package's transcription
of AAC's OpenAPI spec (``openapi/aac-v4-subset.json``), which is served at
``GET /v4/open-api-spec`` less any operation the simulator was started without.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any

from airflow_provider_aac.testing.simulator.counters import Counters
from airflow_provider_aac.testing.simulator.faults import FaultSchedule, Shot
from airflow_provider_aac.testing.simulator.listing_filters import filtered
from airflow_provider_aac.testing.simulator.openapi import SpecDocument
from airflow_provider_aac.testing.simulator.run_book import DefinitionKind, ExecutionKey, RunBook
from airflow_provider_aac.testing.simulator.run_flow_request import (
    run_async_flag,
    run_flow_recipe_ids,
    run_flow_spark_options,
)
from airflow_provider_aac.testing.simulator.tokens import CURRENT_PERSON, TokenAuthority
from airflow_provider_aac.testing.simulator.wire import (
    ApiError,
    Handler,
    Request,
    Response,
    Route,
    compile_routes,
    embeds,
    find,
    is_int,
    json_body,
    json_response,
    number,
    page,
    path_id,
    require_type,
    route,
)

if TYPE_CHECKING:
    from airflow_provider_aac.testing.simulator.runs_and_lineage import RunsAndLineage


def execution_key(request: Request, kind: str, ident: int) -> ExecutionKey | None:
    """What makes a repeated run request (same x-execution-id, same target) a no-op."""
    execution_id = request.headers.get("x-execution-id", "").strip()
    return (kind, ident, execution_id) if execution_id else None


class V4Api:
    def __init__(
        self,
        *,
        authority: TokenAuthority,
        faults: FaultSchedule,
        counters: Counters,
        book: RunBook,
        lineage: RunsAndLineage,
        spec: SpecDocument,
    ) -> None:
        self._authority = authority
        self._spec = spec
        self._faults = faults
        self._counters = counters
        self._book = book
        self._lineage = lineage
        table: list[tuple[str, str, Handler]] = [
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
            ("GET", r"/v4/wrangledDatasets", self._list_wrangled_datasets),
            ("POST", r"/v4/flows/(?P<id>\d+)/run", self._run_flow),
            ("GET", r"/v4/flowRuns/(?P<id>\d+)", self._get_flow_run),
            ("GET", r"/v4/flowRuns/(?P<id>\d+)/status", self._flow_run_status),
            ("GET", r"/v4/open-api-spec", self._open_api_spec),
        ]
        self._routes: list[Route] = spec.served(compile_routes(table) + lineage.routes())

    def handle(self, request: Request) -> Response:
        self._counters.count("api_calls")
        reason = self._authority.unauthorized_reason(request.headers)
        if reason is not None:
            self._counters.count("api_unauthorized")
            raise ApiError(401, reason)
        self._counters.count("api_authorized")
        failure = self._faults.api_failures.take(request)
        if failure is not None and failure.text is not None:
            return Response(failure.status, failure.text.encode(), {"Content-Type": failure.content_type})
        if failure is not None:
            raise self._failure(failure)
        limit_headers = self._lineage.before_route(request)
        response = route(request, self._routes)
        response.headers.update(limit_headers)
        return response

    def _failure(self, shot: Shot) -> ApiError:
        headers: dict[str, str] = {}
        if shot.status == 429:
            self._counters.count("rate_limited")
            window = shot.retry_after if shot.retry_after is not None else 60.0
            headers = {
                "x-rate-limit-user-limit": "30",
                "x-rate-limit-user-remaining": "0",
                "x-rate-limit-user-reset": str(math.ceil((time.time() + window) * 1000)),
            }
            if shot.retry_after is not None:
                headers["x-retry-after"] = str(number(shot.retry_after))
        elif shot.retry_after is not None:
            headers["Retry-After"] = str(math.ceil(shot.retry_after))
        return ApiError(shot.status, f"Simulated failure (HTTP {shot.status})", headers=headers)

    # ----------------------------------------------------------------- people, listings

    def _current_person(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, CURRENT_PERSON)

    def _open_api_spec(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._spec.document)

    def _list_plans(self, request: Request, match: re.Match[str]) -> Response:
        return self._listing("plan", request)

    def _list_flows(self, request: Request, match: re.Match[str]) -> Response:
        return self._listing("flow", request)

    def _list_wrangled_datasets(self, request: Request, match: re.Match[str]) -> Response:
        return self._listing("dataset", request)

    def _listing(self, kind: DefinitionKind, request: Request) -> Response:
        rows = filtered(self._book.listing(kind), request.query, kind)
        return json_response(200, page(rows, request.query))

    # ----------------------------------------------------------------- plans

    def _run_plan(self, request: Request, match: re.Match[str]) -> Response:
        body = json_body(request, required=False)
        require_type(body, "planNodeOverrides", list, "a list")
        plan_id = path_id(match)
        run = self._book.start_plan(plan_id, execution_key(request, "plan", plan_id))
        if run is None:
            return Response(304)
        self._lineage.record_start("plan", plan_id, run.id, request)
        plan = self._book.definition("plan", plan_id)
        # AAC API spec v2025.23.2 (operationId runPlan): both fields are required in either case.
        status = "MissingFlowReferences" if plan is not None and plan.missing_flow_references else "Valid"
        return json_response(201, {"validationStatus": status, "planSnapshotRunId": run.id})

    def _get_plan_run(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            run = find(self._book.plan_runs, path_id(match), "Plan run")
            view: dict[str, Any] = run.view()
            if "flowRuns" in embeds(request):
                view["flowRuns"] = {"data": [flow.summary() for flow in self._book.flow_runs_of(run)]}
            return json_response(200, view)

    def _cancel_plan_run(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            run = find(self._book.plan_runs, path_id(match), "Plan run")
            self._book.cancel(run.progress)
            view = run.view()
            plan = self._book.definition("plan", run.plan_id)
            if plan is not None and plan.jobs_survive_cancel:
                view["failedToCancelSomeJobs"] = True  # AAC API spec v2025.23.2, schema planSnapshotRun
            return json_response(200, view)

    # ----------------------------------------------------------------- job groups

    def _create_job_group(self, request: Request, match: re.Match[str]) -> Response:
        body = json_body(request, required=True) or {}
        dataset = body.get("wrangledDataset")
        if not isinstance(dataset, dict) or not is_int(dataset.get("id")):
            raise ApiError(
                400, "'wrangledDataset.id' must be an integer", details={"field": "wrangledDataset"}
            )
        require_type(body, "overrides", dict, "an object")
        require_type(body, "runParameters", dict, "an object")
        with self._book.lock:
            group = self._book.start_job_group(
                dataset["id"], execution_key(request, "job_group", dataset["id"])
            )
            if group is None:
                return Response(304)
            jobs = group.job_views()
        self._lineage.record_start("job_group", group.dataset_id, group.id, request)
        payload = {
            "id": group.id,
            "reason": "JobStarted",
            "sessionId": group.session_id,
            "jobs": {"data": jobs},
        }
        return json_response(201, payload)

    def _get_job_group(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            group = find(self._book.job_groups, path_id(match), "Job group")
            return json_response(200, group.view(embed_jobs="jobs" in embeds(request)))

    def _job_group_status(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            group = find(self._book.job_groups, path_id(match), "Job group")
            return json_response(200, group.progress.status())

    def _cancel_job_group(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            group = find(self._book.job_groups, path_id(match), "Job group")
            self._book.cancel(group.progress)
            return json_response(200, group.cancel_view())

    # ----------------------------------------------------------------- flows

    def _run_flow(self, request: Request, match: re.Match[str]) -> Response:
        """AAC API spec v2025.23.2 (operationId runFlow, schema flowRunRequest, query runAsync)."""
        body = json_body(request, required=False)
        require_type(body, "runParameters", dict, "an object")
        require_type(body, "overrides", dict, "an object keyed by recipe name")
        recipe_ids = run_flow_recipe_ids(body)
        run_flow_spark_options(body)
        run_async = run_async_flag(request)
        flow_id = path_id(match)
        run = self._book.start_flow(flow_id, execution_key(request, "flow", flow_id), recipe_ids)
        if run is None:
            return Response(304)
        self._lineage.record_start("flow", flow_id, run.id, request)
        if run_async:
            # The job groups are queued, not yet created: the answer names none of them.
            return json_response(201, {"flowRunId": run.id, "data": []})
        flow = self._book.definition("flow", flow_id)
        if flow is not None and flow.answer_delay > 0:
            time.sleep(flow.answer_delay)
        data = [
            {"id": group.id, "reason": "JobStarted", "sessionId": group.session_id}
            for group in run.job_groups
        ]
        return json_response(201, {"flowRunId": run.id, "data": data})

    def _get_flow_run(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            run = find(self._book.flow_runs, path_id(match), "Flow run")
            return json_response(200, run.view())

    def _flow_run_status(self, request: Request, match: re.Match[str]) -> Response:
        with self._book.lock:
            run = find(self._book.flow_runs, path_id(match), "Flow run")
            return json_response(200, run.status())
