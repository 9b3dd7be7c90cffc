"""Operators that start AAC plans, flows and recipe jobs, call the API, and refresh tokens."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_aac.core.api import EXECUTION_ID_HEADER, ApiResponse, validate_api_path
from airflow_provider_aac.core.errors import AACConfigError, AACError
from airflow_provider_aac.core.token_state import RUN_LATENCY, refresh_threshold, seconds_left
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.links.aac import RUN_ID_XCOM_KEY, RUN_URL_XCOM_KEY, AACRunLink
from airflow_provider_aac.runs import (
    ENDPOINTS,
    MAX_CONSECUTIVE_POLL_ERRORS,
    AACRunError,
    AACRunOutcomeUnknownError,
    AACRunTimeoutError,
    PollErrors,
    RunKind,
    RunState,
    cancel,
    failure_error,
    get_status,
    is_templated,
    positive_int,
    positive_seconds,
    run_url,
    timeout_message,
)
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID, read_config
from airflow_provider_aac.tokens.manager import FORCE_GENERATION_CONF
from airflow_provider_aac.triggers.aac import AACRunTrigger

try:
    from airflow.sdk.configuration import conf
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.configuration import conf

try:
    from airflow.sdk.exceptions import AirflowException
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.exceptions import AirflowException

if TYPE_CHECKING:
    from airflow.sdk import Context

JOB_GROUP_IDS_XCOM_KEY = "job_group_ids"
DEFAULT_TIMEOUT = 7 * 24 * 3600.0
# The triggerer's own deadline is a backstop behind the trigger's end_time: long enough
# for the last poll, its retries and the cancel to finish first.
TRIGGER_TIMEOUT_MARGIN = 300.0
_EXECUTION_ID_NAMESPACE = uuid.UUID("1b6f2f3e-8a55-4c3e-9b7e-2f1a0aac0001")
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


def execution_id(context: Context, kind: RunKind, target_id: int) -> str:
    """The same for every send of one task try's run request, different for the next try.

    AAC answers a repeat of an ``x-execution-id`` with 304 instead of a second run, so
    the hook may retry the POST after a 5xx or a lost answer without starting two runs.
    """
    ti = context["ti"]
    key = "/".join(
        str(part)
        for part in (ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number, kind.value, target_id)
    )
    return str(uuid.uuid5(_EXECUTION_ID_NAMESPACE, key))


class AACRunOperatorBase(BaseOperator):
    """Start one AAC run, publish where it is, and (by default) wait for it to end.

    The run id and its AAC URL go to XCom (``run_id``, ``run_url``) before any waiting, so
    a downstream sensor or a person can follow the run even if this task is killed.

    :param aac_conn_id: the ``aac`` connection.
    :param wait_for_completion: wait for the run to end; otherwise return once it started.
    :param poll_interval: seconds between status checks (> 0).
    :param timeout: seconds from the run's start until the task gives up (> 0).
    :param deferrable: wait in the triggerer instead of holding a worker slot (default:
        ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the run in AAC when the task is killed.
    :param cancel_on_timeout: cancel the run in AAC when ``timeout`` passes.
    """

    kind: ClassVar[RunKind]
    id_field: ClassVar[str]
    ui_color = "#cfe3ff"
    operator_extra_links = (AACRunLink(),)
    max_poll_errors: int = MAX_CONSECUTIVE_POLL_ERRORS

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        poll_interval: float = 30.0,
        timeout: float = DEFAULT_TIMEOUT,
        deferrable: bool | None = None,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.timeout = positive_seconds(timeout, "timeout")
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.aac_run_id: int | None = None
        self.job_group_ids: list[int] = []
        self._run_url: str | None = None
        self._ended = False

    def _check_target(self, value: Any) -> None:
        if not is_templated(value):
            positive_int(value, self.id_field)

    def _target(self) -> int:
        return positive_int(getattr(self, self.id_field), self.id_field)

    # -- what differs per kind

    def _path(self, target: int) -> str:
        raise NotImplementedError

    def _body(self, target: int) -> dict[str, Any] | None:
        return None

    def _run_id_from(self, data: Any) -> int | None:
        raise NotImplementedError

    def _sends_execution_id(self) -> bool:
        return True

    def _publish(self, context: Context) -> None:
        """Push whatever else downstream tasks need before the wait starts."""

    # -- the run

    def execute(self, context: Context) -> int:
        target = self._target()
        hook = AACHook(self.aac_conn_id)
        path = self._path(target)
        headers = (
            {EXECUTION_ID_HEADER: execution_id(context, self.kind, target)}
            if self._sends_execution_id()
            else None
        )
        response = hook.request("POST", path, json=self._body(target), headers=headers)
        started = time.time()
        run_id = self._started_run(path, response)
        self.aac_run_id = run_id
        self._run_url = run_url(read_config(self.aac_conn_id), self.kind, run_id)
        ti = context["ti"]
        ti.xcom_push(key=RUN_ID_XCOM_KEY, value=run_id)
        ti.xcom_push(key=RUN_URL_XCOM_KEY, value=self._run_url)
        self._publish(context)
        self.log.info("Started AAC %s %s: %s", ENDPOINTS[self.kind].label, run_id, self._run_url)
        if not self.wait_for_completion:
            return run_id
        end_time = started + self.timeout
        errors = PollErrors(self.max_poll_errors)
        state = self._check(hook, run_id, errors)
        if state is not None and state.terminal:
            return self._finish(state)
        if self.deferrable:
            self.defer(
                trigger=AACRunTrigger(
                    kind=self.kind.value,
                    run_id=run_id,
                    aac_conn_id=self.aac_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=end_time,
                    cancel_on_timeout=self.cancel_on_timeout,
                    cancel_on_kill=self.cancel_on_kill,
                    run_url=self._run_url,
                    job_group_ids=self.job_group_ids,
                    max_poll_errors=self.max_poll_errors,
                ),
                method_name="execute_complete",
                timeout=timedelta(
                    seconds=max(0.0, end_time - time.time()) + TRIGGER_TIMEOUT_MARGIN + 2 * self.poll_interval
                ),
            )
        return self._poll(hook, run_id, end_time, errors)

    def _started_run(self, path: str, response: ApiResponse) -> int:
        if response.status_code == 304:
            raise AACRunOutcomeUnknownError(
                f"AAC answered 304 to POST {path}: this task try already started the run, but the "
                "answer naming it was lost. Airflow did not start another one. Find the run in AAC "
                "(it started moments ago) and follow it there; clear this task only if you want a second run."
            )
        run_id = self._run_id_from(response.data)
        if not 200 <= response.status_code < 300 or run_id is None:
            keys = sorted(response.data) if isinstance(response.data, dict) else type(response.data).__name__
            raise AACRunOutcomeUnknownError(
                f"AAC answered {response.status_code} to POST {path} without a run id (it sent {keys}). "
                "A run may have started: check in AAC before clearing this task, or it may run twice."
            )
        return run_id

    def _check(self, hook: AACHook, run_id: int, errors: PollErrors) -> RunState | None:
        """The run's state, or None after a transient error the budget still allows."""
        try:
            state = get_status(hook, self.kind, run_id)
        except AACError as err:
            errors.record(err, f"AAC {ENDPOINTS[self.kind].label} {run_id}")
            return None
        errors.reset()
        if state.status is None:
            self.log.info("%s reports status %r; still waiting.", state.describe(), state.raw)
        return state

    def _poll(self, hook: AACHook, run_id: int, end_time: float, errors: PollErrors) -> int:
        while True:
            remaining = end_time - time.time()
            if remaining <= 0:
                self._time_out(hook, run_id)
            time.sleep(min(self.poll_interval, remaining))
            state = self._check(hook, run_id, errors)
            if state is not None and state.terminal:
                return self._finish(state)

    def _time_out(self, hook: AACHook, run_id: int) -> None:
        canceled = self._cancel(hook, "timeout") if self.cancel_on_timeout else False
        self._ended = True
        raise AACRunTimeoutError(timeout_message(self.kind, run_id, self.timeout, self._run_url, canceled))

    def _finish(self, state: RunState) -> int:
        self._ended = True
        if state.succeeded:
            self.log.info("%s ended %s.", state.describe(), state.raw)
            return state.run_id
        raise failure_error(state, self._run_url)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> int:
        """Back from the trigger: its event says how the run ended."""
        run_id = int(event["run_id"])
        self.aac_run_id = run_id
        self._ended = True
        status = event.get("status")
        if status == "success":
            self.log.info("%s", event.get("message"))
            return run_id
        if status == "failed":
            state = RunState(self.kind, run_id, event.get("run_status"), event.get("aac_message"))
            raise failure_error(state, event.get("run_url"))
        if status == "timeout":
            raise AACRunTimeoutError(str(event.get("message")))
        raise AACRunError(str(event.get("message") or f"The trigger for AAC run {run_id} failed: {event}"))

    def _cancel(self, hook: AACHook, reason: str) -> bool:
        if self.aac_run_id is None:
            return False
        try:
            cancelled = cancel(hook, self.kind, self.aac_run_id, self.job_group_ids)
        except AACError as err:
            self.log.warning(
                "Could not cancel %s %s on %s: %s", self.kind.value, self.aac_run_id, reason, err
            )
            return False
        self.log.info("Canceled AAC %s %s (%s) on %s.", self.kind.value, self.aac_run_id, cancelled, reason)
        return True

    def on_kill(self) -> None:
        if self.cancel_on_kill and not self._ended:
            self._cancel(AACHook(self.aac_conn_id), "kill")


class AACRunPlanOperator(AACRunOperatorBase):
    """Run an AAC plan (``POST /v4/plans/{id}/run``); returns the ``planSnapshotRunId``.

    :param plan_id: the plan to run.
    :param plan_node_overrides: sent as ``planNodeOverrides`` when given.
    """

    kind = RunKind.PLAN
    id_field = "plan_id"
    template_fields: Sequence[str] = ("aac_conn_id", "plan_id", "plan_node_overrides")
    template_fields_renderers = {"plan_node_overrides": "json"}

    def __init__(
        self, *, plan_id: int | str, plan_node_overrides: list[Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.plan_id = plan_id
        self.plan_node_overrides = plan_node_overrides
        self._check_target(plan_id)

    def _path(self, target: int) -> str:
        return f"/v4/plans/{target}/run"

    def _body(self, target: int) -> dict[str, Any] | None:
        return None if self.plan_node_overrides is None else {"planNodeOverrides": self.plan_node_overrides}

    def _run_id_from(self, data: Any) -> int | None:
        value = data.get("planSnapshotRunId") if isinstance(data, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class AACRunFlowOperator(AACRunOperatorBase):
    """Run all outputs of an AAC flow (``POST /v4/flows/{id}/run``); returns the flow run id.

    The run's job group ids go to XCom under ``job_group_ids``. Flow runs have no cancel
    endpoint in AAC's API, so cancelling one cancels these job groups.

    :param flow_id: the flow to run.
    :param run_parameters: sent as ``runParameters`` when given.
    """

    kind = RunKind.FLOW
    id_field = "flow_id"
    template_fields: Sequence[str] = ("aac_conn_id", "flow_id", "run_parameters")
    template_fields_renderers = {"run_parameters": "json"}

    def __init__(
        self, *, flow_id: int | str, run_parameters: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.flow_id = flow_id
        self.run_parameters = run_parameters
        self._check_target(flow_id)

    def _path(self, target: int) -> str:
        return f"/v4/flows/{target}/run"

    def _body(self, target: int) -> dict[str, Any] | None:
        return None if self.run_parameters is None else {"runParameters": self.run_parameters}

    def _run_id_from(self, data: Any) -> int | None:
        if not isinstance(data, dict):
            return None
        groups = data.get("data")
        self.job_group_ids = [
            g["id"] for g in groups or [] if isinstance(g, dict) and isinstance(g.get("id"), int)
        ]
        value = data.get("flowRunId")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _publish(self, context: Context) -> None:
        context["ti"].xcom_push(key=JOB_GROUP_IDS_XCOM_KEY, value=self.job_group_ids)


class AACRunJobGroupOperator(AACRunOperatorBase):
    """Run a recipe's outputs (``POST /v4/jobGroups``); returns the job group id.

    AAC documents ``x-execution-id`` only for plan and flow runs, so this request goes
    without it and is never repeated after a 5xx or a lost answer (only after a 429,
    which AAC sends before doing anything); such a failure says to check AAC first.

    :param wrangled_dataset_id: the recipe (wrangled dataset) whose outputs to run.
    :param overrides: sent as ``overrides`` when given.
    :param run_parameters: sent as ``runParameters`` when given.
    """

    kind = RunKind.JOB_GROUP
    id_field = "wrangled_dataset_id"
    template_fields: Sequence[str] = ("aac_conn_id", "wrangled_dataset_id", "overrides", "run_parameters")
    template_fields_renderers = {"overrides": "json", "run_parameters": "json"}

    def __init__(
        self,
        *,
        wrangled_dataset_id: int | str,
        overrides: dict[str, Any] | None = None,
        run_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.wrangled_dataset_id = wrangled_dataset_id
        self.overrides = overrides
        self.run_parameters = run_parameters
        self._check_target(wrangled_dataset_id)

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

    def _sends_execution_id(self) -> bool:
        return False


class AACResponseCheckError(AACError, AirflowException):
    """``response_check`` rejected AAC's answer."""


class AACApiOperator(BaseOperator):
    """Call any ``/v4`` endpoint with a fresh token; returns the decoded JSON answer (XCom).

    Writes are not repeated after a 5xx or a lost answer unless ``headers`` carries
    ``x-execution-id``; a 429 is always retried (AAC refused before doing anything).

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


class AACRefreshTokenOperator(BaseOperator):
    """Refresh the connection's token pair ahead of need (or now, with ``force``).

    The single writer of single-writer mode: run it only from the shipped refresh DAG (one
    active run, a one-slot pool), never from several DAGs at once. Its threshold is not
    capped at half the token's lifetime as a task's ``min_ttl`` is: it must refresh before
    tasks start to need a refresh, or in single-writer mode they would wait for it. Below
    the threshold it forces a refresh, which the token manager still skips if another
    process stored a newer generation meanwhile. Returns what it did, without any token.

    :param min_ttl: refresh when the access token has fewer seconds left (default:
        :func:`~airflow_provider_aac.core.token_state.refresh_threshold` of the token's
        lifetime and ``run_interval``).
    :param force: refresh even if the access token is fresh.
    :param run_interval: the longest gap between runs of this task, in seconds, if known.
    """

    template_fields: Sequence[str] = ("aac_conn_id",)
    ui_color = "#e8d8ff"

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        min_ttl: float | None = None,
        force: bool = False,
        run_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.min_ttl = min_ttl
        self.force = force
        self.run_interval = run_interval

    def execute(self, context: Context) -> dict[str, object]:
        manager = AACHook(self.aac_conn_id).tokens
        config, state = manager.read()
        claims = state.claims(conn_id=self.aac_conn_id)
        lifetime = state.lifetime(claims)
        left = seconds_left(state, claims, time.time())
        threshold = (
            float(self.min_ttl)
            if self.min_ttl is not None
            else refresh_threshold(lifetime, self.run_interval or 0.0, task_min_ttl=config.min_ttl)
        )
        if lifetime and self.run_interval and lifetime / 2 < self.run_interval + RUN_LATENCY:
            self.log.warning(
                "AAC access tokens live %.0f s, but this task runs only every %.0f s: tasks may wait for "
                "a refresh. Schedule it more often (every %.0f s at most).",
                lifetime,
                self.run_interval,
                max(lifetime / 2 - RUN_LATENCY, 1.0),
            )
        asked = _forced_generation(context)
        if self.force or left < threshold:
            outcome = manager.refresh(force=True, as_writer=True)
        elif asked is not None and asked == state.generation:
            self.log.info("A task asked to replace generation %d, which AAC rejected; refreshing.", asked)
            outcome = manager.refresh(stale_generation=asked, as_writer=True)
        else:
            manager.ensure_refreshable(config, as_writer=True)
            outcome = manager.outcome(config, state, refreshed=False, as_writer=True)
        self.log.info(
            "AAC connection %r: access token had %s left; refreshing below %.1f s. %s",
            self.aac_conn_id,
            "no known time" if math.isinf(left) else f"{left:.1f} s",
            threshold,
            f"Stored generation {outcome.generation}." if outcome.refreshed else "No refresh needed.",
        )
        summary = outcome.as_dict()
        summary["seconds_left"] = None if math.isinf(left) else round(left, 3)
        summary["refresh_below"] = round(threshold, 3)
        return summary


def _forced_generation(context: Context) -> int | None:
    """The generation a task asked this run to replace (single-writer mode, after a 401)."""
    dag_run = context.get("dag_run")
    conf = getattr(dag_run, "conf", None) or {}
    value = conf.get(FORCE_GENERATION_CONF) if isinstance(conf, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
