"""The simulator's runnable definitions and every run started from them.

Starting a run and its idempotency check happen under the simulator's state lock, so two
requests with the same ``x-execution-id`` start one run between them, never two.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from typing import Any, Literal

from airflow_provider_aac.testing.simulator.counters import Counters
from airflow_provider_aac.testing.simulator.runs import (
    OUTCOMES,
    Definition,
    FlowRun,
    JobGroup,
    PlanRun,
    Progress,
)
from airflow_provider_aac.testing.simulator.wire import ApiError, find

DefinitionKind = Literal["plan", "flow", "dataset"]
ExecutionKey = tuple[str, int, str]  # run kind, target id, x-execution-id


class RunBook:
    def __init__(self, lock: threading.RLock, counters: Counters, run_duration: float) -> None:
        self.lock = lock  # handlers hold it while they read a run, so a view is one moment's
        self.run_duration = run_duration
        self._counters = counters
        self._definitions: dict[DefinitionKind, dict[int, Definition]] = {
            "plan": {},
            "flow": {},
            "dataset": {},
        }
        self.plan_runs: dict[int, PlanRun] = {}
        self.job_groups: dict[int, JobGroup] = {}
        self.flow_runs: dict[int, FlowRun] = {}
        self._plan_flow_runs: dict[int, int] = {}  # plan run id -> the flow run it ran
        self._executions: dict[ExecutionKey, int] = {}
        self._plan_run_ids = itertools.count(5001)
        self._job_group_ids = itertools.count(7001)
        self._flow_run_ids = itertools.count(9001)
        self._job_ids = itertools.count(30001)
        self._output_ids = itertools.count(60001)

    def define(
        self,
        kind: DefinitionKind,
        ident: int,
        outcome: str,
        duration: float | None,
        name: str,
        **behaviour: Any,
    ) -> None:
        """Replaces any earlier definition, so a test can change the outcome of a seeded id.

        ``behaviour`` sets :class:`Definition`'s optional fields (``missing_flow_references``,
        ``answer_delay``).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(OUTCOMES)}")
        with self.lock:
            self._definitions[kind][ident] = Definition(ident, name, outcome, duration, **behaviour)

    def definition(self, kind: DefinitionKind, ident: int) -> Definition | None:
        with self.lock:
            return self._definitions[kind].get(ident)

    def listing(self, kind: DefinitionKind) -> list[dict[str, Any]]:
        with self.lock:
            return [definition.listing() for _, definition in sorted(self._definitions[kind].items())]

    def start_plan(self, plan_id: int, key: ExecutionKey | None) -> PlanRun | None:
        """The new run, or None when `key` already started one."""
        return self._start("plan", plan_id, "Plan", key, self._new_plan_run)

    def start_job_group(self, dataset_id: int, key: ExecutionKey | None) -> JobGroup | None:
        return self._start("dataset", dataset_id, "Wrangled dataset", key, self._new_dataset_job_group)

    def start_flow(
        self, flow_id: int, key: ExecutionKey | None, recipe_ids: list[int] | None = None
    ) -> FlowRun | None:
        """``recipe_ids``: the outputs to run (``wrangledDatasetIds``); None or empty runs them all."""
        return self._start("flow", flow_id, "Flow", key, lambda flow: self._new_flow_run(flow, recipe_ids))

    def flow_runs_of(self, run: PlanRun) -> list[FlowRun]:
        """Lock held."""
        flow_run = self.flow_runs.get(self._plan_flow_runs.get(run.id, -1))
        return [] if flow_run is None else [flow_run]

    def cancel(self, progress: Progress) -> None:
        """Lock held."""
        if progress.cancel():
            self._counters.count("runs_canceled")

    def _start(
        self,
        kind: DefinitionKind,
        ident: int,
        label: str,
        key: ExecutionKey | None,
        new_run: Callable[[Definition], PlanRun | JobGroup | FlowRun],
    ) -> Any:
        with self.lock:
            definition = find(self._definitions[kind], ident, label)
            if key is not None and key in self._executions:
                return None
            run = new_run(definition)
            if key is not None:
                self._executions[key] = run.id
            self._counters.count("runs_started")
            return run

    def _progress_for(self, definition: Definition, what: str) -> Progress:
        duration = self.run_duration if definition.duration is None else definition.duration
        message = f"{what} failed (simulated): a step reported an error"
        return Progress(definition.outcome, duration, message)

    def _new_plan_run(self, plan: Definition) -> PlanRun:
        progress = self._progress_for(plan, f"Plan '{plan.name}'")
        if plan.missing_flow_references:
            # AAC API spec v2025.23.2 (operationId runPlan): such a plan is not queued, so its
            # snapshot run never starts; it stays Created until canceled.
            progress.duration = math.inf
        run = PlanRun(next(self._plan_run_ids), plan.id, progress)
        self.plan_runs[run.id] = run
        if plan.missing_flow_references:
            return run
        # A plan runs its tasks as flow runs; the simulator's plan has one, sharing the plan run's clock.
        flow_run = FlowRun(next(self._flow_run_ids), plan.id * 1000, [])
        flow_run.job_groups.append(self._new_job_group(plan.id * 1000 + 2, run.progress, flow_run.id))
        self.flow_runs[flow_run.id] = flow_run
        self._plan_flow_runs[run.id] = flow_run.id
        return run

    def _new_dataset_job_group(self, recipe: Definition) -> JobGroup:
        progress = self._progress_for(recipe, f"Job for wrangled dataset {recipe.id}")
        return self._new_job_group(recipe.id, progress, None)

    def _new_flow_run(self, flow: Definition, recipe_ids: list[int] | None) -> FlowRun:
        unknown = sorted(set(recipe_ids or []) - set(flow.recipe_ids()))
        if unknown:
            raise ApiError(
                400,
                f"wrangledDatasetIds {unknown} are not recipes with outputs in flow {flow.id}",
                details={"field": "wrangledDatasetIds", "recipes": flow.recipe_ids()},
            )
        run = FlowRun(next(self._flow_run_ids), flow.id, [])
        # Each output recipe has a synthetic id, so job groups look like AAC's: one per output run.
        for recipe_id in recipe_ids or flow.recipe_ids():
            progress = self._progress_for(flow, f"Flow '{flow.name}'")
            run.job_groups.append(self._new_job_group(recipe_id, progress, run.id))
        self.flow_runs[run.id] = run
        return run

    def _new_job_group(self, dataset_id: int, progress: Progress, flow_run_id: int | None) -> JobGroup:
        group = JobGroup(
            next(self._job_group_ids),
            dataset_id,
            next(self._job_ids),
            next(self._output_ids),
            progress,
            flow_run_id,
        )
        self.job_groups[group.id] = group
        return group
