"""``airflow aac restore``: a pair a refresh received but could not store goes into the connection."""

from __future__ import annotations

import time

import requests
from cryptography.fernet import Fernet

from airflow_provider_aac.core.oauth import refresh_form
from airflow_provider_aac.core.rescue import HeldPair
from airflow_provider_aac.core.token_state import fingerprint
from airflow_provider_aac.testing.airflow_env import AirflowHome
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.tokens.rescue_places import LocalSpool
from tests.cli.conftest import aac, no_token_in


def test_restore_stores_a_pair_a_refresh_held_back(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_restore"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        spent = airflow_pg_home.get_connection_extra(conn_id)["refresh_token"]
        # AAC answered a refresh, and the pair could not be stored: it is held in the home's spool.
        answer = requests.post(sim.token_url, data=refresh_form(spent, sim.client_id), timeout=10).json()
        now = time.time()
        LocalSpool(airflow_pg_home.path / "aac_rescue", Fernet(airflow_pg_home.fernet_key.encode())).hold(
            HeldPair(
                conn_id,
                fingerprint(spent),
                answer["access_token"],
                answer["refresh_token"],
                answer["expires_in"],
                requested_at=now,
                held_at=now,
                by="worker-7:1234",
            )
        )

        restored = aac(airflow_pg_home, "restore", conn_id, entry="airflow-aac")
        assert restored.returncode == 0, restored.stderr[-3000:]
        assert f"Stored the held token pair in connection {conn_id!r}: generation 1." in restored.stdout
        stored = airflow_pg_home.get_connection_extra(conn_id)
        assert sim.refresh_token_status(stored["refresh_token"]) == "live"
        assert stored["refreshed_by"] == "worker-7:1234"

        again = aac(airflow_pg_home, "restore", conn_id)
    assert again.returncode == 0
    assert "nothing to restore" in again.stdout
    every = restored.stdout + restored.stderr + again.stdout + again.stderr
    assert no_token_in(every, answer["access_token"], answer["refresh_token"])


def test_restore_of_a_missing_connection_says_so(airflow_pg_home: AirflowHome) -> None:
    result = aac(airflow_pg_home, "restore", "aac_cli_no_such_connection")
    assert result.returncode == 1
    assert "Connection 'aac_cli_no_such_connection' does not exist" in result.stderr
