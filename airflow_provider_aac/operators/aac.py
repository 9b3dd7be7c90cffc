"""Operators that start AAC plans, flows and recipe jobs, call the API, and refresh tokens.

What the run operators share (resume, waiting, deferral, lineage) is in ``run_base`` and
``run_wait``; the token refresh operator is in ``refresh_token`` and importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aac.core.api import validate_api_path
from airflow_provider_aac.errors import AACConfigError, AACError, AACResponseCheckError, failing_fast
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.parameters import is_templated
from airflow_provider_aac.operators.refresh_token import AACRefreshTokenOperator
from airflow_provider_aac.operators.run_base import (
    DEFAULT_TIMEOUT,
    JOB_GROUP_IDS_XCOM_KEY,
    AACRunOperatorBase,
    execution_id,
)
from airflow_provider_aac.operators.run_requests import (
    FLOW_RUN_OPTIONS,
    MISSING_FLOW_REFERENCES,
    VALID_PLAN,
    check_flow_run_field,
    flow_run_field,
    refuse_missing_flow_references,
)
from airflow_provider_aac.operators.run_wait import TRIGGER_TIMEOUT_MARGIN
from airflow_provider_aac.runs import RunKind, flow_job_group_ids
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow.sdk import Context

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

__all__ = [
    "DEFAULT_TIMEOUT",
    "JOB_GROUP_IDS_XCOM_KEY",
    "TRIGGER_TIMEOUT_MARGIN",
    "AACApiOperator",
    "AACRefreshTokenOperator",
    "AACRunFlowOperator",
    "AACRunJobGroupOperator",
    "AACRunOperatorBase",
    "AACRunPlanOperator",
    "execution_id",
]


class AACRunPlanOperator(AACRunOperatorBase):
    """Run an AAC plan (``POST /v4/plans/{id}/run``); returns the ``planSnapshotRunId``.

    A plan whose tasks reference deleted flows or outputs (AAC answers ``validationStatus:
    MissingFlowReferences``, AAC API spec v2025.23.2, operationId runPlan) fails the task at
    once, without retries, and its snapshot run, which would never start, is canceled.

    :param plan_id: the plan to run.
    :param plan_name: instead of ``plan_id``: the plan's exact name (ids differ between
        workspaces); resolved when the task runs, and pushed to XCom as ``plan_id``.
    :param plan_node_overrides: sent as ``planNodeOverrides`` when given.
    """

    kind = RunKind.PLAN
    id_field = "plan_id"
    name_field = "plan_name"
    template_fields: Sequence[str] = ("aac_conn_id", "plan_id", "plan_name", "plan_node_overrides")
    template_fields_renderers = {"plan_node_overrides": "json"}

    def __init__(
        self,
        *,
        plan_id: int | str | None = None,
        plan_name: str | None = None,
        plan_node_overrides: list[Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan_id = plan_id
        self.plan_name = plan_name
        self.plan_node_overrides = plan_node_overrides
        self._validation_status: str | None = None
        self._check_target()

    def _path(self, target: int) -> str:
        return f"/v4/plans/{target}/run"

    def _body(self, target: int) -> dict[str, Any] | None:
        return None if self.plan_node_overrides is None else {"planNodeOverrides": self.plan_node_overrides}

    def _run_id_from(self, data: Any) -> int | None:
        value = data.get("planSnapshotRunId") if isinstance(data, dict) else None
        status = data.get("validationStatus") if isinstance(data, dict) else None
        self._validation_status = status if isinstance(status, str) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _after_start(self, hook: AACHook, target: int, run_id: int) -> None:
        status = self._validation_status
        if status in (VALID_PLAN, None):
            return
        if status != MISSING_FLOW_REFERENCES:
            self.log.warning(
                "AAC answered validationStatus %r for plan %s, a value its API spec does not list; "
                "following snapshot run %s as usual.",
                status,
                target,
                run_id,
            )
            return
        self.aac_run_id = run_id
        canceled = self._cancel(hook, "MissingFlowReferences")
        self._ended = True
        if canceled:
            self._run_done()
        refuse_missing_flow_references(target, self.plan_name, run_id, canceled)


class AACRunFlowOperator(AACRunOperatorBase):
    """Run an AAC flow's outputs (``POST /v4/flows/{id}/run``); returns the flow run id.

    The run's job group ids go to XCom under ``job_group_ids``. Flow runs have no cancel
    endpoint in AAC's API, so cancelling one cancels these job groups.

    With ``run_async`` (the default) AAC queues the job groups and answers at once (AAC API
    spec v2025.23.2, operationId runFlow, query ``runAsync``); its own default, a synchronous
    answer, waits until every job group is created. An answer slower than
    ``request_timeout`` is then resent with the same ``x-execution-id``, AAC answers 304,
    and the task cannot tell which run it started while the flow runs. The job groups of an
    asynchronous run are read from AAC after the start (operationId getFlowRunJobGroups).

    :param flow_id: the flow to run.
    :param flow_name: instead of ``flow_id``: the flow's exact name, resolved when the task
        runs and pushed to XCom as ``flow_id``.
    :param run_parameters: sent as ``runParameters`` when given.
    :param wrangled_dataset_ids: run only the outputs of these recipes (``wrangledDatasetIds``).
    :param overrides: per-output overrides keyed by recipe name, e.g.
        ``{"my recipe": {"profiler": True}}`` (``overrides``).
    :param spark_options: Spark settings for the run, ``{"spark.executor.memory": "4GB"}``
        (sent as ``sparkOptions``, a list of key/value pairs).
    :param run_async: send ``runAsync=true`` (default True; see above).
    """

    kind = RunKind.FLOW
    id_field = "flow_id"
    name_field = "flow_name"
    template_fields: Sequence[str] = (
        "aac_conn_id",
        "flow_id",
        "flow_name",
        "run_parameters",
        "wrangled_dataset_ids",
        "overrides",
        "spark_options",
    )
    template_fields_renderers = {
        "run_parameters": "json",
        "wrangled_dataset_ids": "json",
        "overrides": "json",
        "spark_options": "json",
    }

    def __init__(
        self,
        *,
        flow_id: int | str | None = None,
        flow_name: str | None = None,
        run_parameters: dict[str, Any] | None = None,
        wrangled_dataset_ids: list[int | str] | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        spark_options: dict[str, str] | None = None,
        run_async: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.flow_name = flow_name
        self.run_parameters = run_parameters
        self.wrangled_dataset_ids = wrangled_dataset_ids
        self.overrides = overrides
        self.spark_options = spark_options
        if not isinstance(run_async, bool):
            raise AACConfigError(f"run_async must be True or False, not {run_async!r}.")
        self.run_async = run_async
        self._check_target()
        for name in FLOW_RUN_OPTIONS:
            check_flow_run_field(name, getattr(self, name))

    def _path(self, target: int) -> str:
        return f"/v4/flows/{target}/run"

    def _body(self, target: int) -> dict[str, Any] | None:
        body: dict[str, Any] = {}
        for name in FLOW_RUN_OPTIONS:
            body.update(flow_run_field(name, getattr(self, name)))
        return body or None

    def _query(self) -> dict[str, str] | None:
        return {"runAsync": "true"} if self.run_async else None

    def _run_id_from(self, data: Any) -> int | None:
        if not isinstance(data, dict):
            return None
        groups = data.get("data")
        self.job_group_ids = [
            g["id"] for g in groups or [] if isinstance(g, dict) and isinstance(g.get("id"), int)
        ]
        value = data.get("flowRunId")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _after_start(self, hook: AACHook, target: int, run_id: int) -> None:
        if self.job_group_ids:
            return
        try:
            self.job_group_ids = flow_job_group_ids(hook, run_id)
        except AACError as err:
            self.log.info("Could not list the job groups of AAC flow run %s yet: %s", run_id, err)

    def _publish(self, context: Context) -> None:
        context["ti"].xcom_push(key=JOB_GROUP_IDS_XCOM_KEY, value=self.job_group_ids)


class AACRunJobGroupOperator(AACRunOperatorBase):
    """Run a recipe's outputs (``POST /v4/jobGroups``); returns the job group id.

    The request carries ``x-execution-id`` as plan and flow runs do (AAC's API reference
    documents it for runJobGroup too), so a 5xx or a lost answer is retried safely: a
    repeat that AAC already acted on answers 304 instead of starting a second job.

    :param wrangled_dataset_id: the recipe (wrangled dataset) whose outputs to run.
    :param wrangled_dataset_name: instead of ``wrangled_dataset_id``: the recipe's exact
        name (fails when several recipes share it), pushed to XCom as ``wrangled_dataset_id``.
    :param overrides: sent as ``overrides`` when given.
    :param run_parameters: sent as ``runParameters`` when given.
    """

    kind = RunKind.JOB_GROUP
    id_field = "wrangled_dataset_id"
    name_field = "wrangled_dataset_name"
    template_fields: Sequence[str] = (
        "aac_conn_id",
        "wrangled_dataset_id",
        "wrangled_dataset_name",
        "overrides",
        "run_parameters",
    )
    template_fields_renderers = {"overrides": "json", "run_parameters": "json"}

    def __init__(
        self,
        *,
        wrangled_dataset_id: int | str | None = None,
        wrangled_dataset_name: str | None = None,
        overrides: dict[str, Any] | None = None,
        run_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wrangled_dataset_id = wrangled_dataset_id
        self.wrangled_dataset_name = wrangled_dataset_name
        self.overrides = overrides
        self.run_parameters = run_parameters
        self._check_target()

    def _path(self, target: int) -> str:
        return "/v4/jobGroups"

    def _body(self, target: int) -> dict[str, Any] | None:
        body: dict[str, Any] = {"wrangledDataset": {"id": target}}
        if self.overrides is not None:
            body["overrides"] = self.overrides
        if self.run_parameters is not None:
            body["runParameters"] = self.run_parameters
        return body

    def _run_id_from(self, data: Any) -> int | None:
        value = data.get("id") if isinstance(data, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class AACApiOperator(BaseOperator):
    """Call any ``/v4`` endpoint with a fresh token; returns the decoded JSON answer (XCom).

    Writes are not repeated after a 5xx or a lost answer unless ``headers`` carries
    ``x-execution-id``; a 429 is always retried (AAC refused before doing anything).
    Errors no retry can fix (a 404, a dead token chain, a wrong connection) fail the task
    without its retries; a rejected ``response_check`` keeps them.

    :param method: GET, POST, PUT, PATCH or DELETE.
    :param endpoint: a path starting with ``/v4/``, e.g. ``/v4/plans``.
    :param json: the JSON body.
    :param query_params: query arguments. (Not ``params``: BaseOperator owns that name and
        merges the DAG's Params into it, which would leak them into AAC requests.)
    :param headers: extra request headers.
    :param response_check: called with the decoded answer; False fails the task.
    """

    template_fields: Sequence[str] = ("aac_conn_id", "method", "endpoint", "json", "query_params", "headers")
    template_fields_renderers = {"json": "json", "query_params": "json", "headers": "json"}
    ui_color = "#cfe3ff"

    def __init__(
        self,
        *,
        method: str = "GET",
        endpoint: str,
        json: Any = None,
        query_params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        response_check: Callable[[Any], bool] | None = None,
        aac_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.method = method
        self.endpoint = endpoint
        self.json = json
        self.query_params = query_params
        self.headers = headers
        self.response_check = response_check
        self.aac_conn_id = aac_conn_id
        if not is_templated(endpoint):
            validate_api_path(endpoint)
        if not is_templated(method):
            self._method()

    def _method(self) -> str:
        method = self.method.upper() if isinstance(self.method, str) else self.method
        if method not in _METHODS:
            raise AACConfigError(f"method must be one of {', '.join(sorted(_METHODS))}, not {self.method!r}.")
        return str(method)

    def execute(self, context: Context) -> Any:
        with failing_fast():
            return self._call()

    def _call(self) -> Any:
        method, endpoint = self._method(), validate_api_path(self.endpoint)
        response = AACHook(self.aac_conn_id).request(
            method, endpoint, json=self.json, params=self.query_params, headers=self.headers
        )
        self.log.info("AAC answered %s to %s %s.", response.status_code, method, endpoint)
        if self.response_check is not None and not self.response_check(response.data):
            raise AACResponseCheckError(
                f"response_check rejected AAC's answer to {method} {endpoint} (status {response.status_code}). "
                "Look at the answer in this log or in AAC, and fix the call or the check."
            )
        return response.data
