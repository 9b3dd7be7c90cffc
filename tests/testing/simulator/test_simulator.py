"""The simulator's own tests, over real HTTP.

Everything else in the suite trusts the simulator to enforce AAC's rotation and reuse
rules, so these tests pin those rules down first. No assertion compares token strings
directly: a failing comparison would print the tokens.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import jwt
import pytest
import requests

from airflow_provider_aac.testing.simulator import STAT_KEYS, AACSimulator

T = TypeVar("T")
TIMEOUT = 5.0
TERMINAL = ("Complete", "Failed", "Canceled")


def refresh(sim: AACSimulator, refresh_token: str, client_id: str | None = None) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id or sim.client_id,
    }
    return requests.post(sim.token_url, data=data, timeout=TIMEOUT)


def api(sim: AACSimulator, method: str, path: str, access_token: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", **kwargs.pop("headers", {})}
    return requests.request(method, sim.base_url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def wait_for(probe: Callable[[], T | None], timeout: float = TIMEOUT, interval: float = 0.02) -> T:
    """Poll until `probe` returns something other than None, so tests wait no longer than needed."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def exception_name(response: requests.Response) -> str:
    name: str = response.json()["exception"]["name"]
    return name


def final_status(sim: AACSimulator, path: str, token: str) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        body: dict[str, Any] = api(sim, "GET", path, token).json()
        return body if body["status"] in TERMINAL else None

    return wait_for(terminal)


# --------------------------------------------------------------------------- tokens


def test_minted_pair_calls_the_api(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    first = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])
    second = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])

    assert first.status_code == 200
    assert first.json()["email"] == "sim@example.com"
    assert first.headers["x-trifacta-request-id"] != second.headers["x-trifacta-request-id"]
    assert set(aac_token_pair) == {"access_token", "refresh_token", "expires_in"}
    assert aac_token_pair["expires_in"] == 300


