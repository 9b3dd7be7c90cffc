"""``airflow aac doctor``: the tenant's own API spec against what the provider relies on, spending nothing."""

from __future__ import annotations

import json
import re
import time

import jwt

from airflow_provider_aac.core.api_contract import RELIED_ON
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.cli.conftest import ENTRY_POINTS, aac, no_token_in
from tests.support.airflow_env import AirflowHome
from tests.support.processes import poll_until

DRIFT, FAILED = 2, 1


def test_doctor_passes_against_the_full_simulator_in_both_entry_points(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_doctor_full"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        extra = airflow_pg_home.get_connection_extra(conn_id)
        results = {entry: aac(airflow_pg_home, "doctor", conn_id, entry=entry) for entry in ENTRY_POINTS}
        as_json = aac(airflow_pg_home, "doctor", conn_id, "--json")
        stats, base_url = sim.stats(), sim.base_url

    for entry, result in results.items():
        assert result.returncode == 0, (entry, result.stdout[-3000:], result.stderr[-3000:])
        assert result.stdout.startswith(f"{conn_id}: API spec v2025.23.2 from {base_url}/v4/open-api-spec\n")
        for entry_point in RELIED_ON:
            assert re.search(
                rf"\n  ok +{entry_point.method} +{re.escape(entry_point.path)} \(", result.stdout
            )
        assert "MISSING" not in result.stdout
        assert f"\n{conn_id}: healthy\n" in result.stdout  # the checks of airflow aac status
        assert "Exit 0." in result.stdout
    report = json.loads(as_json.stdout)
    assert (as_json.returncode, report["ok"], report["exit_status"]) == (0, True, 0)
    assert report["spec"]["version"] == "v2025.23.2"
    assert [op["operation"] for op in report["spec"]["operations"]] == [e.operation_id for e in RELIED_ON]
    assert all(op["ok"] and op["missing"] == [] for op in report["spec"]["operations"])
    assert report["token_chain"]["verdict"] == "healthy"
    assert stats["token_requests"] == 0
    every = as_json.stdout + "".join(r.stdout + r.stderr for r in results.values())
    assert no_token_in(every, extra["access_token"], extra["refresh_token"])


def test_doctor_names_what_a_drifted_tenant_lacks(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_doctor_drift"
    removed = ("runFlow", "getJobGroupStatus", "listWrangledDatasets")
    with AACSimulator(without_operations=removed) as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        text = aac(airflow_pg_home, "doctor", conn_id)
        as_json = aac(airflow_pg_home, "doctor", conn_id, "--json")

    assert text.returncode == DRIFT, text.stderr[-3000:]
    assert "\n  MISSING  POST /v4/flows/{id}/run (runFlow)\n" in text.stdout
    assert "\n             missing: POST /v4/flows/{id}/run is not in the spec\n" in text.stdout
    assert "\n  MISSING  GET  /v4/jobGroups/{id}/status (getJobGroupStatus)\n" in text.stdout
    assert "\n  MISSING  GET  /v4/wrangledDatasets (listWrangledDatasets)\n" in text.stdout
    assert "lacks what the provider needs (listWrangledDatasets, runFlow, getJobGroupStatus)" in text.stdout
    assert "\n  ok       POST /v4/plans/{id}/run (runPlan)\n" in text.stdout
    report = json.loads(as_json.stdout)
    broken = [op["operation"] for op in report["spec"]["operations"] if not op["ok"]]
    assert (as_json.returncode, report["ok"], broken) == (
        DRIFT,
        False,
        ["listWrangledDatasets", "runFlow", "getJobGroupStatus"],
    )


def test_doctor_does_not_refresh_an_expired_access_token(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_doctor_expired"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, access_ttl=1)
        token = airflow_pg_home.get_connection_extra(conn_id)["access_token"]
        expiry = jwt.decode(token, options={"verify_signature": False})["exp"]
        poll_until(
            lambda: True if time.time() > expiry + 0.5 else None, timeout=10, what="the token to expire"
        )
        result = aac(airflow_pg_home, "doctor", conn_id)
        stats = sim.stats()

    assert result.returncode == FAILED, result.stderr[-3000:]
    assert "  ! The stored access token expired " in result.stdout
    assert f"doctor spends no refresh token. Refresh once (airflow aac refresh {conn_id})" in result.stdout
    assert (stats["token_requests"], stats["api_calls"]) == (0, 0)
