"""``airflow aac refresh``: one refresh, only when due unless forced, never in single-writer mode."""

from __future__ import annotations

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.cli.conftest import aac, no_token_in
from tests.support.airflow_env import AirflowHome


def test_refresh_spends_only_when_due_or_forced(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_refresh"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        not_due = aac(airflow_pg_home, "refresh", conn_id)
        unspent = sim.stats()["token_requests"]
        forced = aac(airflow_pg_home, "refresh", conn_id, "--force", entry="airflow-aac")
        stats = sim.stats()
        stored = airflow_pg_home.get_connection_extra(conn_id)
        assert sim.refresh_token_status(stored["refresh_token"]) == "live"
    assert not_due.returncode == 0 and "No refresh needed" in not_due.stdout and unspent == 0
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert f"Refreshed connection {conn_id!r} in metadata_db mode: generation 0 -> 1" in forced.stdout
    assert stats["refreshes"] == 1 and stored["generation"] == 1 and stored["refreshed_mode"] == "metadata_db"
    assert no_token_in(not_due.stdout + forced.stdout + forced.stderr, stored["refresh_token"])


def test_single_writer_mode_without_an_api_connection_refuses_and_names_the_trigger(
    airflow_pg_home: AirflowHome,
) -> None:
    conn_id = "aac_cli_refresh_single_writer"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, refresh_mode="single_writer")
        result = aac(airflow_pg_home, "refresh", conn_id, "--force")
        stats = sim.stats()
    assert result.returncode == 1
    assert "only the refresh DAG 'aac_token_refresh' may spend" in result.stderr
    assert "airflow dags trigger aac_token_refresh --conf '{\"aac_force_generation\": 0}'" in result.stderr
    assert stats["token_requests"] == 0


def test_single_writer_mode_asks_the_refresh_dag_and_never_spends_itself(
    airflow_pg_home: AirflowHome, airflow_api_server: object
) -> None:
    conn_id = "aac_cli_refresh_ask_dag"
    api_conn_id = "aac_cli_refresh_ask_dag_api"
    airflow_pg_home.add_airflow_api_connection(api_conn_id)
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(
            conn_id,
            sim,
            airflow_api_conn_id=api_conn_id,
            refresh_dag_id="aac_cli_no_refresh_dag",
            publish_wait=3,
        )
        before = airflow_pg_home.get_connection_extra(conn_id)["refresh_token"]
        result = aac(airflow_pg_home, "refresh", conn_id, "--force")
        stats = sim.stats()
        assert sim.refresh_token_status(before) == "live"
    assert "Single-writer mode: asking the refresh DAG 'aac_cli_no_refresh_dag'" in result.stdout
    # The DAG does not exist, so nothing is published: the command says so and has spent nothing.
    assert result.returncode == 1
    assert "published no fresh access token within 3 s" in result.stderr
    assert stats["token_requests"] == 0
    assert airflow_pg_home.get_connection_extra(conn_id)["refresh_token"] == before
