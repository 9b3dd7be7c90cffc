"""Slow token answers, and clocks that disagree: exclusivity holds by deadline, not by hope.

Findings 1 and 8 of the fault review: a dripped answer ran past the holder's lease while
another process took over (the per-read timeout never tripped); the taker judged the
lease by its own clock; and a 25-second answer was abandoned at the 20-second read
timeout although it would have arrived, losing the pair.
"""

from __future__ import annotations

import pytest

from airflow_provider_aac.core.token_state import InFlight
from tests.faults.scene import scene
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.clock_offset import clock_offset_env, require_faketime


def test_a_dripped_answer_is_cut_off_before_the_lease_ends_and_nobody_sends_meanwhile(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    lease = 8.0
    with scene(fault_home, "metadata_db", api_server=airflow_api_server, refresh_lease=lease) as s:
        # 80 bytes a second: AAC's answer (about 900 bytes) would take over 10 s to arrive.
        drip = s.token_rule().drip(chunk_bytes=8, interval=0.1)
        holder = s.start("force")
        drip.wait_seen(timeout=60)
        marker = InFlight.from_json(s.stored()["refresh_in_flight"])
        assert marker is not None
        later = s.token_rule().forward()
        taker = s.start("force")
        cut = holder.result()
        assert cut["error_type"] == "AACRefreshOutcomeUnknownError", cut
        assert "no complete answer within" in cut["error"]
        margin = lease / 6
        drip.wait_done(timeout=30)
        # The holder hung up its end by its deadline (the proxy sees it at its next write).
        assert drip.done_at[0] <= marker.lease_until - margin + 0.5, "the attempt outlived its lease"

        after = taker.result()
        # AAC rotated on the first request; the taker's later send of the same token is what
        # physics leaves (the answer took longer than the lease), and its error names it.
        assert after["error_type"] == "AACTokenChainBrokenError", after
        assert "An earlier refresh of this connection was interrupted" in after["error"]
        assert len(later.seen_at) == 1
        assert later.seen_at[0] >= marker.lease_until + margin, (
            "the taker sent before the lease and margin ended"
        )


def test_a_slow_answer_inside_the_lease_is_waited_for_and_stored(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server, refresh_lease=40.0) as s:
        s.token_rule().delay_response(22.0)  # longer than the 20 s read timeout that used to give up
        result = s.run("force")
        assert result["ok"], result
        assert result["generation"] == 1
        assert result["seconds"] >= 22.0
        s.assert_chain_alive()


@pytest.mark.parametrize(("ahead", "offset"), [("taker", 14.0)])
def test_clock_skew_within_the_margin_never_shortens_a_lease(
    fault_home: AirflowHome, airflow_api_server: ApiServer, ahead: str, offset: float
) -> None:
    """One process's wall clock runs ``offset`` seconds off (libfaketime, from outside).

    Either way the taker's clock is 14 s ahead of the holder's, so it sees the lease end
    14 s early. The holder stops a margin (a sixth of the lease, 5 s) before its lease ends;
    the taker waits a margin after it, plus the takeover grace (6 s): together they absorb
    up to 16 s. Without the margins the taker would send at 22 s, before the answer (23 s).
    """
    require_faketime()
    lease = 30.0
    skewed = clock_offset_env(offset)
    with scene(fault_home, "metadata_db", api_server=airflow_api_server, refresh_lease=lease) as s:
        # AAC's answer arrives after the lease would have ended by the taker's clock alone.
        answer = s.token_rule().hold_response(timeout=lease - lease / 6 - 2.0)
        holder = s.start("force", env=skewed if ahead == "holder" else None)
        answer.wait_forwarded(timeout=60)
        taker = s.start("force", env=skewed if ahead == "taker" else None)
        stored = holder.result()
        assert stored["ok"], stored
        taken = taker.result()
        assert taken["ok"], taken
        assert taken["generation"] == 1, "the taker found the holder's pair instead of refreshing"
        assert s.sim.stats()["token_requests"] == 1
        s.assert_chain_alive()
