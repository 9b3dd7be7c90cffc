"""The run book's idempotency: an x-execution-id makes a repeated run a no-op."""

from __future__ import annotations

from typing import Any

import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.testing.simulator.helpers import api


def test_execution_id_makes_a_repeated_run_a_no_op(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]

    def run(path: str, execution_id: str) -> requests.Response:
        return api(aac_simulator, "POST", path, token, headers={"x-execution-id": execution_id})

    first = run("/v4/plans/1/run", "exec-1")
    repeat = run("/v4/plans/1/run", "exec-1")
    other_plan = run("/v4/plans/2/run", "exec-1")
    flow_first = run("/v4/flows/10/run", "exec-2")
    flow_repeat = run("/v4/flows/10/run", "exec-2")

    assert [r.status_code for r in (first, repeat, other_plan, flow_first, flow_repeat)] == [
        201,
        304,
        201,
        201,
        304,
    ]
    assert repeat.content == b"" == flow_repeat.content
    assert aac_simulator.stats()["runs_started"] == 3
