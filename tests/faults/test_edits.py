"""People edit connections while a refresh runs; the new pair must survive it.

Finding 5 of the fault review: a UI save of another key (say ``refresh_expires_at``, as the
health check asks users to do) from a form opened before the refresh began dropped the
claim marker, the new pair was refused and lost, and the next refresh was a reuse. The
edit here goes through the real api-server exactly as the UI sends it: the extra as the
form showed it (tokens masked as ``***``), one key changed.
"""

from __future__ import annotations

import json

import pytest

from tests.faults.scene import scene
from tests.support.airflow_env import AirflowHome, ApiServer


def open_form(api: ApiServer, conn_id: str) -> dict[str, object]:
    """The connection as the UI's edit form receives it."""
    shown: dict[str, object] = api.request_ok("GET", f"/api/v2/connections/{conn_id}")
    return shown


def save_form(api: ApiServer, form: dict[str, object], **changes: object) -> None:
    """Save the form as opened earlier, with ``changes``: what the UI sends."""
    extra = {**json.loads(str(form["extra"])), **changes}
    assert extra["refresh_token"] == "***", "the form shows the token masked"
    api.request_ok(
        "PATCH",
        f"/api/v2/connections/{form['connection_id']}",
        json={
            "connection_id": form["connection_id"],
            "conn_type": form["conn_type"],
            "extra": json.dumps(extra),
        },
    )


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_a_ui_save_during_a_refresh_keeps_both_the_edit_and_the_new_pair(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server) as s:
        form = open_form(airflow_api_server, s.conn_id)  # opened before the refresh began
        answer = s.token_rule().hold_response()
        refresher = s.start("force")
        answer.wait_forwarded(timeout=60)
        assert "refresh_in_flight" in s.stored()
        save_form(airflow_api_server, form, refresh_expires_at="2027-06-30")
        assert "refresh_in_flight" not in s.stored(), "the save dropped the claim marker"
        answer.release()
        result = refresher.result()
        assert result["ok"], result
        stored = s.stored()
        assert stored["generation"] == 1
        assert stored["refresh_expires_at"] == "2027-06-30"
        s.assert_chain_alive()


def test_a_pair_pasted_during_a_refresh_wins_and_the_refresher_says_so(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server) as s:
        answer = s.token_rule().hold_response()
        refresher = s.start("force")
        answer.wait_forwarded(timeout=60)
        pasted = s.sim.mint_pair()
        s.edit(airflow_api_server, access_token=pasted["access_token"], refresh_token=pasted["refresh_token"])
        answer.release()
        result = refresher.result()
        assert result["ok"], result
        same = s.stored()["refresh_token"] == pasted["refresh_token"]
        assert same, "the pasted pair must be kept"
        assert s.sim.refresh_token_status(pasted["refresh_token"]) == "live"
        assert "now holds another refresh token than the one this process spent" in result["stderr"]
        assert "the stored one wins" in result["stderr"]


@pytest.mark.parametrize("mode", ["metadata_db", "lock_redis"])
def test_keys_saved_with_the_old_form_prefix_work_in_every_mode(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server) as s:
        stored = s.stored()
        legacy = {k: v for k, v in stored.items() if k not in ("access_token", "refresh_token")}
        legacy["extra__aac__access_token"] = stored["access_token"]
        legacy["extra__aac__refresh_token"] = stored["refresh_token"]
        airflow_api_server.request_ok(
            "PATCH",
            f"/api/v2/connections/{s.conn_id}",
            json={"connection_id": s.conn_id, "conn_type": "aac", "extra": json.dumps(legacy)},
        )
        result = s.run("force")
        assert result["ok"], result
        after = s.stored()
        assert after["generation"] == 1
        assert "extra__aac__refresh_token" not in after, "the first write stores the keys plain"
        s.assert_chain_alive()
