"""``airflow aac restore``: a pair a refresh received but could not store goes into the connection."""

from __future__ import annotations

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.cli.conftest import aac, hold_a_refreshed_pair, no_token_in
from tests.support.airflow_env import AirflowHome


def test_restore_stores_a_pair_a_refresh_held_back(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_restore"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        # AAC answered a refresh, and the pair could not be stored: it is held in the home's spool.
        _, answer = hold_a_refreshed_pair(airflow_pg_home, sim, conn_id)

        restored = aac(airflow_pg_home, "restore", conn_id, entry="airflow-aac")
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert f"Stored the held token pair in connection {conn_id!r}: generation 1." in restored.stdout
        stored = airflow_pg_home.get_connection_extra(conn_id)
        assert sim.refresh_token_status(stored["refresh_token"]) == "live"
        assert stored["refreshed_by"] == "worker-7:1234"
        assert "refreshed_mode" not in stored, "a pair held without a mode stores none"

        again = aac(airflow_pg_home, "restore", conn_id)
    assert again.returncode == 0
    assert "nothing to restore" in again.stdout
    every = restored.stdout + restored.stderr + again.stdout + again.stderr
    assert no_token_in(every, answer["access_token"], answer["refresh_token"])


def test_restore_of_a_missing_connection_says_so(airflow_pg_home: AirflowHome) -> None:
    result = aac(airflow_pg_home, "restore", "aac_cli_no_such_connection")
    assert result.returncode == 1
    assert "Connection 'aac_cli_no_such_connection' does not exist" in result.stderr
