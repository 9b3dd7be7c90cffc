"""Token families over real HTTP: minting, claims, rotation, reuse, expiry and revocation.

Everything else in the suite trusts the simulator to enforce AAC's rotation and reuse
rules, so these tests pin those rules down first. No assertion compares token strings
directly: a failing comparison would print the tokens.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import jwt
import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.processes import poll_until
from tests.testing.simulator.helpers import TIMEOUT, api, refresh, sleep_until


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
    assert revoked.text == "Unauthorized"  # plain text, as AAC answers a 401
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

    expired = poll_until(rejection, timeout=TIMEOUT, interval=0.02, what="the expired token's 401")

    assert expired.text == "Unauthorized"  # AAC's plain-text 401 does not say why
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
    assert {response.text for response in responses} == {"Unauthorized"}
    stats = aac_simulator.stats()
    assert (stats["api_calls"], stats["api_unauthorized"], stats["api_authorized"]) == (5, 5, 0)


# --------------------------------------------------------------------------- PingOne's settings


class ManualClock:
    """A clock the test moves, so that grace periods and caps are crossed exactly, without sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_inside_the_grace_the_preceding_token_gets_the_answer_it_already_got() -> None:
    clock = ManualClock()
    with AACSimulator(reuse_grace=20.0, clock=clock) as sim:
        pair = sim.mint_pair()
        first = refresh(sim, pair["refresh_token"]).json()
        clock.now += 19.0
        again = refresh(sim, pair["refresh_token"])

        assert again.status_code == 200
        same_pair = again.json() == first
        assert same_pair, "a grace replay must return the pair already issued, not a new one"
        assert sim.refresh_token_status(first["refresh_token"]) == "live"
        stats = sim.stats()
        assert (stats["refreshes"], stats["grace_replays"], stats["reuses"], stats["families_revoked"]) == (
            1,
            1,
            0,
            0,
        )
        assert api(sim, "GET", "/v4/people/current", first["access_token"]).status_code == 200


def test_past_the_grace_a_reuse_revokes_refresh_and_access_tokens() -> None:
    clock = ManualClock()
    with AACSimulator(reuse_grace=20.0, clock=clock) as sim:
        pair = sim.mint_pair()
        first = refresh(sim, pair["refresh_token"]).json()
        clock.now += 20.5
        late = refresh(sim, pair["refresh_token"])

        assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
        assert sim.refresh_token_status(first["refresh_token"]) == "revoked"
        assert api(sim, "GET", "/v4/people/current", first["access_token"]).status_code == 401
        assert (sim.stats()["reuses"], sim.stats()["grace_replays"]) == (1, 0)


def test_the_grace_forgives_only_the_immediately_preceding_token() -> None:
    with AACSimulator(reuse_grace=60.0) as sim:
        pair = sim.mint_pair()
        second = refresh(sim, pair["refresh_token"]).json()
        third = refresh(sim, second["refresh_token"]).json()

        grandparent = refresh(sim, pair["refresh_token"])

        assert (grandparent.status_code, grandparent.json()["error"]) == (400, "invalid_grant")
        assert sim.refresh_token_status(third["refresh_token"]) == "revoked"
        assert sim.stats()["reuses"] == 1


def test_without_a_grace_any_reuse_revokes_the_family(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    assert aac_simulator.reuse_grace == 0
    refresh(aac_simulator, aac_token_pair["refresh_token"])
    assert refresh(aac_simulator, aac_token_pair["refresh_token"]).status_code == 400
    assert aac_simulator.stats()["families_revoked"] == 1


@pytest.mark.parametrize("grace", [-1.0, 86400.5])
def test_the_grace_stays_within_pingones_range(grace: float) -> None:
    with pytest.raises(ValueError, match="0 to 86400 seconds"):
        AACSimulator(reuse_grace=grace)


def test_a_sliding_deadline_stops_at_the_cap() -> None:
    clock = ManualClock()
    day = 86400.0
    with AACSimulator(
        refresh_deadline="sliding",
        refresh_ttl=30 * day,
        refresh_cap=45 * day,
        refresh_token_format="jwt",
        clock=clock,
    ) as sim:
        minted_at = clock.now
        token = sim.mint_pair()["refresh_token"]
        for _ in range(2):  # each rotation, 20 days apart, slides the deadline 30 days on
            clock.now += 20 * day
            token = refresh(sim, token).json()["refresh_token"]
        exp = jwt.decode(token, options={"verify_signature": False})["exp"]
        assert exp == int(minted_at + 45 * day), "the JWT's exp is the earlier of the slide and the cap"

        clock.now = minted_at + 45 * day + 1  # inside the sliding 30 days, past the cap
        response = refresh(sim, token)

        assert (response.status_code, response.json()["error"]) == (400, "invalid_grant")
        assert "expired" in response.json()["error_description"]
        assert sim.stats()["reuses"] == 0


def test_an_admin_disable_stops_refreshes_and_leaves_access_tokens_valid(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    disabled = requests.post(
        f"{aac_simulator.base_url}/_sim/disable",
        json={"refresh_token": aac_token_pair["refresh_token"]},
        timeout=TIMEOUT,
    )
    assert disabled.json() == {"disabled": True}

    refused = refresh(aac_simulator, aac_token_pair["refresh_token"])
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"]).status_code == 200
    assert aac_simulator.refresh_token_status(aac_token_pair["refresh_token"]) == "disabled"
    stats = aac_simulator.stats()
    assert (stats["families_disabled"], stats["families_revoked"], stats["reuses"]) == (1, 0, 0)
    unknown = requests.post(
        f"{aac_simulator.base_url}/_sim/disable", json={"refresh_token": "not-a-token"}, timeout=TIMEOUT
    )
    assert unknown.status_code == 404
