"""The one place that knows how AAC reports and stops a run of each kind.

Operators, sensors and triggers all read statuses and cancel runs through here, so a
fix to an endpoint or to what counts as a failure lands everywhere at once. Each
exchange with AAC is written once, without IO, as a generator of effects
(``core.exchange``) that ``yield from`` its ``/v4`` calls, and is driven by the hook's one
sync (``AACHook.run_exchange``) or async (``AACHook.arun_exchange``) driver, so the worker
path and the triggerer path cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_aac.core.api import api_call
from airflow_provider_aac.core.api_contract import FAILURE_MESSAGE_FIELDS
from airflow_provider_aac.core.errors import reworded
from airflow_provider_aac.core.exchange import Exchange
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.status import FAILURE_STATUSES, SUCCESS_STATUSES, AACRunStatus
from airflow_provider_aac.errors import (
    AACApiError,
    AACConfigError,
    AACError,
    AACRunError,
    AACRunFailedError,
)
from airflow_provider_aac.tokens.connection import AACConnectionConfig

if TYPE_CHECKING:
    from airflow_provider_aac.hooks.aac import AACHook

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_POLL_ERRORS = 3
FLOW_RUN_JOB_GROUPS = "/v4/flowRuns/{id}/jobGroups"


class RunKind(str, Enum):
    PLAN = "plan"
    FLOW = "flow"
    JOB_GROUP = "job_group"


@dataclass(frozen=True)
class _Endpoints:
    label: str
    detail_path: str
    status_path: str | None  # None: the status is the ``status`` field of the detail
    cancel_path: str | None  # None: cancel the run's job groups instead
    url_key: str
    default_url: str


# The UI paths in ``default_url`` are not documented by Alteryx: they are guesses, which is
# why each one can be replaced in the connection's extra (see ``run_url``).
ENDPOINTS: Mapping[RunKind, _Endpoints] = {
    RunKind.PLAN: _Endpoints(
        label="plan run",
        detail_path="/v4/planSnapshotRuns/{id}",
        status_path=None,
        cancel_path="/v4/planSnapshotRuns/{id}/cancel",
        url_key="plan_run_url",
        default_url="{base_url}/plan-runs/{run_id}",
    ),
    RunKind.FLOW: _Endpoints(
        label="flow run",
        detail_path="/v4/flowRuns/{id}",
        status_path="/v4/flowRuns/{id}/status",
        cancel_path=None,
        url_key="flow_run_url",
        default_url="{base_url}/flow-runs/{run_id}",
    ),
    RunKind.JOB_GROUP: _Endpoints(
        label="job group",
        detail_path="/v4/jobGroups/{id}",
        status_path="/v4/jobGroups/{id}/status",
        cancel_path="/v4/jobGroups/{id}/cancel",
        url_key="job_group_url",
        default_url="{base_url}/jobs/{run_id}",
    ),
}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RunState:
    """A run's status as AAC reported it, plus AAC's own failure message if it gave one."""

    kind: RunKind
    run_id: int
    raw: str | None
    message: str | None = None

    @property
    def status(self) -> AACRunStatus | None:
        return AACRunStatus.parse(self.raw)

    @property
    def terminal(self) -> bool:
        return self.status is not None and self.status.is_terminal

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_STATUSES

    def describe(self) -> str:
        return f"AAC {ENDPOINTS[self.kind].label} {self.run_id}"


def run_url(config: AACConnectionConfig, kind: RunKind, run_id: int) -> str:
    """Where the run is shown in AAC.

    AAC does not document its UI paths; the defaults are unconfirmed. Override them per
    connection with the extra keys ``plan_run_url``, ``flow_run_url`` and ``job_group_url``:
    Python format strings with ``{base_url}`` and ``{run_id}``.
    """
    endpoints = ENDPOINTS[kind]
    pattern = config.text(endpoints.url_key) or endpoints.default_url
    try:
        return pattern.format(base_url=config.base_url, run_id=run_id)
    except (KeyError, IndexError, ValueError, AttributeError):
        raise AACConfigError(
            f"Connection {config.conn_id!r} has {endpoints.url_key} {pattern!r}, which is not a valid "
            f"pattern. Use only the fields {{base_url}} and {{run_id}}, e.g. {endpoints.default_url!r}."
        ) from None


# --------------------------------------------------------------------------- poll errors


@dataclass
class PollErrors:
    """Counts consecutive retryable failures while waiting; any other error ends the wait at once."""

    limit: int = MAX_CONSECUTIVE_POLL_ERRORS
    consecutive: int = field(default=0, init=False)

    def record(self, error: AACError, what: str) -> None:
        """Raise unless the error is retryable and the budget has room; then the caller polls again."""
        if not error.retryable:
            raise error
        self.consecutive += 1
        if self.consecutive >= self.limit:
            raise AACRunError(
                f"Gave up following {what} after {self.consecutive} failed status checks in a row: "
                f"{error} The run may still be going: check it in AAC, then clear this task or "
                "wait on the run with a sensor."
            ) from error
        log.warning(
            "Checking %s failed (%d of %d in a row); trying again: %s",
            what,
            self.consecutive,
            self.limit,
            error,
        )

    def reset(self) -> None:
        self.consecutive = 0


# --------------------------------------------------------------------------- exchanges


def _status_text(data: Any) -> str | None:
    """A status endpoint answers a bare JSON string; tolerate ``{"status": ...}`` as well."""
    if isinstance(data, dict):
        data = data.get("status")
    return data if isinstance(data, str) and data else None


def failure_message(detail: Any) -> str | None:
    """AAC's own words about why a run failed, from whichever field this detail carries.

    The fields are ``core.api_contract.FAILURE_MESSAGE_FIELDS``, in order; none is in AAC's
    spec, so ``airflow aac doctor`` notes them rather than failing.
    """
    for dotted in FAILURE_MESSAGE_FIELDS:
        value: Any = detail
        for step in dotted.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return value.strip()[:1000]
    return None


def _status_exchange(kind: RunKind, run_id: int, backoff: Backoff) -> Exchange[RunState]:
    endpoints = ENDPOINTS[kind]
    detail_path = endpoints.detail_path.format(id=run_id)
    if endpoints.status_path is None:
        detail = (yield from api_call("GET", detail_path, backoff=backoff)).data
        state = RunState(kind, run_id, _status_text(detail))
        return RunState(kind, run_id, state.raw, failure_message(detail) if state.failed else None)
    status = yield from api_call("GET", endpoints.status_path.format(id=run_id), backoff=backoff)
    state = RunState(kind, run_id, _status_text(status.data))
    if not state.failed:
        return state
    try:
        detail = (yield from api_call("GET", detail_path, backoff=backoff)).data
    except AACError as err:
        log.info("Could not read the detail of %s for its failure message: %s", state.describe(), err)
        return state
    return RunState(kind, run_id, state.raw, failure_message(detail))


def _flow_job_group_ids(listing: Any) -> list[int]:
    groups = listing.get("data") if isinstance(listing, dict) else listing
    if not isinstance(groups, list):
        return []
    return [g["id"] for g in groups if isinstance(g, dict) and isinstance(g.get("id"), int)]


def _flow_job_groups_exchange(run_id: int, backoff: Backoff) -> Exchange[list[int]]:
    """The flow run's job groups: AAC API spec v2025.23.2 (operationId getFlowRunJobGroups)."""
    path = FLOW_RUN_JOB_GROUPS.format(id=run_id)
    return _flow_job_group_ids((yield from api_call("GET", path, backoff=backoff)).data)


