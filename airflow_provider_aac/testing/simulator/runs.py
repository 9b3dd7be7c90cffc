"""Runnable things (plans, flows, wrangled datasets) and the runs they start.

A run's status is a pure function of the time since it was created. Deriving it from the
clock, instead of advancing it in a background thread, keeps the simulator free of timers
and makes every poll consistent with wall time.

Statuses are those of AAC's OpenAPI spec v2025.23.2: plan snapshot runs, job groups and
jobs go ``Created``, ``InProgress``, then ``Complete``, ``Failed`` or ``Canceled``; a flow
run's status (``FlowRunStatus``) has no ``InProgress``, so a running flow run is ``Created``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.testing.simulator.wire import iso

OUTCOMES = frozenset({"Complete", "Failed"})
TERMINAL = frozenset({"Complete", "Failed", "Canceled"})


@dataclass
class Definition:
    """A plan, flow or wrangled dataset, and how its runs end."""

    id: int
    name: str
    outcome: str
    duration: float | None  # None: the simulator's run_duration
    created_at: float = field(default_factory=time.time)
    # A plan whose tasks reference deleted flows or outputs: runPlan answers MissingFlowReferences.
    missing_flow_references: bool = False
    # Seconds a synchronous runFlow answer takes after the run exists (job groups being created).
    answer_delay: float = 0.0
    # A plan whose cancel answer says failedToCancelSomeJobs.
    jobs_survive_cancel: bool = False
    # A flow's outputs, each after its own recipe (ids ``id * 1000 + 1`` onwards).
    outputs: int = 1
    # A wrangled dataset's flow: schema wrangledDataset requires ``flow`` and ``wrangled``.
    flow_id: int | None = None

    def recipe_ids(self) -> list[int]:
        return [self.id * 1000 + 1 + n for n in range(self.outputs)]

    def listing(self) -> dict[str, Any]:
        stamp = iso(self.created_at)
        row: dict[str, Any] = {"id": self.id, "name": self.name, "createdAt": stamp, "updatedAt": stamp}
        if self.flow_id is not None:
            row.update(flow={"id": self.flow_id}, wrangled=True)
        return row


@dataclass
class Progress:
    """A run's timeline, read off the monotonic clock at every look."""

    outcome: str
    duration: float
    failure_message: str
    created_wall: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    canceled_after: float | None = None

    def _timeline(self) -> list[tuple[float, str]]:
        steps = [
            (0.0, "Created"),
            (0.25 * self.duration, "InProgress"),
            (self.duration, self.outcome),
        ]
        if self.canceled_after is None:
            return steps
        return [step for step in steps if step[0] < self.canceled_after] + [(self.canceled_after, "Canceled")]

    def _reached(self) -> list[tuple[float, str]]:
        elapsed = time.monotonic() - self.created_mono
        return [step for step in self._timeline() if step[0] <= elapsed]

    def status(self) -> str:
        return self._reached()[-1][1]

    def cancel(self) -> bool:
        """Cancel unless already finished; says whether anything changed."""
        if self.status() in TERMINAL:
            return False
        self.canceled_after = time.monotonic() - self.created_mono
        return True

    def fields(self) -> dict[str, Any]:
        reached = self._reached()
        last_offset, status = reached[-1]
        started = next((offset for offset, name in reached if name == "InProgress"), None)
        fields: dict[str, Any] = {
            "status": status,
            "createdAt": iso(self.created_wall),
            "updatedAt": iso(self.created_wall + last_offset),
        }
        if started is not None:
            fields["startedAt"] = iso(self.created_wall + started)
        if status in TERMINAL:
            fields["finishedAt"] = iso(self.created_wall + last_offset)
        if status == "Failed":
            fields["errorMessage"] = self.failure_message
        return fields


@dataclass
class PlanRun:
    id: int
    plan_id: int
    progress: Progress

    def view(self) -> dict[str, Any]:
        return {"id": self.id, "planId": self.plan_id, "plan": {"id": self.plan_id}, **self.progress.fields()}


@dataclass
class JobGroup:
    id: int
    dataset_id: int
    job_id: int
    output_id: int
    progress: Progress
    flow_run_id: int | None = None
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def job_views(self) -> list[dict[str, Any]]:
        return [{"id": self.job_id, "status": self.progress.status(), "jobType": "wrangle"}]

    def cancel_view(self) -> dict[str, Any]:
        """AAC's ``JobGroupCancelInformation``: ``jobgroupId`` is required."""
        return {"jobgroupId": self.id, "jobIds": [self.job_id]}

    def output_views(self) -> list[dict[str, Any]]:
        return [{"id": self.output_id, "execution": "photon", "profiler": False, "outputObjectType": "file"}]

    def view(self, *, embed_jobs: bool = False) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": self.id,
            "wrangledDataset": {"id": self.dataset_id},
            "sessionId": self.session_id,
            **self.progress.fields(),
        }
        if self.flow_run_id is not None:
            view["flowrun"] = {"id": self.flow_run_id}
        if embed_jobs:
            view["jobs"] = {"data": self.job_views()}
        return view


def combined_status(statuses: Sequence[str]) -> str:
    """A flow run's status from its job groups': ``Created`` until all are done, then the worst.

    AAC's ``FlowRunStatus`` enum is ``Complete``, ``Canceled``, ``Created``, ``Failed``.
    """
    if all(status in TERMINAL for status in statuses):
        return next((s for s in ("Failed", "Canceled") if s in statuses), "Complete")
    return "Created"


@dataclass
class FlowRun:
    id: int
    flow_id: int
    job_groups: list[JobGroup]
    created_at: float = field(default_factory=time.time)

    def status(self) -> str:
        return combined_status([group.progress.status() for group in self.job_groups])

    def summary(self) -> dict[str, Any]:
        """How a plan run lists the flow runs it ran."""
        return {"id": self.id, "status": self.status(), "flow": {"id": self.flow_id}}

    def view(self) -> dict[str, Any]:
        groups = [group.view() for group in self.job_groups]
        view: dict[str, Any] = {
            "id": self.id,
            "status": combined_status([group["status"] for group in groups]),
            "flow": {"id": self.flow_id},
            "createdAt": iso(self.created_at),
            "updatedAt": max(group["updatedAt"] for group in groups),
            "jobGroups": {"data": [{"id": group["id"], "status": group["status"]} for group in groups]},
        }
        failed = [group["errorMessage"] for group in groups if group["status"] == "Failed"]
        if failed and view["status"] == "Failed":
            view["errorMessage"] = failed[0]
        return view
