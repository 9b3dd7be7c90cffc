"""What the run operators and the run sensors share: checking a run, deferring, and reading the trigger's event.

Both wait for one AAC run, in a worker or in the triggerer (``AACRunTrigger``), so the
deferrable default, the triggerer's backstop deadline and the meaning of each event are
decided here once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow_provider_aac.compat import conf
from airflow_provider_aac.errors import AACError, AACRunError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.links.aac import RUN_ID_XCOM_KEY, RUN_URL_XCOM_KEY, AACRunLink
from airflow_provider_aac.operators.parameters import check_id_or_name, is_templated, positive_int
from airflow_provider_aac.runs import (
    ENDPOINTS,
    MAX_CONSECUTIVE_POLL_ERRORS,
    PollErrors,
    RunKind,
    RunState,
    failure_error,
    get_status,
)

if TYPE_CHECKING:
    from airflow.sdk import BaseOperatorLink, Context
    from airflow.triggers.base import BaseTrigger

# The triggerer's own deadline is a backstop behind the trigger's end_time: long enough
# for the last poll, its retries and the cancel to finish first.
TRIGGER_TIMEOUT_MARGIN = 300.0


def default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class AACRunWaitMixin:
    """Mixed into ``BaseOperator`` subclasses that wait for one AAC run of ``kind``.

    ``id_field`` names the argument that holds the run's target (or the run itself, for a
    sensor); ``name_field``, when set, an argument that may name the target instead.
    """

    kind: ClassVar[RunKind]
    id_field: ClassVar[str]
    name_field: ClassVar[str | None] = None
    operator_extra_links: Collection[BaseOperatorLink] = (AACRunLink(),)
    max_poll_errors: int = MAX_CONSECUTIVE_POLL_ERRORS

    aac_conn_id: str
    if TYPE_CHECKING:  # from BaseOperator

        @property
        def log(self) -> Any: ...

        def defer(
            self,
            *,
            trigger: BaseTrigger,
            method_name: str,
            kwargs: dict[str, Any] | None = None,
            timeout: timedelta | int | float | None = None,
        ) -> NoReturn: ...

    def _check_target(self) -> None:
        """Fail at parse time on an id (or name) that can never work; templates are checked at run time."""
        value = getattr(self, self.id_field)
        if self.name_field is not None:
            check_id_or_name(value, getattr(self, self.name_field), self.id_field, self.name_field)
        elif not is_templated(value):
            positive_int(value, self.id_field)

    def _given_id(self) -> int:
        return positive_int(getattr(self, self.id_field), self.id_field)

    def _describe(self, run_id: int) -> str:
        return f"AAC {ENDPOINTS[self.kind].label} {run_id}"

    def _publish_run(self, context: Context, run_id: int, url: str) -> None:
        ti = context["ti"]
        ti.xcom_push(key=RUN_ID_XCOM_KEY, value=run_id)
        ti.xcom_push(key=RUN_URL_XCOM_KEY, value=url)

    def _check(self, hook: AACHook, run_id: int, errors: PollErrors) -> RunState | None:
        """The run's state, or None after a retryable error the budget still allows."""
        try:
            state = get_status(hook, self.kind, run_id)
        except AACError as err:
            errors.record(err, self._describe(run_id))
            return None
        errors.reset()
        if state.status is None:
            self.log.info("%s reports status %r; still waiting.", state.describe(), state.raw)
        return state

    def _defer_to_trigger(
        self,
        *,
        run_id: int,
        poll_interval: float,
        end_time: float,
        run_url: str | None,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = False,
        job_group_ids: Sequence[int] = (),
        first_poll_at: float | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> NoReturn:
        # Imported here: the trigger pulls in Airflow's trigger machinery, which only a deferral needs.
        from airflow_provider_aac.triggers.aac import AACRunTrigger

        self.defer(
            trigger=AACRunTrigger(
                kind=self.kind.value,
                run_id=run_id,
                aac_conn_id=self.aac_conn_id,
                poll_interval=poll_interval,
                end_time=end_time,
                cancel_on_timeout=cancel_on_timeout,
                cancel_on_kill=cancel_on_kill,
                run_url=run_url,
                job_group_ids=list(job_group_ids),
                max_poll_errors=self.max_poll_errors,
                first_poll_at=first_poll_at,
            ),
            method_name="execute_complete",
            kwargs=dict(kwargs) if kwargs else None,
            timeout=timedelta(
                seconds=max(0.0, end_time - time.time()) + TRIGGER_TIMEOUT_MARGIN + 2 * poll_interval
            ),
        )

    def _raise_for_event(
        self, payload: Mapping[str, Any], run_id: int, timed_out: Callable[[str], Exception]
    ) -> None:
        """Return if the trigger's event says the run completed; raise what its end means otherwise."""
        from airflow_provider_aac.triggers.aac import RunEvent

        event = RunEvent.from_payload(payload)
        if event.status == "success":
            self.log.info("%s", event.message)
            return
        if event.status == "failed":
            raise failure_error(
                RunState(self.kind, run_id, event.run_status, event.aac_message), event.run_url
            )
        if event.status == "timeout":
            raise timed_out(str(event.message))
        error = AACRunError(str(event.message or f"The trigger for AAC run {run_id} failed: {dict(payload)}"))
        if event.retryable is False:
            error.retryable = False
        raise error


__all__ = ["TRIGGER_TIMEOUT_MARGIN", "AACRunWaitMixin", "default_deferrable"]
