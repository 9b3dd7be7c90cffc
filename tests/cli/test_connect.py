"""``airflow aac connect``: a pair goes from a person's clipboard into the connection, unspent."""

from __future__ import annotations

import json

from airflow_provider_aac.dags.refresh import REFRESH_DAG_FILE
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.cli.conftest import aac, no_token_in, terminal
from tests.support.airflow_env import AirflowHome

ACCESS_PROMPT = "Access token (input hidden): "
REFRESH_PROMPT = "Refresh token (input hidden): "


def test_the_prompt_stores_a_checked_pair_without_spending_the_refresh_token(
    airflow_pg_home: AirflowHome,
) -> None:
    conn_id = "aac_cli_connect_prompt"
    with AACSimulator() as sim:
        pair = sim.mint_pair()
        screen = terminal(
            airflow_pg_home,
            [
                *("connect", conn_id, "--host", sim.base_url, "--refresh-expires-at", "2099-01-31"),
                *("--refresh-family-expires-at", "2099-06-30"),
            ],
            [(ACCESS_PROMPT, pair["access_token"]), (REFRESH_PROMPT, pair["refresh_token"])],
        )
        stats, issuer = sim.stats(), sim.issuer
        assert screen.returncode == 0, screen.text
        stored = airflow_pg_home.get_connection_extra(conn_id)
        assert sim.refresh_token_status(stored["refresh_token"]) == "live"
    assert stored["access_token"] == pair["access_token"]
    assert stored["refresh_token"] == pair["refresh_token"]
    assert stored["refresh_expires_at"] == "2099-01-31"
    assert stored["refresh_family_expires_at"] == "2099-06-30"
    assert stats["token_requests"] == 0 and stats["api_authorized"] == 1
    # Nothing typed came back: the prompt did not echo, and no claim printout holds a token.
    assert no_token_in(screen.text, pair["access_token"], pair["refresh_token"]), screen.text
    assert f"client id               {sim.client_id}" in screen.text
    assert f"issuer                  {issuer}" in screen.text
    assert "AAC accepts the access token: signed in" in screen.text
    assert "its exp claim; the provider counts it as ending 30s earlier, a margin for clocks" in screen.text
    assert "Refresh token not spent." in screen.text
    assert f"Created connection {conn_id!r} (generation 0)." in screen.text
    assert "api-server, scheduler, CLI  metadata_db" in screen.text
    # No API connection and no refresh DAG in this home: both are named, with the commands that add them.
    assert "an Airflow API connection" in screen.text
    assert "airflow connections add airflow_api --conn-type http" in screen.text
    assert "the refresh DAG 'aac_token_refresh'" in screen.text
    # tests/dags/test_refresh.py parses this line as a DAG file.
    assert REFRESH_DAG_FILE.format(dag_id="aac_token_refresh", conn_id=conn_id) in screen.text
    assert 'airflow pools set aac_token_refresh 1 "AAC token refresh"' in screen.text