def test_access_token_claims_lead_to_the_token_endpoint(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    claims = jwt.decode(aac_token_pair["access_token"], options={"verify_signature": False})

    assert claims["iss"] + "/token" == aac_simulator.token_url
    assert claims["client_id"] == aac_simulator.client_id
    assert claims["exp"] - claims["iat"] in (299, 300)
    assert {"sub", "jti", "scope"} <= set(claims)
    assert not any("family" in name for name in claims)


def test_refresh_rotates_and_reuse_revokes_the_family(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    rotated = refresh(aac_simulator, aac_token_pair["refresh_token"])
    assert rotated.status_code == 200
    new = rotated.json()
    is_new_token = new["refresh_token"] != aac_token_pair["refresh_token"]
    assert is_new_token
    assert (new["token_type"], new["expires_in"]) == ("Bearer", 300)
    assert api(aac_simulator, "GET", "/v4/people/current", new["access_token"]).status_code == 200

    reuse = refresh(aac_simulator, aac_token_pair["refresh_token"])
    assert (reuse.status_code, reuse.json()["error"]) == (400, "invalid_grant")

    revoked = api(aac_simulator, "GET", "/v4/people/current", new["access_token"])
    assert revoked.status_code == 401
    assert exception_name(revoked) == "UnauthorizedException"
    assert refresh(aac_simulator, new["refresh_token"]).json()["error"] == "invalid_grant"
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["reuses"], stats["families_revoked"], stats["invalid_grant"]) == (
        1,
        1,
        1,
        2,
    )
    assert aac_simulator.family_info(new["refresh_token"]) == {
        "client_id": aac_simulator.client_id,
        "rotations": 1,
        "revoked": True,
    }


def test_concurrent_refreshes_with_one_token_let_exactly_one_win(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    callers = 8
    barrier = threading.Barrier(callers)

    def race() -> int:
        barrier.wait()
        return refresh(aac_simulator, aac_token_pair["refresh_token"]).status_code

    with ThreadPoolExecutor(callers) as pool:
        statuses = sorted(pool.map(lambda _: race(), range(callers)))

    assert statuses == [200] + [400] * (callers - 1)
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["reuses"], stats["families_revoked"]) == (1, 1, 1)
    assert stats["invalid_grant"] == callers - 1


def test_expired_access_token_is_rejected(aac_simulator: AACSimulator) -> None:
    pair = aac_simulator.mint_pair(access_ttl=0.3)
    assert pair["expires_in"] == 0.3
    assert api(aac_simulator, "GET", "/v4/people/current", pair["access_token"]).status_code == 200

    def rejection() -> requests.Response | None:
        response = api(aac_simulator, "GET", "/v4/people/current", pair["access_token"])
        return response if response.status_code == 401 else None

    expired = wait_for(rejection)

    assert "expired" in expired.json()["exception"]["message"]
    assert aac_simulator.stats()["api_unauthorized"] >= 1
    renewed = refresh(aac_simulator, pair["refresh_token"]).json()
    assert api(aac_simulator, "GET", "/v4/people/current", renewed["access_token"]).status_code == 200


def test_expired_refresh_token_is_an_invalid_grant_not_a_reuse(aac_simulator: AACSimulator) -> None:
    pair = aac_simulator.mint_pair(refresh_ttl=0.2)
    time.sleep(0.25)  # nothing to poll: a successful probe would itself rotate the token

    response = refresh(aac_simulator, pair["refresh_token"])

    assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
    stats = aac_simulator.stats()
    assert (stats["reuses"], stats["families_revoked"], stats["refreshes"]) == (0, 0, 0)


def test_wrong_or_missing_client_id_is_invalid_client_and_spends_nothing(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    other_client = aac_simulator.mint_pair(client_id="another-client")
    wrong = refresh(aac_simulator, aac_token_pair["refresh_token"], client_id="another-client")
    missing = requests.post(
        aac_simulator.token_url,
        data={"grant_type": "refresh_token", "refresh_token": aac_token_pair["refresh_token"]},
        timeout=TIMEOUT,
    )
    unknown = refresh(aac_simulator, other_client["refresh_token"], client_id="nobody")

    for response in (wrong, missing, unknown):
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert refresh(aac_simulator, aac_token_pair["refresh_token"]).status_code == 200
    assert aac_simulator.stats()["invalid_client"] == 3


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"refresh_token": "x", "client_id": "aac-sim-client"}, "invalid_request"),
        (
            {"grant_type": "password", "refresh_token": "x", "client_id": "aac-sim-client"},
            "unsupported_grant_type",
        ),
        ({"grant_type": "refresh_token", "client_id": "aac-sim-client"}, "invalid_request"),
    ],
)
def test_malformed_token_requests(aac_simulator: AACSimulator, form: dict[str, str], error: str) -> None:
    response = requests.post(aac_simulator.token_url, data=form, timeout=TIMEOUT)

    assert (response.status_code, response.json()["error"]) == (400, error)


