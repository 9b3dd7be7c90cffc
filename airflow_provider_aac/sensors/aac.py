"""Sensors that wait for an AAC run someone else started: a plan run, a flow run, a job group."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

from airflow_provider_aac.compat import AirflowSensorTimeout
from airflow_provider_aac.errors import failing_fast
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.operators.parameters import positive_seconds
from airflow_provider_aac.operators.run_wait import AACRunWaitMixin, default_deferrable
from airflow_provider_aac.runs import PollErrors, RunKind, failure_error, run_url
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID, read_config

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg


class AACRunSensorBase(AACRunWaitMixin, BaseSensorOperator):
    """Succeeds when the run is Complete; fails at once when it is Failed or Canceled, or unknown (404).

    Those failures skip the task's retries: a retry would watch the same failed run, or ask
    for the same unknown one, again. Retryable AAC errors keep them.

    Works in poke, reschedule and deferrable modes. The sensor's own ``timeout`` is the
    deadline; in deferrable mode it is fixed as an absolute time when the sensor starts. A
    sensor only watches: it never cancels the run, on kill or on timeout. A few retryable
    AAC errors in a row are tolerated (counted per worker process in reschedule mode).

    :param aac_conn_id: the ``aac`` connection.
    :param deferrable: wait in the triggerer instead of a worker slot.
    """

    ui_color = "#e4f0ff"

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        positive_seconds(self.poke_interval, "poke_interval")
        positive_seconds(self.timeout, "timeout")
        self._errors = PollErrors(self.max_poll_errors)
        self._url: str | None = None

    @property
    def aac_run_id(self) -> int:
        return self._given_id()

    def execute(self, context: Context) -> Any:
        with failing_fast(run_failure_is_final=True):
            return self._execute(context)

    def _execute(self, context: Context) -> Any:
        run_id = self.aac_run_id
        self._url = run_url(read_config(self.aac_conn_id), self.kind, run_id)
        self._publish_run(context, run_id, self._url)
        if not self.deferrable:
            return super().execute(context)
        if self.poke(context):
            return None
        self._defer_to_trigger(
            run_id=run_id,
            poll_interval=self.poke_interval,
            end_time=time.time() + self.timeout,
            run_url=self._url,
        )

    def poke(self, context: Context) -> bool:
        state = self._check(AACHook(self.aac_conn_id), self.aac_run_id, self._errors)
        if state is None:
            return False
        self.log.info("%s is %s.", state.describe(), state.raw)
        if state.failed:
            raise failure_error(state, self._url)
        return state.succeeded

    def execute_complete(self, context: Context, event: dict[str, Any]) -> None:
        with failing_fast(run_failure_is_final=True):
            run_id = event.get("run_id")
            self._raise_for_event(
                event, self.aac_run_id if run_id is None else int(run_id), AirflowSensorTimeout
            )


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
        self._check_target()


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
        self._check_target()


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
        self._check_target()
