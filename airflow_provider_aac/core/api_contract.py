"""What the provider relies on in AAC's ``/v4`` API, in one list.

The contract test checks this list against the package's transcription of AAC's OpenAPI
spec (v2025.23.2, ``testing/simulator/openapi/aac-v4-subset.json``), and ``airflow aac
doctor`` checks it against the spec a tenant serves at ``GET /v4/open-api-spec``. A
change to what the provider sends or reads belongs here too, or neither check sees it.

``reads`` are the answer's fields the provider cannot do without; ``optional_reads`` it
uses when present (a failure message, lineage's workspace id, a cancel's
``failedToCancelSomeJobs``), or which the vendor's spec does not list although the provider
needs them: a wrangled dataset's ``name`` for ``wrangled_dataset_name=`` (schema
wrangledDataset has none; a tenant that sends none makes the lookup fail with a clear
error). Their absence from a tenant's spec is a note, not a failure. Dotted names go into
objects, ``[]`` into array items (``data[].id``).

Read on every answer but declared by no operation (the spec's overview describes it):
``core.api.REQUEST_ID_HEADER`` (``x-trifacta-request-id``), which error messages quote.
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
# runs.failure_message: the fields a run's detail may carry AAC's words about a failure in.
FAILURE_MESSAGE_FIELDS = ("errorMessage", "failureMessage", "message", "error", "exception.message")
# lineage.table_ref / file_ref: a table's or a file's identity in inputs and outputs.
TABLE_FIELDS = ("table", "vendor", "databaseConnectString", "relationalPath")
FILE_FIELDS = ("uri", "path")
NAME_LOOKUP_QUERY = ("filter", "filterFields", "filterType", "limit")
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
        "run_targets.py plan_name= (exact filter on the name, every owner's plans)",
        query=(*NAME_LOOKUP_QUERY, "ownershipFilter"),
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
        "runs.py (status, failure message), lineage.py (embed=flowRuns)",
        query=("embed",),
        reads=("status",),
        optional_reads=(*FAILURE_MESSAGE_FIELDS, "flowRuns", "jobGroups"),
        status_field="status",
        statuses=TERMINAL_STATUSES,
    ),
    ReliedOn(
        "cancelPlanSnapshotRun",
        "POST",
        "/v4/planSnapshotRuns/{id}/cancel",
        "runs.py (cancel; MissingFlowReferences)",
        optional_reads=("failedToCancelSomeJobs",),
    ),
    ReliedOn(
        "listFlows",
        "GET",
        "/v4/flows",
        "run_targets.py flow_name= (exact filter on the name, every owner's flows)",
        query=(*NAME_LOOKUP_QUERY, "flowsFilter"),
        reads=("data[].id", "data[].name"),
    ),
    ReliedOn(
        "listWrangledDatasets",
        "GET",
        "/v4/wrangledDatasets",
        "run_targets.py wrangled_dataset_name= (exact filter on the name)",
        query=NAME_LOOKUP_QUERY,
        reads=("data[].id",),
        optional_reads=("data[].name",),  # needed, but schema wrangledDataset lists no name
    ),
    ReliedOn(
        "runFlow",
        "POST",
        "/v4/flows/{id}/run",
        "operators/aac.py AACRunFlowOperator",
        query=("runAsync",),
        headers=("x-execution-id",),
        body=("runParameters", "wrangledDatasetIds", "overrides", "sparkOptions"),
        reads=("flowRunId", "data[].id"),
        response_headers=RATE_LIMIT_HEADERS,
    ),
    ReliedOn(
        "getFlowRun",
        "GET",
        "/v4/flowRuns/{id}",
        "runs.py (failure message)",
        optional_reads=FAILURE_MESSAGE_FIELDS,
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
        "operators/aac.py AACRunFlowOperator (runAsync), runs.py (cancel), lineage.py",
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
        optional_reads=FAILURE_MESSAGE_FIELDS,
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
        optional_reads=tuple(f"data[].inputs[].{name}" for name in (*TABLE_FIELDS, *FILE_FIELDS)),
    ),
    ReliedOn(
        "getJobGroupOutputs",
        "GET",
        "/v4/jobGroups/{id}/outputs",
        "lineage.py",
        reads=("files[].uri", "tables[].table", "tables[].databaseConnectString"),
        optional_reads=("files[].path", "tables[].vendor", "tables[].relationalPath"),
    ),
    ReliedOn("getOpenApiSpec", "GET", OPEN_API_SPEC_PATH, "cli doctor, hooks/aac.py test_connection"),
)


def relied_on(operation_id: str) -> ReliedOn:
    return next(entry for entry in RELIED_ON if entry.operation_id == operation_id)
