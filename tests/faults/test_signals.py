"""Signals at each step of a refresh: claim, POST out, answer in, store.

Finding 7 of the fault review: SIGKILL, SIGTERM and ``execution_timeout`` between the
token POST and the store were untested. A SIGTERM or an alarm there must wait until the
pair is stored; a SIGKILL cannot wait, so what it costs depends on the step, and the
next refresher must either finish the job or say exactly what was lost.
"""

from __future__ import annotations

import signal

import psycopg2
import pytest

from tests.faults.scene import Scene, scene
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.processes import poll_until

SHORT_LEASE = 4.0


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_sigterm_while_the_answer_is_on_its_way_is_delivered_after_the_store(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server) as s:
        answer = s.token_rule().hold_response()
        refresher = s.start("force")
        answer.wait_forwarded(timeout=60)
        refresher.signal(signal.SIGTERM)
        answer.release()
        result = refresher.result()
        assert result["error_type"] == "Terminated", result
        assert result["generation"] == 1, "the pair must be stored before the signal takes effect"
        s.assert_chain_alive()
        assert "SIGTERM arrived while an AAC token refresh was waiting" in result["stderr"]


def test_execution_timeout_while_the_answer_is_on_its_way_fires_after_the_store(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server) as s:
        s.token_rule().hold_response(timeout=5)  # the alarm (after 2 s) fires while it is held
        result = s.run("timeout:2")
        assert result["error_type"] == "AirflowTaskTimeout", result
        assert result["generation"] == 1, "the pair must be stored before the timeout takes effect"
        s.assert_chain_alive()
        assert "SIGALRM arrived while" in result["stderr"]


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_sigkill_after_the_claim_before_anything_reached_aac_costs_nothing(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        post = s.token_rule().hold_request()
        victim = s.start("force")
        post.wait_seen(timeout=60)
        victim.signal(signal.SIGKILL)
        assert victim.killed() == -signal.SIGKILL
        post.discard()  # it never reaches AAC
        result = s.run("force")
        assert result["ok"], result
        assert "did not finish; the stored refresh token may have been spent by it" in result["stderr"]
        assert result["generation"] == 1
        s.assert_chain_alive()


@pytest.mark.parametrize("step", ["post_out", "answer_in"])
def test_sigkill_once_aac_has_the_request_loses_the_pair_and_the_next_error_says_so(
    fault_home: AirflowHome, airflow_api_server: ApiServer, step: str
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        rule = s.token_rule().hold_request() if step == "post_out" else s.token_rule().hold_response()
        victim = s.start("force")
        rule.wait_seen(timeout=60)
        if step == "answer_in":
            rule.wait_forwarded(timeout=60)
        victim.signal(signal.SIGKILL)
        victim.killed()
        rule.release()  # a request already on the wire still reaches AAC, which rotates
        rule.wait_forwarded(timeout=60)

        after = s.run("force")
        assert after["error_type"] == "AACTokenChainBrokenError", after
        assert "An earlier refresh of this connection was interrupted" in after["error"]
        assert "it most likely spent the token and its answer was lost" in after["error"]
        assert f"airflow connections add {s.conn_id}" in after["error"]

        requests_before = s.sim.stats()["token_requests"]
        again = s.run("force")
        assert again["error_type"] == "AACTokenChainBrokenError", again
        assert "it is not presented again" in again["error"]
        assert s.sim.stats()["token_requests"] == requests_before, "a dead chain is not presented again"


def kill_while_storing(s: Scene, action: str) -> None:
    """SIGKILL a refresher of ``action`` once AAC has answered and its store write is on the wire."""
    assert s.api_proxy is not None
    s.api_proxy.on("PATCH", times=1).forward()  # the claim
    store = s.api_proxy.on("PATCH", times=1).hold_request()  # the new pair
    victim = s.start(action)
    store.wait_seen(timeout=60)
    victim.signal(signal.SIGKILL)
    victim.killed()
    store.discard()


@pytest.mark.parametrize("mode", ["lock_postgres", "lock_redis"])
def test_sigkill_while_storing_in_lock_mode_is_completed_from_the_lock_backend(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        kill_while_storing(s, "force")
        assert s.stored()["generation"] == 0
        for held in s.held_on_disk():
            held.unlink()  # the next refresher runs on another machine: only the lock backend has it

        result = s.run("force")
        assert result["ok"], result
        assert "completing the token pair that" in result["stderr"]
        assert result["generation"] == 1
        assert s.sim.stats()["refreshes"] == 1, "the held pair was stored, not replaced by a new refresh"
        s.assert_chain_alive()


def test_sigkill_while_storing_in_single_writer_mode_is_completed_by_the_next_run_on_that_worker(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "single_writer", api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        kill_while_storing(s, "writer")
        assert s.stored()["generation"] == 0
        assert len(s.held_on_disk()) == 1, "the pair is held in the worker's spool"

        result = s.run("writer")
        assert result["ok"], result
        assert "completing the token pair that" in result["stderr"]
        assert result["generation"] == 1
        assert s.sim.stats()["refreshes"] == 1, "the held pair was stored, not replaced by a new refresh"
        assert s.held_on_disk() == []
        s.assert_chain_alive()


def test_sigkill_while_storing_in_metadata_db_mode_is_completed_from_the_local_spool(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        answer = s.token_rule().hold_response()
        victim = s.start("force")
        answer.wait_forwarded(timeout=60)
        row_lock = psycopg2.connect(fault_home.sql_alchemy_conn.replace("postgresql+psycopg2", "postgresql"))
        try:
            with row_lock.cursor() as cursor:  # someone else's transaction holds the row
                cursor.execute("SELECT 1 FROM connection WHERE conn_id = %s FOR UPDATE", (s.conn_id,))
            answer.release()
            poll_until(
                lambda: s.held_on_disk() or None,
                timeout=60,
                interval=0.05,
                what="the new pair to be held in the local spool",
            )
            victim.signal(signal.SIGKILL)
            victim.killed()
        finally:
            row_lock.rollback()
            row_lock.close()
        assert s.stored()["generation"] == 0

        result = s.run("force")
        assert result["ok"], result
        assert "completing the token pair that" in result["stderr"]
        assert result["generation"] == 1
        assert s.held_on_disk() == []
        s.assert_chain_alive()


def test_a_frozen_holder_loses_its_redis_lock_and_does_not_send_after_thawing(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "lock_redis", api_server=airflow_api_server, refresh_lease=SHORT_LEASE) as s:
        assert s.api_proxy is not None
        claim = s.api_proxy.on("PATCH", times=1).hold_response()
        frozen = s.start("force")
        claim.wait_forwarded(timeout=60)  # its claim is stored; it waits for the answer
        frozen.signal(signal.SIGSTOP)
        try:
            claim.release()
            taker = s.run("force")  # gets the lock once the frozen holder's expires
        finally:
            frozen.signal(signal.SIGCONT)
        assert taker["ok"], taker
        assert taker["generation"] == 1
        thawed = frozen.result()
        assert thawed["ok"] is False, thawed
        assert s.sim.stats()["token_requests"] == 1, "the thawed holder must not send"
        s.assert_chain_alive()
