"""Waiting for an AAC run in the triggerer, for deferrable operators and sensors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent
from asgiref.sync import sync_to_async

from airflow_provider_aac.compat import TRIGGERER_CALLS_ON_KILL
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.runs import (
    ENDPOINTS,
    MAX_CONSECUTIVE_POLL_ERRORS,
    PollErrors,
    RunKind,
    RunState,
    acancel_or_warn,
    aget_status,
    timeout_message,
)
from airflow_provider_aac.tokens.connection import DEFAULT_CONN_ID


@dataclass(frozen=True)
class RunEvent:
    """How an AAC run's wait ended: the payload of the event :class:`AACRunTrigger` fires.

    The triggerer stores events as JSON in the metadata database, so the payload's keys and
    values are a wire format: an event written by an earlier version must still parse.
    ``retryable`` is set (and sent) only for an ``error`` event.
    """

    status: str
    run_id: int | None
    kind: str | None = None
    message: str | None = None
    run_status: str | None = None
    aac_message: str | None = None
    canceled: bool = False
    run_url: str | None = None
    job_group_ids: tuple[int, ...] = ()
    retryable: bool | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "status": self.status,
            "kind": self.kind,
            "run_id": self.run_id,
            "run_status": self.run_status,
            "aac_message": self.aac_message,
            "message": self.message,
            "canceled": self.canceled,
            "run_url": self.run_url,
            "job_group_ids": list(self.job_group_ids),
        }
        if self.retryable is not None:
            payload["retryable"] = self.retryable
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RunEvent:
        retryable, run_id = payload.get("retryable"), payload.get("run_id")
        return cls(
            status=str(payload.get("status") or ""),
            run_id=None if run_id is None else int(run_id),
            kind=payload.get("kind"),
            message=payload.get("message"),
            run_status=payload.get("run_status"),
            aac_message=payload.get("aac_message"),
            canceled=bool(payload.get("canceled")),
            run_url=payload.get("run_url"),
            job_group_ids=tuple(int(i) for i in payload.get("job_group_ids") or ()),
            retryable=None if retryable is None else bool(retryable),
        )


class AACRunTrigger(BaseTrigger):
    """Polls one AAC run until it ends or ``end_time`` passes, then fires one event.

    ``end_time`` is an absolute epoch time, so the deadline survives the defer boundary and
    triggerer restarts. Every poll gets a fresh access token from the hook. A few
    consecutive transient failures are tolerated; more end the wait with an ``error`` event.

    On a user kill the remote run is cancelled (``cancel_on_kill``): on Airflow 3.3+ via
    ``on_kill``, which the triggerer calls only for a user action; on older Airflow 3 via
    ``cleanup``, and only once the task instance is no longer DEFERRED, as the Google and
    Amazon providers decide it, so a triggerer restart never cancels a run.

    What the trigger relies on Airflow for is stated at class level, so that a subclass can
    state another Airflow's behaviour (the tests drive the pre-3.3 path on 3.3 that way):
    ``triggerer_calls_on_kill``, and ``read_task_state``, how ``cleanup`` learns the task
    instance's state.

    ``first_poll_at`` (epoch time) holds the first poll until the operator's own check is one
    ``poll_interval`` old, so no event fires moments after the deferral, where Airflow's
    scheduler can fail the task; a restarted trigger past that time polls at once.

    Events are :class:`RunEvent` payloads: ``{"status": "success" | "failed" | "timeout" |
    "error", "kind", "run_id", "run_status", "aac_message", "message", "canceled", "run_url",
    "job_group_ids"}``; an ``error`` event also says whether a task retry could help
    (``retryable``).
    """

    #: Whether the triggerer calls ``on_kill`` for a user's stop only (Airflow 3.3+); else ``cleanup`` decides.
    triggerer_calls_on_kill: ClassVar[bool] = TRIGGERER_CALLS_ON_KILL

    @staticmethod
    async def read_task_state(ti: Any) -> str | None:
        """The task instance's state as the triggerer's supervisor reports it (Airflow's Task SDK)."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = await sync_to_async(RuntimeTaskInstance.get_task_states)(
            dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
        )
        state = states.get(ti.run_id, {}).get(ti.task_id)
        return None if state is None else str(getattr(state, "value", state))

    def __init__(
        self,
        kind: str,
        run_id: int,
        aac_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        end_time: float | None = None,
        cancel_on_timeout: bool = True,
        cancel_on_kill: bool = True,
        run_url: str | None = None,
        job_group_ids: Sequence[int] | None = None,
        max_poll_errors: int = MAX_CONSECUTIVE_POLL_ERRORS,
        first_poll_at: float | None = None,
    ) -> None:
        super().__init__()
        self.kind = RunKind(kind)
        self.run_id = int(run_id)
        self.aac_conn_id = aac_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time) if end_time is not None else time.time() + 7 * 24 * 3600.0
        self.cancel_on_timeout = bool(cancel_on_timeout)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.run_url = run_url
        self.job_group_ids = [int(i) for i in job_group_ids or ()]
        self.max_poll_errors = int(max_poll_errors)
        self.first_poll_at = float(first_poll_at) if first_poll_at is not None else None
        self._finished = False

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kind": self.kind.value,
                "run_id": self.run_id,
                "aac_conn_id": self.aac_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_timeout": self.cancel_on_timeout,
                "cancel_on_kill": self.cancel_on_kill,
                "run_url": self.run_url,
                "job_group_ids": list(self.job_group_ids),
                "max_poll_errors": self.max_poll_errors,
                "first_poll_at": self.first_poll_at,
            },
        )

    def _event(
        self,
        status: str,
        message: str,
        state: RunState | None = None,
        *,
        canceled: bool = False,
        retryable: bool | None = None,
    ) -> TriggerEvent:
        self._finished = True
        event = RunEvent(
            status=status,
            kind=self.kind.value,
            run_id=self.run_id,
            message=message,
            run_status=state.raw if state else None,
            aac_message=state.message if state else None,
            canceled=canceled,
            run_url=self.run_url,
            job_group_ids=tuple(self.job_group_ids),
            retryable=retryable,
        )
        return TriggerEvent(event.to_payload())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = AACHook(self.aac_conn_id)
        errors = PollErrors(self.max_poll_errors)
        what = f"AAC {ENDPOINTS[self.kind].label} {self.run_id}"
        if self.first_poll_at is not None:
            # The operator checked the run just before deferring. An event fired seconds after a
            # deferral can be failed by Airflow's scheduler (apache/airflow#66374, #67287, #72716),
            # so the first poll waits the normal interval after that check.
            await asyncio.sleep(max(0.0, min(self.first_poll_at, self.end_time) - time.time()))
        while True:
            try:
                state = await aget_status(hook, self.kind, self.run_id)
            except AACError as err:
                try:
                    errors.record(err, what)
                except AACError as final:
                    yield self._event("error", str(final), retryable=final.retryable)
                    return
            else:
                errors.reset()
                if state.terminal:
                    status = "success" if state.succeeded else "failed"
                    yield self._event(status, f"{state.describe()} ended {state.raw}.", state)
                    return
                if state.status is None:
                    self.log.info("%s reports status %r; still waiting.", state.describe(), state.raw)
            remaining = self.end_time - time.time()
            if remaining <= 0:
                canceled = await self._cancel(hook, "timeout") if self.cancel_on_timeout else False
                message = timeout_message(self.kind, self.run_id, None, self.run_url, canceled)
                yield self._event("timeout", message, canceled=canceled)
                return
            await asyncio.sleep(min(self.poll_interval, remaining))

    async def _cancel(self, hook: AACHook, reason: str) -> bool:
        return await acancel_or_warn(hook, self.kind, self.run_id, self.job_group_ids, reason)

    async def on_kill(self) -> None:
        """Airflow 3.3+: the user stopped the task (mark failed/success, clear)."""
        if self.cancel_on_kill and not self._finished:
            await self._cancel(AACHook(self.aac_conn_id), "kill")

    async def cleanup(self) -> None:
        """Before Airflow 3.3: cancel only when the task instance is really being stopped."""
        if (
            self.triggerer_calls_on_kill
            or not self.cancel_on_kill
            or self._finished
            or not self.task_instance
        ):
            return
        try:
            state = await self.read_task_state(self.task_instance)
        except Exception as err:
            self.log.warning("Not canceling the AAC run: could not read the task's state: %s", err)
            return
        if state is not None and str(state) != "deferred":
            await self._cancel(AACHook(self.aac_conn_id), f"task state {state}")