def test_token_endpoint_wants_a_form_post(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    as_json = requests.post(
        aac_simulator.token_url,
        json={"grant_type": "refresh_token", "refresh_token": aac_token_pair["refresh_token"]},
        timeout=TIMEOUT,
    )
    as_get = requests.get(aac_simulator.token_url, timeout=TIMEOUT)

    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert as_get.status_code == 405
    assert aac_simulator.stats()["refreshes"] == 0


def test_injected_token_failures_carry_retry_headers_and_do_not_rotate(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.fail_token_endpoint(429, retry_after=1)
    aac_simulator.fail_token_endpoint(503)

    limited = refresh(aac_simulator, aac_token_pair["refresh_token"])
    unavailable = refresh(aac_simulator, aac_token_pair["refresh_token"])
    succeeded = refresh(aac_simulator, aac_token_pair["refresh_token"])

    assert limited.status_code == 429
    assert (limited.headers["Retry-After"], limited.headers["x-retry-after"]) == ("1", "1")
    assert unavailable.status_code == 503
    assert succeeded.status_code == 200
    stats = aac_simulator.stats()
    assert (stats["rate_limited"], stats["refreshes"], stats["token_requests"], stats["reuses"]) == (
        1,
        1,
        3,
        0,
    )


def test_injected_token_failure_with_a_custom_body_is_counted(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.fail_token_endpoint(400, body={"error": "invalid_grant"})

    response = refresh(aac_simulator, aac_token_pair["refresh_token"])

    assert response.json() == {"error": "invalid_grant"}
    assert aac_simulator.stats()["invalid_grant"] == 1


def test_lost_response_rotates_server_side(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.lose_token_response()

    with pytest.raises(requests.ConnectionError):
        refresh(aac_simulator, aac_token_pair["refresh_token"])

    assert aac_simulator.stats()["refreshes"] == 1
    assert aac_simulator.family_info(aac_token_pair["refresh_token"])["rotations"] == 1
    retry = refresh(aac_simulator, aac_token_pair["refresh_token"])
    assert (retry.status_code, retry.json()["error"]) == (400, "invalid_grant")
    assert aac_simulator.stats()["reuses"] == 1


def test_slow_token_endpoint_delays_only_the_shots_asked_for(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.slow_token_endpoint(0.3)

    started = time.monotonic()
    slow = refresh(aac_simulator, aac_token_pair["refresh_token"])
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    fast = refresh(aac_simulator, slow.json()["refresh_token"])
    fast_seconds = time.monotonic() - started

    assert (slow.status_code, fast.status_code) == (200, 200)
    assert slow_seconds >= 0.3 > fast_seconds


@pytest.mark.parametrize(("mode", "still_valid"), [("fixed", False), ("sliding", True)])
def test_refresh_deadline_modes(mode: Literal["fixed", "sliding"], still_valid: bool) -> None:
    ttl = 1.0
    with AACSimulator(refresh_deadline=mode, refresh_ttl=ttl) as sim:
        minted_at = time.monotonic()
        pair = sim.mint_pair()
        sleep_until(minted_at + 0.6 * ttl)
        rotated_at = time.monotonic()
        successor = refresh(sim, pair["refresh_token"]).json()["refresh_token"]
        # Past the original deadline, well before a sliding one.
        sleep_until(max(minted_at + 1.1 * ttl, rotated_at + 0.5 * ttl))

        response = refresh(sim, successor)

    assert (response.status_code == 200) is still_valid
    assert sim.stats()["reuses"] == 0


def test_revoking_a_family_kills_its_tokens(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.revoke_family_of(aac_token_pair["refresh_token"])

    assert api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"]).status_code == 401
    assert refresh(aac_simulator, aac_token_pair["refresh_token"]).json()["error"] == "invalid_grant"
    assert aac_simulator.stats()["families_revoked"] == 1
    with pytest.raises(KeyError):
        aac_simulator.revoke_family_of("not-a-token")


def test_bad_bearer_tokens_are_unauthorized(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    claims = jwt.decode(aac_token_pair["access_token"], options={"verify_signature": False})
    forged = jwt.encode(claims, "a-different-secret-of-32-bytes-xx", algorithm="HS256")
    with AACSimulator() as other:
        foreign = other.mint_pair()["access_token"]
    url = aac_simulator.base_url + "/v4/people/current"

    responses = [
        requests.get(url, timeout=TIMEOUT),
        requests.get(url, headers={"Authorization": "Basic dXNlcjpwdw=="}, timeout=TIMEOUT),
        api(aac_simulator, "GET", "/v4/people/current", "not.a.jwt"),
        api(aac_simulator, "GET", "/v4/people/current", forged),
        api(aac_simulator, "GET", "/v4/people/current", foreign),
    ]

    assert [response.status_code for response in responses] == [401] * 5
    assert {exception_name(response) for response in responses} == {"UnauthorizedException"}
    stats = aac_simulator.stats()
    assert (stats["api_calls"], stats["api_unauthorized"], stats["api_authorized"]) == (5, 5, 0)


# --------------------------------------------------------------------------- runs


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
    assert api(aac_simulator, "GET", path, token).json()["status"] in ("Created", "Pending", "InProgress")

    run = final_status(aac_simulator, path, token)

    assert (run["status"], run["planId"]) == (outcome, plan_id)
    assert run["createdAt"] <= run["startedAt"] <= run["finishedAt"]
    assert ("errorMessage" in run) is (outcome == "Failed")
    assert aac_simulator.stats()["runs_started"] == 1


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
    assert too_late.json()["status"] == "Complete"
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
    assert status.json() in ("Created", "Pending", "InProgress")
    detail = final_status(aac_simulator, f"/v4/jobGroups/{group['id']}?embed=jobs", token)
    outputs = api(aac_simulator, "GET", f"/v4/jobGroups/{group['id']}/outputs", token).json()

    assert (detail["status"], detail["wrangledDataset"]) == ("Failed", {"id": 101})
    assert detail["errorMessage"]
    assert detail["jobs"]["data"][0]["status"] == "Failed"
    assert "jobs" not in api(aac_simulator, "GET", f"/v4/jobGroups/{group['id']}", token).json()
    assert len(outputs["data"]) == outputs["count"] == 1


@pytest.mark.parametrize(
    "body", [None, {}, {"wrangledDataset": 100}, {"wrangledDataset": {"id": "100"}}, [1, 2]], ids=str
)
def test_job_group_request_is_validated(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], body: Any
) -> None:
    response = api(aac_simulator, "POST", "/v4/jobGroups", aac_token_pair["access_token"], json=body)

    assert (response.status_code, exception_name(response)) == (400, "ValidationException")
    assert aac_simulator.stats()["runs_started"] == 0


def test_non_json_body_is_unsupported(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    response = api(aac_simulator, "POST", "/v4/plans/1/run", aac_token_pair["access_token"], data="x=1")

    assert (response.status_code, exception_name(response)) == (415, "UnsupportedMediaTypeException")


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

    final = wait_for(finished)
    detail = api(aac_simulator, "GET", f"/v4/flowRuns/{flow_run_id}", token).json()

    assert final == "Failed"
    assert (detail["status"], detail["flow"]) == ("Failed", {"id": 11})
    assert detail["jobGroups"]["data"] == [{"id": job_group_id, "status": "Failed"}]
    assert detail["errorMessage"]


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
    assert exception_name(response) == "NotFoundException"
    assert response.json()["exception"]["message"]
    assert response.headers["x-trifacta-request-id"]


def test_listings_are_paged(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    token = aac_token_pair["access_token"]
    for plan_id in range(3, 31):
        aac_simulator.add_plan(plan_id)

    default = api(aac_simulator, "GET", "/v4/plans", token).json()
    tail = api(aac_simulator, "GET", "/v4/plans", token, params={"limit": 10, "offset": 25}).json()
    flows = api(aac_simulator, "GET", "/v4/flows", token).json()
    bad = api(aac_simulator, "GET", "/v4/plans", token, params={"limit": "-1"})

    assert (len(default["data"]), default["count"]) == (25, 30)
    assert default["data"][0] == {**default["data"][0], "id": 1, "name": "Daily sales"}
    assert [plan["id"] for plan in tail["data"]] == [26, 27, 28, 29, 30]
    assert [flow["id"] for flow in flows["data"]] == [10, 11]
    assert (bad.status_code, exception_name(bad)) == (400, "ValidationException")


# --------------------------------------------------------------------------- API faults


def test_injected_rate_limit_carries_aac_headers(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.fail_api(429, retry_after=2)

    limited = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])
    after = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])

    assert limited.status_code == 429
    assert exception_name(limited) == "RateLimitException"
    assert limited.headers["x-retry-after"] == "2"
    assert limited.headers["x-rate-limit-user-remaining"] == "0"
    assert int(limited.headers["x-rate-limit-user-reset"]) >= time.time()
    assert after.status_code == 200
    assert aac_simulator.stats()["rate_limited"] == 1


def test_injected_api_failure_matches_method_and_path(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    token = aac_token_pair["access_token"]
    aac_simulator.fail_api(503, times=2, path_prefix="/v4/plans", method="POST")

    unaffected = api(aac_simulator, "GET", "/v4/plans", token)
    failures = [api(aac_simulator, "POST", "/v4/plans/1/run", token) for _ in range(2)]
    recovered = api(aac_simulator, "POST", "/v4/plans/1/run", token)

    assert unaffected.status_code == 200
    assert [(r.status_code, exception_name(r)) for r in failures] == [
        (503, "ServiceUnavailableException")
    ] * 2
    assert recovered.status_code == 201
    assert aac_simulator.stats()["runs_started"] == 1


# --------------------------------------------------------------------------- plumbing


def test_stats_admin_endpoints_and_reset(aac_simulator: AACSimulator) -> None:
    assert aac_simulator.stats() == dict.fromkeys(STAT_KEYS, 0)
    minted = requests.post(
        f"{aac_simulator.base_url}/_sim/mint", json={"access_ttl": 60}, timeout=TIMEOUT
    ).json()
    assert minted["expires_in"] == 60
    assert refresh(aac_simulator, minted["refresh_token"]).status_code == 200

    over_http = requests.get(f"{aac_simulator.base_url}/_sim/stats", timeout=TIMEOUT).json()
    reset = requests.post(f"{aac_simulator.base_url}/_sim/reset", timeout=TIMEOUT).json()

    assert over_http == {**dict.fromkeys(STAT_KEYS, 0), "refreshes": 1, "token_requests": 1}
    assert reset == dict.fromkeys(STAT_KEYS, 0)
    assert aac_simulator.stats() == dict.fromkeys(STAT_KEYS, 0)


def test_sixty_four_concurrent_callers(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    callers = 64
    barrier = threading.Barrier(callers)

    def call(_: int) -> int:
        barrier.wait()
        return api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"]).status_code

    with ThreadPoolExecutor(callers) as pool:
        statuses = list(pool.map(call, range(callers)))

    assert statuses == [200] * callers
    assert aac_simulator.stats()["api_authorized"] == callers


def test_stop_ends_keep_alive_connections() -> None:
    def handler_threads() -> int:
        return sum("process_request_thread" in thread.name for thread in threading.enumerate())

    before = handler_threads()
    sim = AACSimulator().start()
    session = requests.Session()
    assert session.get(sim.base_url + "/v4/people/current", timeout=TIMEOUT).status_code == 401
    assert handler_threads() > before

    started = time.monotonic()
    sim.stop()

    assert time.monotonic() - started < 2
    wait_for(lambda: True if handler_threads() == before else None)
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    session.close()


@pytest.mark.aac_simulator(access_ttl=7, run_duration=0.05)
def test_marker_configures_the_fixture(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    assert aac_simulator.run_duration == 0.05
    assert aac_token_pair["expires_in"] == 7


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready_file, pair_file = tmp_path / "ready", tmp_path / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator"]
    command += ["--ready-file", str(ready_file), "--pair-file", str(pair_file), "--verbose"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = wait_for(lambda: ready_file.read_text() if ready_file.exists() else None, timeout=20)
        pair = json.loads(pair_file.read_text())
        mode = stat.S_IMODE(pair_file.stat().st_mode)
        person = requests.get(
            base_url + "/v4/people/current",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
            timeout=TIMEOUT,
        )
        stats = requests.get(base_url + "/_sim/stats", timeout=TIMEOUT).json()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert mode == 0o600
    assert pair["token_url"] == base_url + "/as/token"
    assert person.status_code == 200
    assert stats["api_authorized"] == 1
    assert stdout.strip() == f"AAC simulator listening on {base_url}"
    assert "/v4/people/current" in stderr  # --verbose logs requests ...
    leaked = any(pair[key] in stdout + stderr for key in ("access_token", "refresh_token"))
    assert not leaked  # ... but never tokens
