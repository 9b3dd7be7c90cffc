"""``airflow aac status``: one word per chain, details without a token, and an exit status to alert on."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.cli.conftest import ENTRY_POINTS, aac, hold_a_refreshed_pair, no_token_in
from tests.support.airflow_env import AirflowHome

DEGRADED, DEAD = 3, 4


def _in_days(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_healthy_chain_exits_0_in_both_entry_points(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_status_healthy"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, refresh_expires_at=_in_days(90))
        assert aac(airflow_pg_home, "refresh", conn_id, "--force").returncode == 0
        extra = airflow_pg_home.get_connection_extra(conn_id)
        results = {entry: aac(airflow_pg_home, "status", conn_id, entry=entry) for entry in ENTRY_POINTS}
        as_json = aac(airflow_pg_home, "status", conn_id, "--json")
    for entry, result in results.items():
        assert result.returncode == 0, (entry, result.stderr[-3000:])
        assert result.stdout.startswith(f"{conn_id}: healthy\n"), result.stdout
        assert re.search(r"\n  generation +1\n", result.stdout)
        by = re.escape(extra["refreshed_by"])
        assert re.search(rf"\n  last refresh +\S+ by {by} in metadata_db mode\n", result.stdout)
        assert re.search(r"\n  refresh-token deadline +\S+ \((89\.9\d*|90\.0) days left\)\n", result.stdout)
        # connect showed the exp claim; status says where its different time comes from.
        assert "by this machine's clock: when its refresh asked AAC, plus AAC's expires_in" in result.stdout
    assert as_json.returncode == 0
    report = json.loads(as_json.stdout)
    chain = report["connections"][0]
    assert report["verdict"] == "healthy" and chain["verdict"] == "healthy" and chain["reasons"] == []
    assert chain["generation"] == 1
    assert 200 < chain["access_token"]["seconds_left"] <= 300
    assert chain["last_refresh"]["by"] == extra["refreshed_by"]
    assert chain["last_refresh"]["mode"] == extra["refreshed_mode"] == "metadata_db"
    assert chain["refresh_token"]["level"] == "ok" and 89.9 < chain["refresh_token"]["days_left"] <= 90
    assert chain["modes"] == {
        "api-server, scheduler, CLI": "metadata_db",
        "tasks and triggers": "single_writer",
        "refresh DAG task": "single_writer",
    }
    assert {k: chain[k] for k in ("in_flight", "interrupted", "held_pair", "dead_chain")} == dict.fromkeys(
        ("in_flight", "interrupted", "held_pair", "dead_chain")
    )
    every = as_json.stdout + "".join(r.stdout + r.stderr for r in results.values())
    assert no_token_in(every, extra["access_token"], extra["refresh_token"])


def test_the_last_refresh_names_the_mode_it_ran_in_or_that_none_was_recorded(
    airflow_pg_home: AirflowHome, airflow_api_server: object
) -> None:
    conn_id, older_id = "aac_cli_status_lock_mode", "aac_cli_status_mode_unrecorded"
    lock_id, api_conn_id = "aac_cli_status_lock", "aac_cli_status_api"
    airflow_pg_home.add_lock_connection(lock_id, "postgres")
    airflow_pg_home.add_airflow_api_connection(api_conn_id)
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(
            conn_id,
            sim,
            refresh_mode="lock",
            lock_conn_id=lock_id,
            airflow_api_conn_id=api_conn_id,
            refresh_expires_at=_in_days(90),
        )
        refresh = aac(airflow_pg_home, "refresh", conn_id, "--force")
        extra = airflow_pg_home.get_connection_extra(conn_id)
        table = aac(airflow_pg_home, "status", conn_id)
        as_json = aac(airflow_pg_home, "status", conn_id, "--json")
        # Refreshed by a provider that did not record the mode yet.
        airflow_pg_home.add_aac_connection(
            older_id,
            sim,
            generation=3,
            refreshed_at="2026-01-02T03:04:05.000+00:00",
            refreshed_by="worker-3:1234",
            refresh_expires_at=_in_days(90),
        )
        older_table = aac(airflow_pg_home, "status", older_id)
        older_json = aac(airflow_pg_home, "status", older_id, "--json")
    assert refresh.returncode == 0, refresh.stderr[-3000:]
    assert f"Refreshed connection {conn_id!r} in lock mode: generation 0 -> 1" in refresh.stdout
    assert extra["refreshed_mode"] == "lock" and extra["generation"] == 1
    by = re.escape(extra["refreshed_by"])
    assert table.returncode == 0, table.stdout + table.stderr[-3000:]
    assert re.search(rf"\n  last refresh +\S+ by {by} in lock mode\n", table.stdout), table.stdout
    last = json.loads(as_json.stdout)["connections"][0]["last_refresh"]
    assert last["by"] == extra["refreshed_by"] and last["mode"] == "lock"
    assert older_table.returncode == 0, older_table.stdout + older_table.stderr[-3000:]
    unrecorded = r"\n  last refresh +2026-01-02T03:04:05\.000Z by worker-3:1234 \(mode not recorded\)\n"
    assert re.search(unrecorded, older_table.stdout), older_table.stdout
    older_last = json.loads(older_json.stdout)["connections"][0]["last_refresh"]
    # Never refreshed here: the expiry shown is the exp claim less the skew margin, and says so.
    shown = re.search(
        r"left \(until (\S+)\): its exp claim says (\S+); the provider counts it as ending 30s earlier",
        older_table.stdout,
    )
    assert shown, older_table.stdout
    until, exp = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in shown.groups())
    assert exp - until == timedelta(seconds=30)
    assert older_last == {"at": "2026-01-02T03:04:05.000Z", "by": "worker-3:1234", "mode": None}
    every = refresh.stdout + refresh.stderr + table.stdout + as_json.stdout
    assert no_token_in(every, extra["access_token"], extra["refresh_token"])


def test_a_revoked_family_is_dead_once_a_refresh_meets_it(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_status_dead"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        extra = airflow_pg_home.get_connection_extra(conn_id)
        sim.revoke_family_of(extra["refresh_token"])
        refresh = aac(airflow_pg_home, "refresh", conn_id, "--force")
        table = aac(airflow_pg_home, "status", conn_id)
        as_json = aac(airflow_pg_home, "status", conn_id, "--json")
    assert refresh.returncode == 1 and "invalid_grant" in refresh.stderr
    assert table.returncode == DEAD and table.stdout.startswith(f"{conn_id}: dead\n"), table.stdout
    assert f"store it: airflow aac connect {conn_id}" in table.stdout
    chain = json.loads(as_json.stdout)["connections"][0]
    assert as_json.returncode == DEAD and chain["verdict"] == "dead"
    assert chain["dead_chain"] is not None and chain["dead_chain"]["by"]
    every = refresh.stdout + refresh.stderr + table.stdout + table.stderr + as_json.stdout + as_json.stderr
    assert no_token_in(every, extra["access_token"], extra["refresh_token"])


def test_a_held_pair_and_a_near_deadline_are_degraded(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_status_degraded"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, refresh_expires_at=_in_days(10))
        near_deadline = aac(airflow_pg_home, "status", conn_id, "--json")
        spent, answer = hold_a_refreshed_pair(airflow_pg_home, sim, conn_id)
        held = aac(airflow_pg_home, "status", conn_id, "--warn-days", "5", "--fail-days", "2")
    deadline_chain = json.loads(near_deadline.stdout)["connections"][0]
    assert near_deadline.returncode == DEGRADED and deadline_chain["refresh_token"]["level"] == "warn"
    assert held.returncode == DEGRADED, held.stdout + held.stderr
    assert "held at" in held.stdout and "by worker-7:1234" in held.stdout
    assert f"store it now: airflow aac restore {conn_id}" in held.stdout
    assert no_token_in(held.stdout + held.stderr, answer["access_token"], answer["refresh_token"], spent)


def test_without_a_conn_id_every_aac_connection_is_listed_and_the_worst_decides(
    airflow_pg_home: AirflowHome,
) -> None:
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection("aac_cli_status_all_a", sim)
        airflow_pg_home.add_connection("aac_cli_status_all_b", "aac", host=sim.base_url, extra={"x": 1})
        result = aac(airflow_pg_home, "status", "--json")
    report = json.loads(result.stdout)
    verdicts = {chain["conn_id"]: chain["verdict"] for chain in report["connections"]}
    assert verdicts["aac_cli_status_all_a"] in ("healthy", "degraded", "dead")
    assert verdicts["aac_cli_status_all_b"] == "unreadable"
    assert "has no access_token and no refresh_token" in json.dumps(report)
    assert result.returncode != 0


def test_a_lock_connection_that_does_not_exist_degrades_instead_of_crashing(
    airflow_pg_home: AirflowHome,
) -> None:
    conn_id = "aac_cli_status_no_lock"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, lock_conn_id="aac_cli_no_such_lock")
        result = aac(airflow_pg_home, "status", conn_id)
    assert result.returncode == DEGRADED, result.stderr[-3000:]
    assert "Could not look for a held pair: Connection 'aac_cli_no_such_lock'" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_plain_http_airflow_api_elsewhere_degrades_until_it_opts_in(airflow_pg_home: AirflowHome) -> None:
    conn_id, api = "aac_cli_status_cleartext", "aac_cli_status_cleartext_api"
    home = airflow_pg_home
    with AACSimulator() as sim:
        home.add_connection(
            api, "http", host="http://airflow-apiserver.invalid:8080", login="u", password="p"
        )
        home.add_aac_connection(conn_id, sim, airflow_api_conn_id=api, refresh_expires_at=_in_days(90))
        refused = aac(home, "status", conn_id)
        home.delete_connection(api)
        home.add_connection(
            api, "http", host="http://airflow-apiserver.invalid:8080", extra={"allow_insecure_http": True}
        )
        opted_in = aac(home, "status", conn_id)
    assert refused.returncode == DEGRADED, refused.stderr[-3000:]
    assert "no refreshed pair can be written through the Airflow API" in refused.stdout
    assert f"connection {api!r} (http://airflow-apiserver.invalid:8080) is plain http://" in refused.stdout
    assert '"allow_insecure_http": true' in refused.stdout
    assert opted_in.returncode == 0, opted_in.stdout + opted_in.stderr[-3000:]
