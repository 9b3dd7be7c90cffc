"""The in-process CLI answers as a fresh ``airflow`` process would: same rows, codes and words."""

from __future__ import annotations

import json

import pytest

from tests.support.airflow_cli import runs_in_process
from tests.support.airflow_home import AirflowCliError, AirflowHome


def test_only_metadata_db_commands_run_in_process() -> None:
    assert runs_in_process(["connections", "add", "x"])
    assert runs_in_process(["pools", "set", "p", "1", "d"])
    assert not runs_in_process(["db", "migrate"])
    assert not runs_in_process(["dags", "test", "d"])


@pytest.mark.parametrize("home_fixture", ["airflow_pg_home", "airflow_sqlite_home"])
def test_in_process_answers_match_a_fresh_process(home_fixture: str, request: pytest.FixtureRequest) -> None:
    home: AirflowHome = request.getfixturevalue(home_fixture)
    home.add_connection("cli_twice", "generic", host="https://example.test", extra={"k": "v"})
    stored = json.loads(home.run_cli("connections", "get", "cli_twice", "-o", "json").stdout)
    assert stored[0]["extra_dejson"] == {"k": "v"}

    again = ["connections", "add", "cli_twice", "--conn-type", "generic"]
    in_process = home.run_cli(*again, check=False)
    fresh = home.run_cli(*again, check=False, env={})  # an env override always gets its own process
    assert in_process.returncode == fresh.returncode == 1
    for answer in (in_process, fresh):
        assert "A connection with `conn_id`=cli_twice already exists." in answer.stdout + answer.stderr

    with pytest.raises(AirflowCliError, match="non-JSON in `extra`"):
        home.run_cli("connections", "add", "cli_bad", "--conn-type", "generic", "--conn-extra", "{")
    home.delete_connection("cli_twice")
    gone = home.run_cli("connections", "get", "cli_twice", check=False)
    assert gone.returncode == 1