# AAC's roles (the project's API notes, docs/runs.md): a plan's Viewer may run it, but
# canceling its runs needs the Editor role.
CANCEL_ROLE_HINT = (
    "AAC refused to cancel {what} (403): the connection's user may start runs it may not cancel. In AAC a "
    "Viewer of a plan can run it, but canceling needs the Editor role. Ask the owner of the plan or flow "
    "to share it with this user as Editor, or cancel the run in the AAC UI."
)


def _cancel_call(path: str, what: str, backoff: Backoff) -> Exchange[Any]:
    try:
        return (yield from api_call("POST", path, backoff=backoff)).data
    except AACApiError as err:
        if err.status_code == 403:
            raise reworded(err, CANCEL_ROLE_HINT.format(what=what)) from err
        raise


def _cancel_exchange(
    kind: RunKind, run_id: int, job_group_ids: Sequence[int], backoff: Backoff
) -> Exchange[list[int]]:
    """Cancel the run; answers the job groups cancelled for a flow run, else ``[run_id]``.

    AAC documents no cancel endpoint for a flow run, so a flow run is stopped by cancelling
    its job groups (known from the run request; otherwise listed with getFlowRunJobGroups).
    A cancel of a finished job does nothing (AAC API spec v2025.23.2, operationId
    cancelJobGroup). A plan run's cancel answer says ``failedToCancelSomeJobs`` when some of
    its jobs kept running (operationId cancelPlanSnapshotRun, schema planSnapshotRun).
    """
    endpoints = ENDPOINTS[kind]
    what = f"AAC {endpoints.label} {run_id}"
    if endpoints.cancel_path is not None:
        answer = yield from _cancel_call(endpoints.cancel_path.format(id=run_id), what, backoff)
        if isinstance(answer, dict) and answer.get("failedToCancelSomeJobs") is True:
            raise AACRunError(
                f"{what} was asked to cancel, but AAC reports that it failed to cancel some of its jobs "
                "(failedToCancelSomeJobs). Open the run in AAC and cancel the jobs still running."
            )
        return [run_id]
    ids = list(job_group_ids) or (yield from _flow_job_groups_exchange(run_id, backoff))
    if not ids:
        raise AACRunError(
            f"Could not cancel AAC flow run {run_id}: AAC named none of its job groups, and flow runs "
            "have no cancel endpoint of their own. Cancel the run in the AAC UI."
        )
    job_group = ENDPOINTS[RunKind.JOB_GROUP].cancel_path
    assert job_group is not None
    failures: list[str] = []
    for group_id in ids:
        try:
            yield from _cancel_call(job_group.format(id=group_id), f"AAC job group {group_id}", backoff)
        except AACError as err:
            failures.append(f"job group {group_id}: {err}")
    if failures:
        raise AACRunError(
            f"Could not cancel every job group of AAC flow run {run_id} ({'; '.join(failures)}). "
            "Cancel the rest in the AAC UI."
        )
    return ids