def test_stdin_replaces_a_dead_pair_and_keeps_the_users_settings(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_connect_stdin"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, min_ttl=120)
        dead = airflow_pg_home.get_connection_extra(conn_id)["refresh_token"]
        sim.revoke_family_of(dead)
        assert aac(airflow_pg_home, "refresh", conn_id, "--force").returncode == 1
        assert "dead_chain" in airflow_pg_home.get_connection_extra(conn_id)
        pair = sim.mint_pair()

        result = aac(
            airflow_pg_home,
            "connect",
            conn_id,
            "--stdin",
            "--airflow-api-conn-id",
            "aac_cli_no_such_api",
            entry="airflow-aac",
            stdin=json.dumps({"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}),
        )
        status = aac(airflow_pg_home, "status", conn_id, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    stored = airflow_pg_home.get_connection_extra(conn_id)
    assert stored["refresh_token"] == pair["refresh_token"]
    assert stored["min_ttl"] == 120
    assert stored["airflow_api_conn_id"] == "aac_cli_no_such_api"
    assert stored["generation"] == 1
    assert "dead_chain" not in stored
    assert f"Updated connection {conn_id!r} (generation 1)." in result.stdout
    assert "the connection 'aac_cli_no_such_api' that 'airflow_api_conn_id' names" in result.stdout
    assert status.returncode == 0 and json.loads(status.stdout)["verdict"] == "healthy"
    assert no_token_in(result.stdout + result.stderr, pair["access_token"], pair["refresh_token"])


def test_a_pair_aac_rejects_is_not_stored(airflow_pg_home: AirflowHome) -> None:
    conn_id = "aac_cli_connect_rejected"
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim)
        working = airflow_pg_home.get_connection_extra(conn_id)
        revoked = sim.mint_pair()
        sim.revoke_family_of(revoked["refresh_token"])
        result = aac(
            airflow_pg_home,
            "connect",
            conn_id,
            "--stdin",
            stdin=f"{revoked['access_token']}\n{revoked['refresh_token']}\n",
        )
    assert result.returncode == 1
    assert "AAC answered 401" in result.stderr and "Nothing was stored." in result.stderr
    assert airflow_pg_home.get_connection_extra(conn_id) == working
    assert no_token_in(result.stdout + result.stderr, revoked["access_token"], revoked["refresh_token"])


def test_a_plain_http_host_on_another_machine_is_refused_before_the_check(
    airflow_pg_home: AirflowHome,
) -> None:
    conn_id = "aac_cli_connect_cleartext"
    with AACSimulator() as sim:
        pair = sim.mint_pair()
        result = aac(
            airflow_pg_home,
            "connect",
            conn_id,
            "--host",
            "http://aac.example.com",
            "--stdin",
            stdin=f"{pair['access_token']}\n{pair['refresh_token']}\n",
        )
        stats = sim.stats()
    assert result.returncode == 1
    assert "plain http:// to another machine" in result.stderr and "allow_insecure_http" in result.stderr
    assert "AAC accepts" not in result.stdout and stats["api_calls"] == 0
    assert airflow_pg_home.get_connection(conn_id) is None
    assert no_token_in(result.stdout + result.stderr, pair["access_token"], pair["refresh_token"])


def test_an_expired_access_token_is_stored_unchecked_and_the_next_step_is_told(
    airflow_pg_home: AirflowHome,
) -> None:
    conn_id = "aac_cli_connect_expired"
    with AACSimulator() as sim:
        pair = sim.mint_pair(access_ttl=0)
        result = aac(
            airflow_pg_home,
            "connect",
            conn_id,
            "--host",
            sim.base_url,
            "--stdin",
            stdin=f"{pair['access_token']}\n{pair['refresh_token']}\n",
        )
        stats = sim.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    assert stats["api_calls"] == 0 and stats["token_requests"] == 0
    assert "cannot be checked with AAC" in result.stdout
    assert "the first process that needs a token will spend the refresh token" in result.stdout
    assert f"airflow aac refresh {conn_id}" in result.stdout
    assert airflow_pg_home.get_connection_extra(conn_id)["refresh_token"] == pair["refresh_token"]


def test_without_a_terminal_or_a_flag_nothing_is_read(airflow_pg_home: AirflowHome) -> None:
    result = aac(
        airflow_pg_home, "connect", "aac_cli_connect_no_tty", "--host", "https://us1.alteryxcloud.com"
    )
    assert result.returncode == 1
    assert "Pass --stdin to read the tokens from it, or --from-file PATH." in result.stderr
    assert airflow_pg_home.get_connection("aac_cli_connect_no_tty") is None


def test_an_access_token_that_is_not_a_jwt_is_named_by_where_it_was_read(
    airflow_pg_home: AirflowHome,
) -> None:
    result = aac(
        airflow_pg_home,
        "connect",
        "aac_cli_connect_not_jwt",
        "--host",
        "https://us1.alteryxcloud.com",
        "--stdin",
        stdin=json.dumps({"access_token": "not-a-jwt", "refresh_token": "r-not-stored"}),
    )
    assert result.returncode == 1
    assert "The access token in standard input is not a JWT (DecodeError)." in result.stderr, result.stderr
    assert airflow_pg_home.get_connection("aac_cli_connect_not_jwt") is None
