"""Version seams: Airflow's REST connection test runs the hook on a copy under a random id."""

from __future__ import annotations

from airflow_provider_aac.compat import connection_tested_as
from airflow_provider_aac.testing.airflow_env import ApiServer
from airflow_provider_aac.testing.simulator import AACSimulator


def test_outside_airflows_rest_test_there_is_no_other_id() -> None:
    assert connection_tested_as("aac_default") is None


def test_the_rest_test_answers_for_the_users_connection(
    airflow_api_server: ApiServer, aac_simulator: AACSimulator
) -> None:
    conn_id = "aac_compat_rest_test"
    airflow_api_server.add_aac_connection(conn_id, aac_simulator)
    listed = airflow_api_server.request_ok("GET", f"/api/v2/connections/{conn_id}")
    body = {k: listed[k] for k in ("connection_id", "conn_type", "host", "port", "extra")}
    answer = airflow_api_server.request_ok("POST", "/api/v2/connections/test", json=body)
    assert answer == {
        "status": True,
        "message": f"Connection {conn_id!r}: Connected to AAC as sim@example.com.",
    }

    unsaved = {"connection_id": "aac_compat_unsaved", "conn_type": "aac", "host": "127.0.0.1", "extra": "{}"}
    answer = airflow_api_server.request_ok("POST", "/api/v2/connections/test", json=unsaved)
    assert answer["status"] is False
    assert (
        "The host of connection 'aac_compat_unsaved' (127.0.0.1) has no http(s) scheme" in answer["message"]
    )