def _cancel_or_warn_exchange(
    kind: RunKind, run_id: int, job_group_ids: Sequence[int], reason: str, backoff: Backoff
) -> Exchange[bool]:
    """Cancel the run and log what happened; a failure is a warning, because the task ends anyway."""
    what = f"AAC {ENDPOINTS[kind].label} {run_id}"
    try:
        cancelled = yield from _cancel_exchange(kind, run_id, job_group_ids, backoff)
    except AACError as err:
        log.warning("Could not cancel %s on %s: %s", what, reason, err)
        return False
    log.info("Canceled %s (%s) on %s.", what, cancelled, reason)
    return True


def flow_job_group_ids(hook: AACHook, run_id: int) -> list[int]:
    return hook.run_exchange(_flow_job_groups_exchange(run_id, hook.backoff))


def get_status(hook: AACHook, kind: RunKind, run_id: int) -> RunState:
    return hook.run_exchange(_status_exchange(kind, run_id, hook.backoff))


async def aget_status(hook: AACHook, kind: RunKind, run_id: int) -> RunState:
    return await hook.arun_exchange(_status_exchange(kind, run_id, hook.backoff))


def cancel(hook: AACHook, kind: RunKind, run_id: int, job_group_ids: Sequence[int] = ()) -> list[int]:
    return hook.run_exchange(_cancel_exchange(kind, run_id, job_group_ids, hook.backoff))


async def acancel(hook: AACHook, kind: RunKind, run_id: int, job_group_ids: Sequence[int] = ()) -> list[int]:
    return await hook.arun_exchange(_cancel_exchange(kind, run_id, job_group_ids, hook.backoff))


def cancel_or_warn(
    hook: AACHook, kind: RunKind, run_id: int, job_group_ids: Sequence[int], reason: str
) -> bool:
    """True when AAC canceled the run; a failed cancel is logged, not raised."""
    return hook.run_exchange(_cancel_or_warn_exchange(kind, run_id, job_group_ids, reason, hook.backoff))


async def acancel_or_warn(
    hook: AACHook, kind: RunKind, run_id: int, job_group_ids: Sequence[int], reason: str
) -> bool:
    return await hook.arun_exchange(
        _cancel_or_warn_exchange(kind, run_id, job_group_ids, reason, hook.backoff)
    )


# --------------------------------------------------------------------------- outcomes


def failure_error(state: RunState, url: str | None) -> AACRunFailedError:
    text = f"{state.describe()} ended {state.raw}"
    text += f": {state.message}" if state.message else " (AAC gave no message)"
    text += f". See {url}." if url else "."
    if state.status is AACRunStatus.CANCELED:
        text += " It was canceled in AAC or by Airflow; clear this task to start a new run."
    else:
        text += " Open the run in AAC to see which step failed, fix it, then clear this task to run it again."
    return AACRunFailedError(text, state=state, url=url)


def timeout_message(
    kind: RunKind, run_id: int, timeout: float | None, url: str | None, canceled: bool | None
) -> str:
    after = f" after {timeout:g} s" if timeout is not None else ""
    text = f"AAC {ENDPOINTS[kind].label} {run_id} did not finish{after}"
    text += f" ({url})." if url else "."
    if canceled:
        text += " Airflow canceled it in AAC."
    elif canceled is False:
        text += " It was not canceled and may still be running: check it in AAC."
    return text + " Raise the timeout if runs take this long, or look in AAC for why it is stuck."
