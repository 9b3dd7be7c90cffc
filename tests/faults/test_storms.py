"""No fault turns into a storm of token requests.

Finding 6 of the fault review: after ``invalid_grant`` every later call presented the dead
token again (108 ``invalid_grant`` answers in two minutes in one run), and a 401 that is
not about expiry (a disabled user, a token of another workspace) rotated the chain once
per API call.
"""

from __future__ import annotations

import pytest

from tests.faults.scene import scene
from tests.support.airflow_env import AirflowHome, ApiServer

CALLS = 10


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_a_dead_chain_is_presented_once_then_reported_without_token_requests(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server) as s:
        s.sim.revoke_family_of(s.stored()["refresh_token"])  # an admin revoked the user's tokens
        result = s.run(f"calls:{CALLS}")
        errors = result["errors"]
        assert len(errors) == CALLS, result
        assert s.sim.stats()["token_requests"] == 1, "the dead token was presented more than once"
        assert "(invalid_grant)" in errors[0]
        for error in errors[1:]:
            assert "it is not presented again" in error
            assert f"airflow connections add {s.conn_id}" in error
        assert s.stored()["dead_chain"]["by"], "the dead chain is recorded for every process"

        elsewhere = s.run("force")
        assert elsewhere["error_type"] == "AACTokenChainBrokenError"
        assert s.sim.stats()["token_requests"] == 1

        fresh = s.sim.mint_pair()  # the user stores a new pair: the record no longer applies
        s.edit(airflow_api_server, access_token=fresh["access_token"], refresh_token=fresh["refresh_token"])
        healed = s.run("force")
        assert healed["ok"], healed
        assert "dead_chain" not in s.stored()
        assert s.sim.refresh_token_status(s.stored()["refresh_token"]) == "live"


def test_a_401_on_a_token_just_issued_is_not_answered_with_more_rotations(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server) as s:
        # AAC rejects every call as a disabled user would be rejected, whatever the token.
        s.sim.fail_api(401, times=4 * CALLS, path_prefix="/v4/people/current")
        result = s.run(f"calls:{CALLS}")
        errors = result["errors"]
        assert len(errors) == CALLS, result
        assert s.sim.stats()["refreshes"] == 1, "one replacement, then the cool-down"
        for error in errors[1:]:
            assert "AAC answered 401" in error
            assert "so its age is not the problem and it was not replaced again" in error
            assert "usually means the token's user was disabled or lost access" in error
        s.assert_chain_alive()
