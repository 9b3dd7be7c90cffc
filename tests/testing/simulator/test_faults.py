"""Injected faults on the token endpoint and the /v4 API: failures, lost responses, delays."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.testing.simulator.helpers import api, exception_name, refresh


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


def test_injected_rate_limit_carries_aac_headers(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    aac_simulator.fail_api(429, retry_after=2)

    limited = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])
    after = api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"])

    assert limited.status_code == 429
    assert exception_name(limited) == "TooManyRequestsException"
    assert limited.headers["x-retry-after"] == "2"
    assert limited.headers["x-rate-limit-user-remaining"] == "0"
    assert int(limited.headers["x-rate-limit-user-reset"]) >= time.time() * 1000  # epoch ms
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
