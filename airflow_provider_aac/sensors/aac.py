"""Sensors that wait for an AAC run someone else started: a plan run, a flow run, a job group."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator

from airflow_provider_aac.compat import AirflowSensorTimeout, conf
from airflow_provider_aac.errors import AACError, AACRunError
from airflow_provider_aac.failures import failing_fast, final
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.links.aac import RUN_ID_XCOM_KEY, RUN_URL_XCOM_KEY, AACRunLink
from airflow_provider_aac.runs import (
    ENDPOINTS,
    MAX_CONSECUTIVE_POLL_ERRORS,
    PollErrors,
    RunKind,
    RunState,
    failure_error,
    get_status,
    is_templated,
    positive_int,
    positive_seconds,
    run_url,
)
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID, read_config

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

TRIGGER_TIMEOUT_MARGIN = 300.0


class AACRunSensorBase(BaseSensorOperator):
    """Succeeds when the run is Complete; fails at once when it is Failed or Canceled, or unknown (404).

    Those failures skip the task's retries: a retry would watch the same failed run, or ask
    for the same unknown one, again. Transient AAC errors keep them.

    Works in poke, reschedule and deferrable modes. The sensor's own ``timeout`` is the
    deadline; in deferrable mode it is fixed as an absolute time when the sensor starts. A
    sensor only watches: it never cancels the run, on kill or on timeout. A few transient
    AAC errors in a row are tolerated (counted per worker process in reschedule mode).

    :param aac_conn_id: the ``aac`` connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    kind: ClassVar[RunKind]
    id_field: ClassVar[str]
    ui_color = "#e4f0ff"
    operator_extra_links = (AACRunLink(),)
    max_poll_errors: int = MAX_CONSECUTIVE_POLL_ERRORS

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.deferrable = (
            conf.getboolean("operators", "default_deferrable", fallback=False)
            if deferrable is None
            else deferrable
        )
        positive_seconds(self.poke_interval, "poke_interval")
        positive_seconds(self.timeout, "timeout")
        self._errors = PollErrors(self.max_poll_errors)
        self._url: str | None = None

    def _check_target(self, value: Any) -> None:
        if not is_templated(value):
            positive_int(value, self.id_field)

    @property
    def aac_run_id(self) -> int:
        return positive_int(getattr(self, self.id_field), self.id_field)

    def execute(self, context: Context) -> Any:
        with failing_fast(run_failure_is_final=True):
            return self._execute(context)

    def _execute(self, context: Context) -> Any:
        run_id = self.aac_run_id
        self._url = run_url(read_config(self.aac_conn_id), self.kind, run_id)
        context["ti"].xcom_push(key=RUN_ID_XCOM_KEY, value=run_id)
        context["ti"].xcom_push(key=RUN_URL_XCOM_KEY, value=self._url)
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        end_time = time.time() + self.timeout
        # Imported here: the trigger pulls in Airflow's trigger machinery, which only a deferral needs.
        from airflow_provider_aac.triggers.aac import AACRunTrigger

        self.defer(
            trigger=AACRunTrigger(
                kind=self.kind.value,
                run_id=run_id,
                aac_conn_id=self.aac_conn_id,
                poll_interval=self.poke_interval,
                end_time=end_time,
                cancel_on_timeout=False,
                cancel_on_kill=False,
                run_url=self._url,
                max_poll_errors=self.max_poll_errors,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + TRIGGER_TIMEOUT_MARGIN + 2 * self.poke_interval),
        )

    def poke(self, context: Context) -> bool:
        what = f"AAC {ENDPOINTS[self.kind].label} {self.aac_run_id}"
        try:
            state = get_status(AACHook(self.aac_conn_id), self.kind, self.aac_run_id)
        except AACError as err:
            self._errors.record(err, what)
            return False
        self._errors.reset()
        self.log.info("%s is %s.", what, state.raw)
        if state.failed:
            raise failure_error(state, self._url)
        return state.succeeded

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        with failing_fast(run_failure_is_final=True):
            self._complete(event)

    def _complete(self, payload: dict[str, Any]) -> None:
        from airflow_provider_aac.triggers.aac import RunEvent

        event = RunEvent.from_payload(payload)
        status = event.status
        if status == "success":
            self.log.info("%s", event.message)
            return
        if status == "failed":
            run_id = self.aac_run_id if event.run_id is None else event.run_id
            state = RunState(self.kind, run_id, event.run_status, event.aac_message)
            raise failure_error(state, event.run_url)
        if status == "timeout":
            raise AirflowSensorTimeout(str(event.message))
        error = AACRunError(str(event.message or f"The trigger for AAC run {event.run_id} failed."))
        raise final(error) if event.retryable is False else error


class AACPlanRunSensor(AACRunSensorBase):
    """Wait for a plan run (``GET /v4/planSnapshotRuns/{id}``).

    :param plan_snapshot_run_id: the run, e.g. ``"{{ ti.xcom_pull('run_plan') }}"``.
    """

    kind = RunKind.PLAN
    id_field = "plan_snapshot_run_id"
    template_fields: Sequence[str] = ("aac_conn_id", "plan_snapshot_run_id")

    def __init__(self, *, plan_snapshot_run_id: int | str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan_snapshot_run_id = plan_snapshot_run_id
        self._check_target(plan_snapshot_run_id)


class AACFlowRunSensor(AACRunSensorBase):
    """Wait for a flow run (``GET /v4/flowRuns/{id}/status``).

    :param flow_run_id: the flow run.
    """

    kind = RunKind.FLOW
    id_field = "flow_run_id"
    template_fields: Sequence[str] = ("aac_conn_id", "flow_run_id")

    def __init__(self, *, flow_run_id: int | str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flow_run_id = flow_run_id
        self._check_target(flow_run_id)


class AACJobGroupSensor(AACRunSensorBase):
    """Wait for a job group (``GET /v4/jobGroups/{id}/status``).

    :param job_group_id: the job group.
    """

    kind = RunKind.JOB_GROUP
    id_field = "job_group_id"
    template_fields: Sequence[str] = ("aac_conn_id", "job_group_id")

    def __init__(self, *, job_group_id: int | str | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_group_id = job_group_id
        self._check_target(job_group_id)
