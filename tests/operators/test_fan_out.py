"""A fan-out of 100 run requests under AAC's per-minute limits: every run starts, none twice.

The simulator enforces AAC's documented limits (runPlan and runJobGroup 30 per user and
60 per workspace, runFlow 20 and 40) over a window compressed from a minute to one
second, so the 100 requests need several windows. Each task is a real operator over
real HTTP, in its own thread, as 100 mapped tasks or a python task starting many runs
would be; every request's 429s must be waited out from the headers AAC sent.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from airflow_provider_aac.operators.aac import (
    AACRunFlowOperator,
    AACRunJobGroupOperator,
    AACRunOperatorBase,
    AACRunPlanOperator,
    execution_id,
)
from airflow_provider_aac.runs import RunKind
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.operators.aac_env import FakeTI, aac_conn, context_for

__all__ = ["aac_conn"]

RUNS = 100
WINDOW = 1.0


def _operator(index: int, ti: FakeTI) -> AACRunOperatorBase:
    kind = index % 3
    common: dict[str, Any] = {"task_id": ti.task_id, "wait_for_completion": False}
    if kind == 0:
        return AACRunPlanOperator(plan_id=1, **common)
    if kind == 1:
        return AACRunFlowOperator(flow_id=10, **common)
    return AACRunJobGroupOperator(wrangled_dataset_id=100, **common)


@pytest.mark.timeout(120)
@pytest.mark.aac_simulator(run_duration=60)
@pytest.mark.parametrize("retry_after", [True, False], ids=["x-retry-after", "reset-headers-only"])
def test_a_fan_out_of_100_runs_starts_each_exactly_once(aac_conn: AACSimulator, retry_after: bool) -> None:
    aac_conn.runs.set_rate_limits(window=WINDOW, retry_after=retry_after)
    tis = [FakeTI(task_id=f"fan_{i}_{uuid.uuid4().hex[:6]}") for i in range(RUNS)]
    started = time.monotonic()

    def run(index: int) -> int:
        return _operator(index, tis[index]).execute(context_for(tis[index]))

    with ThreadPoolExecutor(RUNS) as pool:
        run_ids = list(pool.map(run, range(RUNS)))
    elapsed = time.monotonic() - started

    starts = aac_conn.runs.starts()
    assert len(starts) == RUNS == aac_conn.stats()["runs_started"]
    assert sorted(s.run_id for s in starts) == sorted(run_ids)
    by_execution = {s.execution_id: s for s in starts}
    assert len(by_execution) == RUNS, "a request started two runs"
    kinds = [RunKind.PLAN, RunKind.FLOW, RunKind.JOB_GROUP]
    targets = [1, 10, 100]
    for index, ti in enumerate(tis):
        ident = execution_id(context_for(ti), kinds[index % 3], targets[index % 3])
        assert by_execution[ident].run_id == run_ids[index] == ti.xcom["run_id"]
    refused = aac_conn.stats()["rate_limited"]
    assert refused > 0, "the limits never bit: the test proves nothing"
    # Waiting for the reset AAC names, a refused request is admitted in the next window, and
    # no window after a full one is full again: at most 4 plans, 13 flows and 3 job groups
    # are ever refused. A client that came back before the reset would be refused again.
    assert refused <= (34 - 30) + (33 - 20) + (33 - 30), f"{refused} refusals: some came back too early"
    # 34 plans at 30 a window and 33 flows at 20 need two windows; a few more for the jitter.
    assert elapsed < 10 * WINDOW, f"the fan-out took {elapsed:.1f} s"
