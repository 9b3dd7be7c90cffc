"""How plan runs, job groups and flow runs progress to their outcomes, and how cancel stops them."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.processes import poll_until
from tests.testing.simulator.helpers import TERMINAL, api, final_status


@pytest.mark.aac_simulator(run_duration=0.3)
@pytest.mark.parametrize(("plan_id", "outcome"), [(1, "Complete"), (2, "Failed")])
def test_plan_run_progresses_to_its_outcome(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], plan_id: int, outcome: str
) -> None:
    token = aac_token_pair["access_token"]
    started = api(aac_simulator, "POST", f"/v4/plans/{plan_id}/run", token, json={"planNodeOverrides": []})
    assert started.status_code == 201
    assert started.json()["validationStatus"] == "Valid"
    path = f"/v4/planSnapshotRuns/{started.json()['planSnapshotRunId']}"
    assert api(aac_simulator, "GET", path, token).json()["status"] in ("Created", "InProgress")

    run = final_status(aac_simulator, path, token)

    assert (run["status"], run["planId"]) == (outcome, plan_id)
    assert run["createdAt"] <= run["startedAt"] <= run["finishedAt"]
    assert ("errorMessage" in run) is (outcome == "Failed")
    assert aac_simulator.stats()["runs_started"] == 1


@pytest.mark.aac_simulator(run_duration=30)
def test_cancel_stops_running_work_only(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    aac_simulator.add_wrangled_dataset(102, duration=0)
    run_id = api(aac_simulator, "POST", "/v4/plans/1/run", token).json()["planSnapshotRunId"]
    finished = api(
        aac_simulator, "POST", "/v4/jobGroups", token, json={"wrangledDataset": {"id": 102}}
    ).json()

    canceled = api(aac_simulator, "POST", f"/v4/planSnapshotRuns/{run_id}/cancel", token)
    again = api(aac_simulator, "POST", f"/v4/planSnapshotRuns/{run_id}/cancel", token)
    too_late = api(aac_simulator, "POST", f"/v4/jobGroups/{finished['id']}/cancel", token)

    assert (canceled.status_code, canceled.json()["status"]) == (200, "Canceled")
    assert canceled.json()["finishedAt"] is not None
    assert again.json()["status"] == "Canceled"
    assert too_late.json() == {"jobgroupId": finished["id"], "jobIds": [finished["jobs"]["data"][0]["id"]]}
    assert api(aac_simulator, "GET", f"/v4/jobGroups/{finished['id']}/status", token).json() == "Complete"
    assert aac_simulator.stats()["runs_canceled"] == 1


@pytest.mark.aac_simulator(run_duration=0.2)
def test_job_group_lifecycle(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    created = api(aac_simulator, "POST", "/v4/jobGroups", token, json={"wrangledDataset": {"id": 101}})
    assert created.status_code == 201
    group = created.json()
    assert group["reason"] == "JobStarted"
    assert group["sessionId"]
    assert len(group["jobs"]["data"]) == 1

    status = api(aac_simulator, "GET", f"/v4/jobGroups/{group['id']}/status", token)
    assert status.text.startswith('"')
    assert status.json() in ("Created", "InProgress")
    detail = final_status(aac_simulator, f"/v4/jobGroups/{group['id']}?embed=jobs", token)
    outputs = api(aac_simulator, "GET", f"/v4/jobGroups/{group['id']}/outputs", token).json()

    assert (detail["status"], detail["wrangledDataset"]) == ("Failed", {"id": 101})
    assert detail["errorMessage"]
    assert detail["jobs"]["data"][0]["status"] == "Failed"
    assert "jobs" not in api(aac_simulator, "GET", f"/v4/jobGroups/{group['id']}", token).json()
    assert len(outputs["data"]) == 1 and "count" not in outputs


@pytest.mark.aac_simulator(run_duration=0.2)
def test_flow_run_follows_its_job_groups(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    started = api(aac_simulator, "POST", "/v4/flows/11/run", token, json={"runParameters": {}})
    assert started.status_code == 201
    flow_run_id = started.json()["flowRunId"]
    job_group_id = started.json()["data"][0]["id"]

    def finished() -> str | None:
        status: str = api(aac_simulator, "GET", f"/v4/flowRuns/{flow_run_id}/status", token).json()
        return status if status in TERMINAL else None

    final = poll_until(finished, timeout=10, interval=0.02, what=f"flow run {flow_run_id} to end")
    detail = api(aac_simulator, "GET", f"/v4/flowRuns/{flow_run_id}", token).json()

    assert final == "Failed"
    assert (detail["status"], detail["flow"]) == ("Failed", {"id": 11})
    assert detail["jobGroups"]["data"] == [{"id": job_group_id, "status": "Failed"}]
    assert detail["errorMessage"]
