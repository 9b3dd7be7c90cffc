"""The /v4 routes: request validation, unknown ids and paged listings."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.testing.simulator.helpers import api, exception_name


@pytest.mark.parametrize(
    "body", [None, {}, {"wrangledDataset": 100}, {"wrangledDataset": {"id": "100"}}, [1, 2]], ids=str
)
def test_job_group_request_is_validated(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], body: Any
) -> None:
    response = api(aac_simulator, "POST", "/v4/jobGroups", aac_token_pair["access_token"], json=body)

    assert (response.status_code, exception_name(response)) == (400, "ValidationFailed")
    assert aac_simulator.stats()["runs_started"] == 0


def test_non_json_body_is_unsupported(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    response = api(aac_simulator, "POST", "/v4/plans/1/run", aac_token_pair["access_token"], data="x=1")

    assert (response.status_code, exception_name(response)) == (415, "UnsupportedMediaTypeException")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v4/planSnapshotRuns/999", None),
        ("POST", "/v4/planSnapshotRuns/999/cancel", None),
        ("POST", "/v4/plans/999/run", None),
        ("POST", "/v4/flows/999/run", None),
        ("GET", "/v4/flowRuns/999", None),
        ("GET", "/v4/flowRuns/999/status", None),
        ("GET", "/v4/jobGroups/999", None),
        ("GET", "/v4/jobGroups/999/status", None),
        ("GET", "/v4/jobGroups/999/outputs", None),
        ("POST", "/v4/jobGroups", {"wrangledDataset": {"id": 999}}),
        ("GET", "/v4/no/such/thing", None),
    ],
)
def test_unknown_ids_answer_404_with_the_aac_error_body(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], method: str, path: str, body: Any
) -> None:
    response = api(aac_simulator, method, path, aac_token_pair["access_token"], json=body)

    assert response.status_code == 404
    expected = "RouteNotFoundException" if path.startswith("/v4/no/") else "DataNotFoundException"
    assert exception_name(response) == expected
    assert response.json()["exception"]["message"]
    assert response.headers["x-trifacta-request-id"]


def test_listings_are_paged(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    for plan_id in range(3, 31):
        aac_simulator.add_plan(plan_id)

    default = api(aac_simulator, "GET", "/v4/plans", token, params={"includeCount": "true"}).json()
    tail = api(aac_simulator, "GET", "/v4/plans", token, params={"limit": 10, "offset": 25}).json()
    flows = api(aac_simulator, "GET", "/v4/flows", token).json()
    bad = api(aac_simulator, "GET", "/v4/plans", token, params={"limit": "-1"})

    assert (len(default["data"]), default["count"]) == (25, 30)
    assert default["data"][0] == {**default["data"][0], "id": 1, "name": "Daily sales"}
    assert [plan["id"] for plan in tail["data"]] == [26, 27, 28, 29, 30]
    assert [flow["id"] for flow in flows["data"]] == [10, 11]
    assert (bad.status_code, exception_name(bad)) == (400, "ValidationFailed")
    assert "count" not in tail
