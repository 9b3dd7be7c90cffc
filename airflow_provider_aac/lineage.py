"""OpenLineage for AAC runs: the datasets a run's job groups read and wrote.

A job group is the unit AAC reports data for: ``GET /v4/jobGroups/{id}/inputs`` names the
JDBC tables it read and ``/outputs`` the files and tables it wrote. A flow run is its job
groups (``GET /v4/flowRuns/{id}/jobGroups``); a plan run runs its tasks as flow runs,
which AAC does not document a listing for: the provider asks the plan run to embed them
(``?embed=flowRuns``) and follows each one. Every dataset lives in one namespace per AAC
workspace (``aac://<host>/workspaces/<id>``), named by where the data physically is; a
symlink facet carries OpenLineage's own naming of that place (``s3://bucket`` + key,
``postgres://host:port`` + ``db.schema.table``), so the same table seen by another tool
joins up. Lineage is best effort: a failed call costs datasets, never the task.

The OpenLineage provider is an optional extra (``airflow-provider-aac[openlineage]``);
nothing here imports it until its listener asks an operator for facets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_aac.core.api import api_call
from airflow_provider_aac.core.exchange import Exchange
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.errors import AACApiError, AACError
from airflow_provider_aac.runs import FLOW_RUN_JOB_GROUPS, RunKind

if TYPE_CHECKING:
    from airflow_provider_aac.hooks.aac import AACHook

log = logging.getLogger(__name__)

NAMESPACE_SCHEME = "aac"
PLAN_RUN_FLOW_RUNS = "/v4/planSnapshotRuns/{id}"
PLAN_RUN_EMBED = {"embed": "flowRuns"}
JOB_GROUP_INPUTS = "/v4/jobGroups/{id}/inputs"
JOB_GROUP_OUTPUTS = "/v4/jobGroups/{id}/outputs"
FACET_NAME = "aacRun"


@dataclass(frozen=True)
class DatasetRef:
    """One dataset, named in the workspace namespace, with its physical identity."""

    name: str
    kind: str  # "TABLE" or "FILE", OpenLineage's symlink types
    physical_namespace: str
    physical_name: str


@dataclass
class RunDatasets:
    namespace: str
    job_group_ids: list[int] = field(default_factory=list)
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)


def _rows(data: Any, key: str = "data") -> list[dict[str, Any]]:
    value = data.get(key) if isinstance(data, dict) else data
    if isinstance(value, dict):
        value = value.get("data")
    return [row for row in value or [] if isinstance(row, dict)] if isinstance(value, list) else []


def _input_rows(data: Any) -> list[dict[str, Any]]:
    """The files and tables of AAC's ``JobGroupInputs``: datasets by ``name``, each with its ``inputs``.

    (AAC's OpenAPI spec v2025.23.2.) A row without ``inputs`` is taken as a file or table itself.
    """
    rows: list[dict[str, Any]] = []
    for dataset in _rows(data):
        nested = dataset.get("inputs")
        rows += [row for row in nested if isinstance(row, dict)] if isinstance(nested, list) else [dataset]
    return rows


def _ids(rows: Sequence[dict[str, Any]]) -> list[int]:
    return [row["id"] for row in rows if isinstance(row.get("id"), int) and not isinstance(row["id"], bool)]


def table_ref(row: dict[str, Any]) -> DatasetRef | None:
    """A JDBC table as AAC describes it: vendor, ``//host:port/database``, schema path and table."""
    table = row.get("table")
    if not isinstance(table, str) or not table:
        return None
    vendor = str(row.get("vendor") or "jdbc").lower()
    connect = str(row.get("databaseConnectString") or "")
    location = urlsplit(connect if "//" in connect else f"//{connect}")
    database = location.path.strip("/")
    path = row.get("relationalPath")
    schemas = [str(part) for part in path] if isinstance(path, list) else ([str(path)] if path else [])
    physical_namespace = f"{vendor}://{location.netloc}" if location.netloc else vendor
    physical_name = ".".join(part for part in (database, *schemas, table) if part)
    return DatasetRef(f"{physical_namespace}/{physical_name}", "TABLE", physical_namespace, physical_name)


def file_ref(row: dict[str, Any]) -> DatasetRef | None:
    uri = row.get("uri") or row.get("path")
    if not isinstance(uri, str) or not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme and parts.netloc:
        namespace, name = f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")
    else:
        namespace, name = "file", parts.path or uri
    return DatasetRef(uri, "FILE", namespace, name)


def _workspace_namespace(base_url: str, person: Any) -> str:
    host = urlsplit(base_url).netloc
    workspace = person.get("workspace") if isinstance(person, dict) else None
    ident = workspace.get("id") if isinstance(workspace, dict) else None
    return (
        f"{NAMESPACE_SCHEME}://{host}/workspaces/{ident}"
        if ident is not None
        else f"{NAMESPACE_SCHEME}://{host}"
    )


def _lineage_exchange(
    base_url: str, kind: RunKind, run_id: int, known_job_groups: Sequence[int], backoff: Backoff
) -> Exchange[RunDatasets]:
    try:
        person = (yield from api_call("GET", "/v4/people/current", backoff=backoff)).data
    except AACError as err:
        log.info("Could not read the AAC workspace for the lineage namespace: %s", err)
        person = None
    found = RunDatasets(_workspace_namespace(base_url, person))
    try:
        if kind is RunKind.JOB_GROUP:
            groups = [run_id]
        elif kind is RunKind.FLOW and known_job_groups:
            groups = list(known_job_groups)
        else:
            flow_runs = [run_id]
            if kind is RunKind.PLAN:
                plan_path = PLAN_RUN_FLOW_RUNS.format(id=run_id)
                plan = (yield from api_call("GET", plan_path, params=PLAN_RUN_EMBED, backoff=backoff)).data
                flow_runs = _ids(_rows(plan, "flowRuns"))
                groups = _ids(_rows(plan, "jobGroups"))
            else:
                groups = []
            for flow_run in flow_runs:
                listing = yield from api_call("GET", FLOW_RUN_JOB_GROUPS.format(id=flow_run), backoff=backoff)
                groups += _ids(_rows(listing.data))
    except AACError as err:
        log.warning("Could not list the job groups of AAC %s run %s for lineage: %s", kind.value, run_id, err)
        return found
    found.job_group_ids = list(dict.fromkeys(groups))
    for group in found.job_group_ids:
        try:
            inputs = (yield from api_call("GET", JOB_GROUP_INPUTS.format(id=group), backoff=backoff)).data
            found.inputs += [ref for row in _input_rows(inputs) if (ref := table_ref(row) or file_ref(row))]
        except AACApiError as err:
            # AAC refuses the call (400) when an input is a file: it lists JDBC sources only.
            log.info(
                "AAC did not list the inputs of job group %s (%s); lineage has its outputs only.", group, err
            )
        except AACError as err:
            log.warning("Could not read the inputs of AAC job group %s for lineage: %s", group, err)
        try:
            outputs = (yield from api_call("GET", JOB_GROUP_OUTPUTS.format(id=group), backoff=backoff)).data
        except AACError as err:
            log.warning("Could not read the outputs of AAC job group %s for lineage: %s", group, err)
            continue
        found.outputs += [ref for row in _rows(outputs, "files") if (ref := file_ref(row))]
        found.outputs += [ref for row in _rows(outputs, "tables") if (ref := table_ref(row))]
    found.inputs = list(dict.fromkeys(found.inputs))
    found.outputs = list(dict.fromkeys(found.outputs))
    return found


def collect(hook: AACHook, kind: RunKind, run_id: int, known_job_groups: Sequence[int] = ()) -> RunDatasets:
    return hook.run_exchange(_lineage_exchange(hook.base_url, kind, run_id, known_job_groups, hook.backoff))


def operator_lineage(
    hook: AACHook,
    kind: RunKind,
    run_id: int | None,
    run_url: str | None,
    known_job_groups: Sequence[int] = (),
) -> Any:
    """The ``OperatorLineage`` of one run, for ``get_openlineage_facets_on_complete``."""
    from airflow.providers.openlineage.extractors import OperatorLineage

    if run_id is None:
        return OperatorLineage()
    from openlineage.client.event_v2 import Dataset
    from openlineage.client.facet_v2 import external_query_run, symlinks_dataset

    from airflow_provider_aac.lineage_facets import AACRunFacet

    found = collect(hook, kind, run_id, known_job_groups)

    def dataset(ref: DatasetRef) -> Any:
        symlink = symlinks_dataset.Identifier(
            namespace=ref.physical_namespace, name=ref.physical_name, type=ref.kind
        )
        return Dataset(
            namespace=found.namespace,
            name=ref.name,
            facets={"symlinks": symlinks_dataset.SymlinksDatasetFacet(identifiers=[symlink])},
        )

    return OperatorLineage(
        inputs=[dataset(ref) for ref in found.inputs],
        outputs=[dataset(ref) for ref in found.outputs],
        run_facets={
            "externalQuery": external_query_run.ExternalQueryRunFacet(
                externalQueryId=str(run_id), source=found.namespace
            ),
            FACET_NAME: AACRunFacet(
                runType=kind.value, runId=run_id, url=run_url, jobGroupIds=list(found.job_group_ids)
            ),
        },
    )
