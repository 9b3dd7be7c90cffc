"""PingOne's token-server modes, end to end: a reuse grace period, and a sliding expiry with a cap.

A lost answer (the connection closed after AAC rotated): the holder presents the token
once more at once, inside its lease. With a grace period on AAC's side (PingOne's
``refreshTokenRollingGracePeriodDuration``) that retry gets the pair AAC already issued,
and nothing is lost; the connection needs no setting for it. Without one, the retry
meets the invalid_grant the next refresh would have met after the lease, the chain is
recorded dead once, and nobody presents the token again.

A cap (PingOne's ``refreshTokenRollingDuration``) ends a family however recently it
rotated; the health check warns before it, not only before the sliding deadline.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_aac.core.token_state import DEAD_CHAIN, IN_FLIGHT
from tests.cli.conftest import aac
from tests.faults.scene import LEASE, answered, scene
from tests.support.airflow_env import AirflowHome, ApiServer

GRACE = {"reuse_grace": 20.0}
DAY = 86400.0
DEGRADED = 3


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_a_lost_answer_inside_a_20_s_grace_costs_no_chain(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server, token_server=GRACE) as s:
        s.token_rule().close_after_forward()
        result = s.run("force")

        assert result["ok"], result
        assert result["generation"] == 1
        assert result["seconds"] < LEASE, "the retry came inside the holder's lease"
        assert answered(s.token_proxy, "close_after_forward") == 1
        assert answered(s.token_proxy, "forward", "POST") == 1
        stats = s.sim.stats()
        assert (stats["refreshes"], stats["grace_replays"], stats["families_revoked"]) == (1, 1, 0)
        s.assert_chain_alive()  # the stored pair is the one AAC issued, and it is the live end
        assert IN_FLIGHT not in s.stored()

        following = s.run("force")
        assert following["ok"] and following["generation"] == 2, following
        s.assert_chain_alive()


def test_a_lost_answer_without_a_grace_ends_the_chain_once_and_says_so(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server) as s:
        s.token_rule().close_after_forward()
        first = s.run("force")

        assert first["error_type"] == "AACTokenChainBrokenError", first
        assert "invalid_grant" in first["error"]
        assert "its answer was lost in transit" in first["error"]
        assert "no reuse grace period covered the retry" in first["error"]
        stored = s.stored()
        assert DEAD_CHAIN in stored and IN_FLIGHT not in stored

        # No second reuse, no storm: later refreshes are told at once and send nothing.
        for _ in range(2):
            later = s.run("force")
            assert later["error_type"] == "AACTokenChainBrokenError", later
            assert "it is not presented again" in later["error"]
        stats = s.sim.stats()
        assert (stats["token_requests"], stats["refreshes"], stats["reuses"], stats["families_revoked"]) == (
            2,
            1,
            1,
            1,
        )


def _in_days(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_with_a_cap_the_health_check_warns_before_it_and_not_only_before_the_sliding_expiry(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    # AAC's side: a 30-day sliding expiry capped 10 days after "Generate".
    sliding = {"refresh_deadline": "sliding", "refresh_ttl": 30 * DAY, "refresh_cap": 10 * DAY}
    with scene(
        fault_home,
        "metadata_db",
        api_server=airflow_api_server,
        token_server=sliding,
        refresh_expires_at=_in_days(30),  # what the user read at "Generate": the sliding deadline
        refresh_family_expires_at=_in_days(10),  # and the cap, recorded once for this pair
    ) as s:
        assert s.run("force")["ok"]
        s.assert_chain_alive()
        status = aac(fault_home, "status", s.conn_id, "--json")

    assert status.returncode == DEGRADED, status.stdout + status.stderr[-2000:]
    chain = json.loads(status.stdout)["connections"][0]
    deadline = chain["refresh_token"]
    assert deadline["level"] == "warn" and deadline["source"] == "refresh_family_expires_at", deadline
    assert 9.9 < deadline["days_left"] <= 10
    assert any("absolute cap" in reason and "no refresh succeeds" in reason for reason in chain["reasons"])
