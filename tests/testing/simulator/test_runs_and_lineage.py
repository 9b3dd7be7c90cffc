"""The simulator's rate limits, run start log, job-group idempotency and lineage endpoints, over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.simulator import (
    AAC_RATE_LIMITS,
    FILE_INPUT_REFUSAL,
    AACSimulator,
    jdbc_table,
    result_file,
)
from tests.support.processes import poll_until
from tests.testing.simulator.helpers import api, exception_name, final_status


def _run(
    sim: AACSimulator, token: str, path: str, execution_id: str | None = None, **kwargs: Any
) -> requests.Response:
    headers = {"x-execution-id": execution_id} if execution_id else {}
    return api(sim, "POST", path, token, headers=headers, **kwargs)


def test_aacs_documented_limits_are_the_default(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    assert {name: (limit.user, limit.workspace) for name, limit in AAC_RATE_LIMITS.items()} == {
        "runPlan": (30, 60),
        "runJobGroup": (30, 60),
        "runFlow": (20, 40),
    }
    answer = _run(aac_simulator, aac_token_pair["access_token"], "/v4/flows/10/run")
    assert answer.status_code == 201
    assert answer.headers["x-rate-limit-user-limit"] == "20"
    assert answer.headers["x-rate-limit-user-remaining"] == "19"
    assert answer.headers["x-rate-limit-workspace-limit"] == "40"
    assert answer.headers["x-rate-limit-workspace-remaining"] == "39"
    assert float(answer.headers["x-rate-limit-user-reset"]) / 1000 == pytest.approx(time.time() + 60, abs=5)
    other = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])
    assert "x-rate-limit-user-remaining" not in other.headers


def test_user_limit_refuses_with_aacs_headers_and_starts_nothing(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.runs.set_rate_limits(window=1.0, runPlan=(3, 10))
    token = aac_token_pair["access_token"]
    answers = [_run(aac_simulator, token, "/v4/plans/1/run") for _ in range(4)]

    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    refused = answers[-1]
    assert exception_name(refused) == "TooManyRequestsException"
    assert refused.headers["x-rate-limit-user-remaining"] == "0"
    assert refused.headers["x-rate-limit-workspace-remaining"] == "7"
    wait = float(refused.headers["x-retry-after"])
    assert 0 < wait <= 1.0
    reset = float(refused.headers["x-rate-limit-user-reset"]) / 1000  # epoch milliseconds
    assert reset == pytest.approx(time.time() + wait, abs=0.2)
    assert aac_simulator.stats()["runs_started"] == 3
    assert aac_simulator.stats()["rate_limited"] == 1
    # Another endpoint has its own budget.
    assert _run(aac_simulator, token, "/v4/flows/10/run").status_code == 201

    refused_at = time.monotonic()
    poll_until(
        lambda: _run(aac_simulator, token, "/v4/plans/1/run").status_code == 201 or None,
        timeout=3,
        interval=0.02,
        what="the rate-limit window to reopen",
    )
    assert time.monotonic() - refused_at >= wait - 0.1, "the window reopened before its reset"


def test_429_without_retry_after_still_says_when_the_window_resets(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.runs.set_rate_limits(window=20.0, retry_after=False, runFlow=(1, 10))
    token = aac_token_pair["access_token"]
    assert _run(aac_simulator, token, "/v4/flows/10/run").status_code == 201
    refused = _run(aac_simulator, token, "/v4/flows/10/run")
    assert refused.status_code == 429 and "x-retry-after" not in refused.headers
    assert refused.headers["x-rate-limit-user-remaining"] == "0"
    reset = float(refused.headers["x-rate-limit-user-reset"]) / 1000  # epoch milliseconds
    assert reset == pytest.approx(time.time() + 20, abs=1)


def test_workspace_limit_binds_across_users(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.runs.set_rate_limits(window=30.0, runJobGroup=(100, 2))
    body = {"wrangledDataset": {"id": 100}}
    token = aac_token_pair["access_token"]
    codes = [_run(aac_simulator, token, "/v4/jobGroups", json=body).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    refused = _run(aac_simulator, token, "/v4/jobGroups", json=body)
    assert refused.headers["x-rate-limit-workspace-remaining"] == "0"
    assert refused.headers["x-rate-limit-user-remaining"] == "98"
    assert "workspace" in refused.json()["exception"]["message"]


def test_limits_can_be_lifted(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    aac_simulator.runs.set_rate_limits(enabled=False)
    token = aac_token_pair["access_token"]
    with ThreadPoolExecutor(8) as pool:
        codes = list(
            pool.map(lambda _: _run(aac_simulator, token, "/v4/flows/10/run").status_code, range(25))
        )
    assert codes == [201] * 25
    with pytest.raises(ValueError, match="unknown run endpoints"):
        aac_simulator.runs.set_rate_limits(runSomething=(1, 1))


def test_job_group_post_honours_the_execution_id(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]
    body = {"wrangledDataset": {"id": 100}}
    first = _run(aac_simulator, token, "/v4/jobGroups", "exec-jg", json=body)
    repeat = _run(aac_simulator, token, "/v4/jobGroups", "exec-jg", json=body)
    other_recipe = _run(
        aac_simulator, token, "/v4/jobGroups", "exec-jg", json={"wrangledDataset": {"id": 101}}
    )
    without = _run(aac_simulator, token, "/v4/jobGroups", json=body)

    assert [a.status_code for a in (first, repeat, other_recipe, without)] == [201, 304, 201, 201]
    assert repeat.content == b""
    starts = aac_simulator.runs.starts(kind="job_group")
    assert [(s.target, s.run_id, s.execution_id) for s in starts] == [
        (100, first.json()["id"], "exec-jg"),
        (101, other_recipe.json()["id"], "exec-jg"),
        (100, without.json()["id"], None),
    ]


def test_start_log_names_kind_and_target(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    plan = _run(aac_simulator, token, "/v4/plans/1/run", "p").json()["planSnapshotRunId"]
    flow = _run(aac_simulator, token, "/v4/flows/10/run").json()["flowRunId"]
    assert [(s.kind, s.target, s.run_id) for s in aac_simulator.runs.starts()] == [
        ("plan", 1, plan),
        ("flow", 10, flow),
    ]
    assert aac_simulator.runs.starts(kind="plan", target=2) == []


@pytest.mark.aac_simulator(run_duration=0.3)
def test_job_group_inputs_and_outputs(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    aac_simulator.runs.set_datasets(
        100,
        inputs=[
            jdbc_table("sales", "orders"),
            jdbc_table("sales", "customers", vendor="snowflake", connect="acme.snowflakecomputing.com/SALES"),
        ],
        files=[
            result_file("daily/orders.csv"),
            result_file("daily/parts", file_type="DIRECTORY", primary=False),
        ],
        tables=[{**jdbc_table("reporting", "orders_clean"), "action": "Create"}],
    )
    group = _run(aac_simulator, token, "/v4/jobGroups", json={"wrangledDataset": {"id": 100}}).json()["id"]

    inputs = api(aac_simulator, "GET", f"/v4/jobGroups/{group}/inputs", token).json()
    outputs = api(aac_simulator, "GET", f"/v4/jobGroups/{group}/outputs", token).json()

    assert [dataset["name"] for dataset in inputs["data"]] == ["Recipe 100"]
    read = inputs["data"][0]["inputs"]
    assert [(i["vendor"], i["relationalPath"], i["table"]) for i in read] == [
        ("postgres", ["sales"], "orders"),
        ("snowflake", ["sales"], "customers"),
    ]
    assert read[0]["databaseConnectString"] == "//warehouse.sim.example:5432/analytics"
    assert [(f["uri"], f["fileType"], f["isPrimaryOutput"]) for f in outputs["files"]] == [
        ("s3://aac-sim-results/daily/orders.csv", "FILE", True),
        ("s3://aac-sim-results/daily/parts", "DIRECTORY", False),
    ]
    assert outputs["tables"][0]["table"] == "orders_clean" and outputs["tables"][0]["action"] == "Create"
    assert len(outputs["data"]) == 1 and "count" not in outputs  # the output objects, as before


def test_default_datasets_and_file_inputs(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]
    group = _run(aac_simulator, token, "/v4/jobGroups", json={"wrangledDataset": {"id": 101}}).json()["id"]
    assert (
        api(aac_simulator, "GET", f"/v4/jobGroups/{group}/inputs", token).json()["data"][0]["inputs"][0][
            "table"
        ]
        == "source_101"
    )
    assert api(aac_simulator, "GET", f"/v4/jobGroups/{group}/outputs", token).json()["files"] == [
        result_file("recipe-101/output.csv")
    ]

    aac_simulator.runs.set_datasets(101, inputs=[{"uri": "s3://landing/orders.csv"}])
    refused = api(aac_simulator, "GET", f"/v4/jobGroups/{group}/inputs", token)
    assert refused.status_code == 400
    assert refused.json()["exception"] == {
        "name": "DataServiceInvalidRequest",
        "message": FILE_INPUT_REFUSAL,
        "details": None,
    }
    assert api(aac_simulator, "GET", "/v4/jobGroups/999/inputs", token).status_code == 404


@pytest.mark.aac_simulator(run_duration=0.3)
def test_flow_run_job_groups(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    started = _run(aac_simulator, token, "/v4/flows/10/run").json()
    path = f"/v4/flowRuns/{started['flowRunId']}/jobGroups"
    listed = api(aac_simulator, "GET", path, token, params={"includeCount": "true"}).json()
    assert [g["id"] for g in listed["data"]] == [g["id"] for g in started["data"]] and listed["count"] == 1
    assert listed["data"][0]["flowrun"] == {"id": started["flowRunId"]}
    assert listed["data"][0]["wrangledDataset"] == {"id": 10001}
    assert api(aac_simulator, "GET", "/v4/flowRuns/999/jobGroups", token).status_code == 404


@pytest.mark.aac_simulator(run_duration=0.3)
def test_plan_run_embeds_its_flow_runs(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    run_id = _run(aac_simulator, token, "/v4/plans/1/run").json()["planSnapshotRunId"]
    plain = api(aac_simulator, "GET", f"/v4/planSnapshotRuns/{run_id}", token).json()
    assert "flowRuns" not in plain

    final = final_status(aac_simulator, f"/v4/planSnapshotRuns/{run_id}?embed=flowRuns", token)
    (flow_run,) = final["flowRuns"]["data"]
    assert flow_run["status"] == final["status"] == "Complete"
    groups = api(aac_simulator, "GET", f"/v4/flowRuns/{flow_run['id']}/jobGroups", token).json()["data"]
    assert [g["status"] for g in groups] == ["Complete"]
    assert api(aac_simulator, "GET", f"/v4/jobGroups/{groups[0]['id']}/inputs", token).json()["data"]
    assert aac_simulator.stats()["runs_started"] == 1  # the plan's own job group is not a run start
    assert [s.kind for s in aac_simulator.runs.starts()] == ["plan"]


@pytest.mark.aac_simulator(run_duration=30)
def test_cancelling_a_plan_run_cancels_its_job_group(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]
    run_id = _run(aac_simulator, token, "/v4/plans/1/run").json()["planSnapshotRunId"]
    flow_run = api(aac_simulator, "GET", f"/v4/planSnapshotRuns/{run_id}?embed=flowRuns", token).json()[
        "flowRuns"
    ]["data"][0]
    api(aac_simulator, "POST", f"/v4/planSnapshotRuns/{run_id}/cancel", token)
    assert api(aac_simulator, "GET", f"/v4/flowRuns/{flow_run['id']}/status", token).json() == "Canceled"


def test_slow_holds_only_matching_requests(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]
    aac_simulator.runs.slow(0.5, path_prefix="/v4/plans", method="GET")
    assert aac_simulator.runs.pending_delays() == 1
    started = time.monotonic()
    assert api(aac_simulator, "GET", "/v4/people/current", token).status_code == 200
    assert time.monotonic() - started < 0.4
    started = time.monotonic()
    assert api(aac_simulator, "GET", "/v4/plans", token).status_code == 200
    assert time.monotonic() - started >= 0.5
    assert aac_simulator.runs.pending_delays() == 0
    started = time.monotonic()
    assert api(aac_simulator, "GET", "/v4/plans", token).status_code == 200
    assert time.monotonic() - started < 0.4


def test_concurrent_run_requests_respect_the_limit_exactly(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.runs.set_rate_limits(window=30.0, runPlan=(10, 60))
    token = aac_token_pair["access_token"]
    with ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(lambda i: _run(aac_simulator, token, "/v4/plans/1/run", f"e{i}").status_code, range(40))
        )
    assert sorted(codes) == [201] * 10 + [429] * 30
    assert len({s.execution_id for s in aac_simulator.runs.starts()}) == 10
    rate_limited = poll_until(
        lambda: aac_simulator.stats()["rate_limited"] or None,
        timeout=10,
        interval=0.02,
        what="the 429s counted",
    )
    assert rate_limited == 30
