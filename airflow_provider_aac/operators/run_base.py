"""What every AAC run operator does: start or resume one run, publish it, wait, report lineage.

The concrete operators (``operators/aac.py``) only say which endpoint starts their kind of
run and how its answer names the run.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aac import metrics
from airflow_provider_aac.core.api import EXECUTION_ID_HEADER, ApiResponse
from airflow_provider_aac.core.rate_limits import RUN_GATE
from airflow_provider_aac.errors import (
    AACNotFoundError,
    AACRunError,
    AACRunOutcomeUnknownError,
    AACRunTimeoutError,
    failing_fast,
)
from airflow_provider_aac.hooks.aac import DEFAULT_TIMEOUT as DEFAULT_REQUEST_TIMEOUT
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.parameters import check_name, positive_seconds
from airflow_provider_aac.operators.run_wait import (
    AACRunWaitMixin,
    default_deferrable,
)
from airflow_provider_aac.resume import RunRecord, RunResume
from airflow_provider_aac.run_targets import find_by_name
from airflow_provider_aac.runs import (
    ENDPOINTS,
    PollErrors,
    RunKind,
    RunState,
    cancel_or_warn,
    failure_error,
    get_status,
    run_url,
    timeout_message,
)
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID, read_config

if TYPE_CHECKING:
    from airflow.sdk import Context

JOB_GROUP_IDS_XCOM_KEY = "job_group_ids"
DEFAULT_TIMEOUT = 7 * 24 * 3600.0
_EXECUTION_ID_NAMESPACE = uuid.UUID("1b6f2f3e-8a55-4c3e-9b7e-2f1a0aac0001")


def execution_id(context: Context, kind: RunKind, target_id: int) -> str:
    """The same for every send of one task try's run request, different for the next try.

    AAC answers a repeat of an ``x-execution-id`` with 304 instead of a second run, so
    the hook may retry the POST after a 5xx or a lost answer without starting two runs.
    A retry that finds the previous try's request unanswered resends that try's id.
    """
    ti = context["ti"]
    key = "/".join(
        str(part)
        for part in (ti.dag_id, ti.task_id, ti.run_id, ti.map_index, ti.try_number, kind.value, target_id)
    )
    return str(uuid.uuid5(_EXECUTION_ID_NAMESPACE, key))


class AACRunOperatorBase(AACRunWaitMixin, BaseOperator):
    """Start one AAC run, publish where it is, and (by default) wait for it to end.

    The run id goes where the next try finds it, and with its AAC URL to XCom (``run_id``,
    ``run_url``), before any waiting. A retry (after a crash, a lost worker or a failed
    wait) attaches to a run still going, returns one that completed, and starts a new
    run only when the last one failed or was canceled; clearing the task starts a new
    one. See :mod:`airflow_provider_aac.resume` for where the run id is kept.

    :param aac_conn_id: the ``aac`` connection.
    :param wait_for_completion: wait for the run to end; otherwise return once it started.
    :param poll_interval: seconds between status checks (> 0).
    :param timeout: seconds a try waits for the run, from when it started or attached (> 0).
    :param deferrable: wait in the triggerer instead of holding a worker slot (default:
        ``[operators] default_deferrable``).
    :param cancel_on_kill: cancel the run in AAC when the task is killed. A worker shut
        down with SIGTERM kills its tasks too: with ``False`` the retry attaches instead.
    :param cancel_on_timeout: cancel the run in AAC when ``timeout`` passes.
    :param resume: let a retry attach to this task's earlier run (default True).
    :param retry_failed_runs: a run that AAC failed or canceled fails the task with its
        normal retries, each starting a new run (default); False fails it for good.
    :param request_timeout: seconds each HTTP request to AAC may take (> 0).
    """

    ui_color = "#cfe3ff"

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
        resume: bool = True,
        retry_failed_runs: bool = True,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.request_timeout = positive_seconds(request_timeout, "request_timeout")
        self.wait_for_completion = wait_for_completion
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.timeout = positive_seconds(timeout, "timeout")
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = cancel_on_timeout
        self.resume = resume
        self.retry_failed_runs = retry_failed_runs
        self.aac_run_id: int | None = None
        self.job_group_ids: list[int] = []
        self._run_url: str | None = None
        self._ended = False
        self._resume: RunResume | None = None
        self._run_started_at: float | None = None

    def _resolve_target(self, hook: AACHook) -> int:
        """The id given, or the id of the one object AAC lists under the name given."""
        assert self.name_field is not None
        name = getattr(self, self.name_field)
        if name is None:
            return self._given_id()
        target = find_by_name(hook, self.kind, check_name(name, self.name_field))
        self.log.info("%s %r is id %s in AAC.", self.name_field, name, target)
        return target

    def _hook(self) -> AACHook:
        return AACHook(self.aac_conn_id, timeout=self.request_timeout)

    # -- what differs per kind

    def _path(self, target: int) -> str:
        raise NotImplementedError

    def _body(self, target: int) -> dict[str, Any] | None:
        return None

    def _query(self) -> dict[str, str] | None:
        return None

    def _after_start(self, hook: AACHook, target: int, run_id: int) -> None:
        """Act on what the start answer said beyond the run id (raise to end the task)."""

    def _run_id_from(self, data: Any) -> int | None:
        raise NotImplementedError

    def _publish(self, context: Context) -> None:
        """Push whatever else downstream tasks need before the wait starts."""

    # -- the run

    def execute(self, context: Context) -> int:
        with failing_fast(run_failure_is_final=not self.retry_failed_runs):
            return self._execute(context)

    def _execute(self, context: Context) -> int:
        hook = self._hook()
        target = self._resolve_target(hook)
        context["ti"].xcom_push(key=self.id_field, value=target)
        self._resume = resume = RunResume.open(
            context, self.kind.value, target, enabled=self.resume, logger=self.log
        )
        previous = resume.previous()
        state = self._reattach(hook, previous) if previous is not None and previous.run_id else None
        if state is not None and previous is not None:
            run_id = state.run_id
            self.job_group_ids = list(previous.job_group_ids)
            resume.attached(previous)
        else:
            pending = previous is not None and previous.run_id is None
            ident = (
                previous.execution_id if pending and previous else execution_id(context, self.kind, target)
            )
            resume.begin(ident)
            run_id = self._start(hook, target, ident, from_earlier_try=pending)
            resume.started(run_id, self.job_group_ids)
            known_groups = list(self.job_group_ids)
            self._after_start(hook, target, run_id)
            if self.job_group_ids != known_groups:
                resume.started(run_id, self.job_group_ids)
        self.aac_run_id = run_id
        self._run_started_at = time.time()
        self._run_url = run_url(read_config(self.aac_conn_id), self.kind, run_id)
        self._publish_run(context, run_id, self._run_url)
        self._publish(context)
        verb = "Attached to" if state is not None else "Started"
        self.log.info("%s AAC %s %s: %s", verb, ENDPOINTS[self.kind].label, run_id, self._run_url)
        if not self.wait_for_completion:
            self._run_done()
            return run_id
        if state is not None and state.terminal:
            return self._finish(state)
        end_time = time.time() + self.timeout
        errors = PollErrors(self.max_poll_errors)
        state = self._check(hook, run_id, errors)
        if state is not None and state.terminal:
            return self._finish(state)
        if self.deferrable:
            self._defer_to_trigger(
                run_id=run_id,
                poll_interval=self.poll_interval,
                end_time=end_time,
                run_url=self._run_url,
                cancel_on_timeout=self.cancel_on_timeout,
                cancel_on_kill=self.cancel_on_kill,
                job_group_ids=self.job_group_ids,
                first_poll_at=time.time() + self.poll_interval,
                kwargs={"run_started_at": self._run_started_at, "target": target},
            )
        return self._poll(hook, run_id, end_time, errors)

    def _reattach(self, hook: AACHook, record: RunRecord) -> RunState | None:
        """The earlier try's run if it is going or completed; None when a new run must start."""
        assert record.run_id is not None
        what = self._describe(record.run_id)
        try:
            state = get_status(hook, self.kind, record.run_id)
        except AACNotFoundError:
            self.log.warning(
                "Try %s started %s, which AAC no longer knows: starting a new run.", record.try_number, what
            )
            return None
        if state.terminal and not state.succeeded:
            self.log.info(
                "Try %s started %s, which ended %s: starting a new run.", record.try_number, what, state.raw
            )
            return None
        if state.succeeded:
            self.log.info(
                "Try %s started %s, which completed: not running it again.", record.try_number, what
            )
        return state

    def _start(self, hook: AACHook, target: int, ident: str, *, from_earlier_try: bool) -> int:
        path = self._path(target)
        gate = f"{hook.base_url} {path.split('/')[2]}"
        wait = RUN_GATE.wait_time(gate)
        if wait > 0:
            self.log.info("AAC's rate limit for %s resets in %.1f s; waiting for it.", path, wait)
            time.sleep(wait)
        response = hook.request(
            "POST", path, json=self._body(target), params=self._query(), headers={EXECUTION_ID_HEADER: ident}
        )
        RUN_GATE.observe(gate, response.headers)
        return self._started_run(path, response, from_earlier_try)

    def _started_run(self, path: str, response: ApiResponse, from_earlier_try: bool = False) -> int:
        if response.status_code == 304:
            who = "an earlier try of this task" if from_earlier_try else "this task try"
            raise AACRunOutcomeUnknownError(
                f"AAC answered 304 to POST {path}: {who} already started the run, but the "
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
        if canceled:
            self._run_done()
        self._measure("timeout")
        raise AACRunTimeoutError(timeout_message(self.kind, run_id, self.timeout, self._run_url, canceled))

    def _finish(self, state: RunState) -> int:
        self._ended = True
        self._run_done()
        self._measure("success" if state.succeeded else "failed")
        if state.succeeded:
            self.log.info("%s ended %s.", state.describe(), state.raw)
            return state.run_id
        raise failure_error(state, self._run_url)

    def _run_done(self) -> None:
        if self._resume is not None:
            self._resume.done()

    def _measure(self, outcome: str) -> None:
        started = self._run_started_at
        metrics.run_finished(self.kind.value, outcome, None if started is None else time.time() - started)

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any],
        run_started_at: float | None = None,
        target: int | None = None,
    ) -> int:
        """Back from the trigger: its event says how the run ended."""
        self._run_started_at = run_started_at
        with failing_fast(run_failure_is_final=not self.retry_failed_runs):
            return self._complete(context, event, target)

    def _complete(self, context: Context, payload: dict[str, Any], target: int | None = None) -> int:
        from airflow_provider_aac.triggers.aac import RunEvent

        event = RunEvent.from_payload(payload)
        if event.run_id is None:
            raise AACRunError(f"The trigger's event names no AAC run: {payload}")
        run_id = event.run_id
        self.aac_run_id = run_id
        self._run_url = event.run_url
        self.job_group_ids = list(event.job_group_ids)
        self._ended = True
        status = event.status
        self._measure(status if status in ("success", "failed", "timeout") else "error")
        if status in ("success", "failed") or (status == "timeout" and event.canceled):
            # Deferrals from before name lookups carry no target: their operators had ids.
            self._resume = RunResume.open(
                context,
                self.kind.value,
                self._given_id() if target is None else target,
                enabled=self.resume,
                logger=self.log,
            )
            self._run_done()
        self._raise_for_event(payload, run_id, AACRunTimeoutError)
        return run_id

    def _cancel(self, hook: AACHook, reason: str) -> bool:
        if self.aac_run_id is None:
            return False
        return cancel_or_warn(hook, self.kind, self.aac_run_id, self.job_group_ids, reason)

    def on_kill(self) -> None:
        if self.cancel_on_kill and not self._ended:
            self._cancel(self._hook(), "kill")

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Datasets the run's job groups read and wrote, and the run's id and URL (OpenLineage).

        Called by the OpenLineage provider's listener after the task ends, on the operator
        that ran it (in deferrable mode the one that ran ``execute_complete``).
        """
        from airflow_provider_aac.lineage import operator_lineage

        return operator_lineage(
            AACHook(self.aac_conn_id), self.kind, self.aac_run_id, self._run_url, self.job_group_ids
        )


__all__ = ["JOB_GROUP_IDS_XCOM_KEY", "AACRunOperatorBase", "execution_id"]
