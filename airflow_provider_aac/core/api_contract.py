"""What the provider relies on in AAC's ``/v4`` API, in one list.

The contract test checks this list against the package's transcription of AAC's OpenAPI
spec (v2025.23.2, ``testing/simulator/openapi/aac-v4-subset.json``), and ``airflow aac
doctor`` checks it against the spec a tenant serves at ``GET /v4/open-api-spec``. A
change to what the provider sends or reads belongs here too, or neither check sees it.

``reads`` are the answer's fields the provider cannot do without; ``optional_reads`` it
uses when present (a failure message, lineage's workspace id) and which the vendor's
spec does not list, so their absence from a tenant's spec is a note, not a failure.
Dotted names go into objects, ``[]`` into array items (``data[].id``).
"""

from __future__ import annotations

from dataclasses import dataclass

from airflow_provider_aac.core.status import FAILURE_STATUSES, SUCCESS_STATUSES

SPEC_VERSION = "v2025.23.2"
OPEN_API_SPEC_PATH = "/v4/open-api-spec"
RATE_LIMIT_HEADERS = (
    "x-retry-after",
    "x-rate-limit-user-remaining",
    "x-rate-limit-user-reset",
    "x-rate-limit-workspace-remaining",
    "x-rate-limit-workspace-reset",
)
TERMINAL_STATUSES = tuple(sorted(status.value for status in SUCCESS_STATUSES | FAILURE_STATUSES))


@dataclass(frozen=True)
class ReliedOn:
    """One operation as the provider uses it; ``statuses`` are the values it must be able to see."""

    operation_id: str
    method: str
    path: str
    used_by: str
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    optional_reads: tuple[str, ...] = ()
    status_field: str | None = None  # "" for an answer that is the status itself
    statuses: tuple[str, ...] = ()
    response_headers: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} ({self.operation_id})"


RELIED_ON: tuple[ReliedOn, ...] = (
    ReliedOn(
        "getCurrentPerson",
        "GET",
        "/v4/people/current",
        "hooks/aac.py test_connection, cli connect, lineage.py",
        reads=("id",),
        optional_reads=("email", "name", "workspace.id"),
    ),
    ReliedOn(
        "listPlans",
        "GET",
        "/v4/plans",
        "plan_name= lookups (exact filter on the name)",
        query=("limit", "offset", "filter", "filterFields", "filterType"),
        reads=("data[].id", "data[].name"),
    ),
    ReliedOn(
        "runPlan",
        "POST",
        "/v4/plans/{id}/run",
        "operators/aac.py AACRunPlanOperator",
        headers=("x-execution-id",),
        body=("planNodeOverrides",),
        reads=("planSnapshotRunId", "validationStatus"),
        status_field="validationStatus",
        statuses=("Valid", "MissingFlowReferences"),
        response_headers=RATE_LIMIT_HEADERS,
    ),
    ReliedOn(
        "getPlanSnapshotRun",
        "GET",
        "/v4/planSnapshotRuns/{id}",
        "runs.py (status), lineage.py",
        query=("embed",),
        reads=("status",),
        optional_reads=("errorMessage", "flowRuns"),
        status_field="status",
        statuses=TERMINAL_STATUSES,
    ),
    ReliedOn("cancelPlanSnapshotRun", "POST", "/v4/planSnapshotRuns/{id}/cancel", "runs.py (cancel)"),
    ReliedOn(
        "listFlows",
        "GET",
        "/v4/flows",
        "flow_name= lookups (exact filter on the name)",
        query=("limit", "offset", "filter", "filterFields", "filterType"),
        reads=("data[].id", "data[].name"),
    ),
    ReliedOn(
        "runFlow",
        "POST",
        "/v4/flows/{id}/run",
        "operators/aac.py AACRunFlowOperator",
        headers=("x-execution-id",),
        body=("runParameters",),
        reads=("flowRunId", "data[].id"),
        response_headers=RATE_LIMIT_HEADERS,
    ),
    ReliedOn(
        "getFlowRun",
        "GET",
        "/v4/flowRuns/{id}",
        "runs.py (failure message, cancel)",
        query=("embed",),
        optional_reads=("errorMessage", "jobGroups"),
    ),
    ReliedOn(
        "getFlowRunStatus",
        "GET",
        "/v4/flowRuns/{id}/status",
        "runs.py, sensors, triggers",
        status_field="",
        statuses=TERMINAL_STATUSES,
    ),
    ReliedOn(
        "getFlowRunJobGroups",
        "GET",
        "/v4/flowRuns/{id}/jobGroups",
        "lineage.py",
        reads=("data[].id",),
    ),
    ReliedOn(
        "runJobGroup",
        "POST",
        "/v4/jobGroups",
        "operators/aac.py AACRunJobGroupOperator",
        headers=("x-execution-id",),
        body=("wrangledDataset", "overrides", "runParameters"),
        reads=("id",),
        response_headers=RATE_LIMIT_HEADERS,
    ),
    ReliedOn(
        "getJobGroup",
        "GET",
        "/v4/jobGroups/{id}",
        "runs.py (failure message)",
        reads=("status",),
        optional_reads=("errorMessage",),
        status_field="status",
        statuses=TERMINAL_STATUSES,
    ),
    ReliedOn(
        "getJobGroupStatus",
        "GET",
        "/v4/jobGroups/{id}/status",
        "runs.py, sensors, triggers",
        status_field="",
        statuses=TERMINAL_STATUSES,
    ),
    ReliedOn("cancelJobGroup", "POST", "/v4/jobGroups/{id}/cancel", "runs.py (cancel)"),
    ReliedOn(
        "getJobGroupInputs",
        "GET",
        "/v4/jobGroups/{id}/inputs",
        "lineage.py",
        reads=("data[].inputs",),
    ),
    ReliedOn(
        "getJobGroupOutputs",
        "GET",
        "/v4/jobGroups/{id}/outputs",
        "lineage.py",
        reads=("files[].uri", "tables[].table", "tables[].databaseConnectString"),
    ),
    ReliedOn("getOpenApiSpec", "GET", OPEN_API_SPEC_PATH, "cli doctor"),
)


def relied_on(operation_id: str) -> ReliedOn:
    return next(entry for entry in RELIED_ON if entry.operation_id == operation_id)
