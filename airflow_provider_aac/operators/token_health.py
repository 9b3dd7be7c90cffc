"""A task that warns, then fails, before the refresh token's own deadline runs out.

A failed task is what Airflow's alerting (email, callbacks, monitoring of failed runs)
already reports, so failing days ahead of the deadline is how a person hears about it
in time. The task also reports the bookkeeping the provider keeps in the connection, so
one log answers "is the token chain healthy, who refreshed it last, did a refresh die
half-way?" without anyone opening the connection and seeing its secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_aac.core.token_grant import text
from airflow_provider_aac.core.token_health import (
    HealthLevel,
    assess_refresh_deadline,
    check_thresholds,
    refresh_deadline,
)
from airflow_provider_aac.core.token_state import (
    GENERATION,
    IN_FLIGHT,
    LAST_INTERRUPTED,
    REFRESHED_AT,
    REFRESHED_BY,
    REFRESHED_MODE,
    InFlight,
    parse_utc_iso,
    utc_iso,
)
from airflow_provider_aac.errors import AACConfigError, AACTokenDeadlineError
from airflow_provider_aac.tokens.connection import (
    DEFAULT_CONN_ID,
    AACConnectionConfig,
    read_config,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

WarningCallback = Callable[[Any], None]


class AACTokenHealthOperator(BaseOperator):
    """Check the recorded refresh-token deadline and report the token chain's bookkeeping.

    Levels: ``ok`` and ``unknown`` (no deadline known) log at info and succeed; ``warn``
    (within ``warn_days``) logs a warning, calls ``on_warning_callback`` and succeeds;
    ``fail`` (within ``fail_days``, or past) fails the task without retries, so its
    ``on_failure_callback`` (a Slack or email notifier, say) runs. Returns the verdict and
    the bookkeeping as a dict (XCom) that never contains a token.

    The deadline is the connection's ``refresh_expires_at``; without one, the refresh
    token's own ``exp`` claim when the token is a JWT (the explicit setting wins). When
    the connection records the token family's absolute cap (``refresh_family_expires_at``,
    PingOne's rolling duration) and it comes first, the cap is the deadline.

    :param aac_conn_id: the ``aac`` connection.
    :param warn_days: days before the deadline from which to log a warning.
    :param fail_days: days before the deadline from which to fail.
    :param refresh_dag_id: the refresh DAG this check runs in, if any: a connection in
        single-writer mode whose ``refresh_dag_id`` names another DAG is reported, since
        its tasks would then ask a DAG that does not exist (or does not refresh) for tokens.
    :param on_warning_callback: a callable or notifier (``BaseNotifier``), or a list of them,
        called with the task's context when the check warns; the verdict is in the
        context as ``aac_token_health`` (the dict this task returns).
    """

    template_fields: Sequence[str] = ("aac_conn_id",)
    ui_color = "#e8f5d8"

    def __init__(
        self,
        *,
        aac_conn_id: str = DEFAULT_CONN_ID,
        warn_days: float = 14,
        fail_days: float = 3,
        refresh_dag_id: str | None = None,
        on_warning_callback: WarningCallback | Sequence[WarningCallback] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.on_warning_callback = _callbacks(on_warning_callback)
        self.warn_days, self.fail_days = check_thresholds(warn_days, fail_days)
        self.aac_conn_id = aac_conn_id
        self.refresh_dag_id = refresh_dag_id

    def execute(self, context: Context) -> dict[str, Any]:
        config = read_config(self.aac_conn_id)
        extra = config.extra
        now = time.time()
        deadline, source = refresh_deadline(extra, self.aac_conn_id)
        health = assess_refresh_deadline(
            deadline, now, self.warn_days, self.fail_days, conn_id=self.aac_conn_id, source=source
        )
        report: dict[str, Any] = {
            "conn_id": self.aac_conn_id,
            **health.as_dict(),
            "refresh_expires_at_source": source,
            **_bookkeeping(extra),
        }
        self._report_chain(report, extra, now)
        self._report_refresh_dag(config)
        if health.level is HealthLevel.FAIL:
            self.log.error("%s", health.message)
            raise AACTokenDeadlineError(health.message)
        if health.level is HealthLevel.WARN:
            self.log.warning("%s", health.message)
            self._warn(context, report)
        else:
            self.log.info("%s", health.message)
        return report

    def _warn(self, context: Context, report: dict[str, Any]) -> None:
        """Call each warning callback; one that fails is logged, and the others still run."""
        warned = {**context, "aac_token_health": report}
        for callback in self.on_warning_callback:
            try:
                callback(warned)
            except Exception:
                self.log.exception("The token health warning callback %r failed.", callback)

    def _report_chain(self, report: dict[str, Any], extra: dict[str, Any], now: float) -> None:
        refreshed = (
            f"last refreshed at {report['refreshed_at']} by {report['refreshed_by'] or 'unknown'} "
            f"in {report['refreshed_mode'] or 'an unrecorded'} mode"
            if report["refreshed_at"]
            else "not refreshed by the provider yet"
        )
        self.log.info(
            "AAC connection %r: token generation %d, %s.", self.aac_conn_id, report["generation"], refreshed
        )
        marker = InFlight.from_json(extra.get(IN_FLIGHT))
        if marker is not None and marker.lease_until > now:
            self.log.info("AAC connection %r: %s is still under way.", self.aac_conn_id, marker.describe())
        elif marker is not None:
            self.log.warning(
                "AAC connection %r: %s was interrupted (its lease ended at %s): it may have spent the refresh "
                "token without storing the new pair. The next refresh tries the stored token once; if that "
                "fails with invalid_grant, generate a new pair in AAC.",
                self.aac_conn_id,
                marker.describe(),
                utc_iso(marker.lease_until),
            )
        if report["last_interrupted_refresh"]:
            self.log.warning(
                "AAC connection %r: an earlier refresh was interrupted (%s) and no refresh has succeeded "
                "since. If the refresh task fails with invalid_grant, generate a new pair in AAC.",
                self.aac_conn_id,
                report["last_interrupted_refresh"],
            )

    def _report_refresh_dag(self, config: AACConnectionConfig) -> None:
        wanted = config.refresh_dag_id
        if self.refresh_dag_id is None or wanted == self.refresh_dag_id:
            return
        # Imported here: the token manager pulls in requests and the refresh machinery, which a
        # DAG file importing this operator does not need to parse.
        from airflow_provider_aac.tokens.manager import TokenManager

        if not TokenManager(self.aac_conn_id).tasks_wait_for_refresh_dag(config):
            return
        self.log.warning(
            "AAC connection %r names %r as its refresh DAG, but this is %r. In single-writer mode tasks "
            "ask %r for fresh tokens: set refresh_dag_id to %r in the connection's extra.",
            self.aac_conn_id,
            wanted,
            self.refresh_dag_id,
            wanted,
            self.refresh_dag_id,
        )


def _callbacks(value: Any) -> list[WarningCallback]:
    if value is None:
        return []
    callbacks = list(value) if isinstance(value, list | tuple) else [value]
    for callback in callbacks:
        if not callable(callback):
            raise AACConfigError(
                f"on_warning_callback must be a callable or a notifier (or a list of them), not {callback!r}."
            )
    return callbacks


def _bookkeeping(extra: dict[str, Any]) -> dict[str, Any]:
    """The provider's own keys, described; the token keys are never read here."""
    try:
        generation = int(extra.get(GENERATION) or 0)
    except (TypeError, ValueError):
        generation = 0
    refreshed_at = parse_utc_iso(extra.get(REFRESHED_AT))
    by = extra.get(REFRESHED_BY)
    marker = InFlight.from_json(extra.get(IN_FLIGHT))
    interrupted = InFlight.from_json(extra.get(LAST_INTERRUPTED))
    return {
        "generation": generation,
        "refreshed_at": None if refreshed_at is None else utc_iso(refreshed_at),
        "refreshed_by": by if isinstance(by, str) and by else None,
        "refreshed_mode": text(extra.get(REFRESHED_MODE)),
        "refresh_in_flight": None if marker is None else marker.describe(),
        "last_interrupted_refresh": None if interrupted is None else interrupted.describe(),
    }
