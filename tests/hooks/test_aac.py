"""AACHook end to end: a real metadata DB on PostgreSQL, a real api-server, the simulator.

The hook runs in a fresh interpreter configured for the home, as a server process (the
way Airflow's own components and the in-process test modes have ORM access), because an
interpreter's Airflow settings are fixed at import. The script prints only counts and
booleans; the test process holds the simulator and injects its faults.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.spec_summary import SPEC_COMPLETE

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys
    from airflow_provider_aac.hooks.aac import AACHook

    conn_id, phase = sys.argv[1], sys.argv[2]
    hook = AACHook(conn_id)
    out = {}
    if phase == "request":
        out["request_after_401"] = hook.request("GET", "/v4/people/current").status_code
        print("RESULT " + json.dumps(out))
        sys.exit(0)
    before = hook.tokens.read()[1].generation
    session = hook.get_conn()
    base = hook.base_url
    out["session_after_401"] = session.get(base + "/v4/people/current").status_code
    out["session_has_bearer"] = session.get(base + "/v4/people/current").status_code
    token = hook.get_access_token()
    out["async_token_matches"] = asyncio.run(hook.aget_access_token()) == token
    out["async_request"] = asyncio.run(hook.arequest("GET", "/v4/plans")).status_code
    out["test_connection"] = list(hook.test_connection())
    forced = hook.refresh_tokens(force=True)
    out["forced"] = {k: forced.as_dict()[k] for k in ("refreshed", "mode")}
    out["generations"] = [before, forced.generation]
    out["not_due"] = hook.refresh_tokens().refreshed
    print("RESULT " + json.dumps(out))
    """
)


def run_hook(home: AirflowHome, conn_id: str, phase: str) -> dict[str, Any]:
    code = SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{conn_id!r}, {phase!r}")
    result = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    assert "eyJ" not in result.stdout + result.stderr, "a JWT reached the output"
    parsed: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return parsed


def test_hook_in_metadata_db_mode_replaces_a_rejected_token_once(airflow_pg_home: AirflowHome) -> None:
    # Each phase starts from a pair the provider has not refreshed yet: a 401 on a token the
    # provider issued moments ago is not replaced again (see tests/faults).
    with AACSimulator(access_ttl=300) as sim:
        airflow_pg_home.add_aac_connection("aac_hook_e2e", sim)
        airflow_pg_home.add_aac_connection("aac_hook_e2e_session", sim)
        sim.fail_api(401, times=1, path_prefix="/v4/people/current")
        first = run_hook(airflow_pg_home, "aac_hook_e2e", "request")
        sim.fail_api(401, times=1, path_prefix="/v4/people/current")
        out = run_hook(airflow_pg_home, "aac_hook_e2e_session", "session")
        stats = sim.stats()
    assert first["request_after_401"] == 200
    assert out["session_after_401"] == 200 and out["session_has_bearer"] == 200
    assert out["async_token_matches"] is True and out["async_request"] == 200
    assert out["test_connection"] == [True, f"Connected to AAC as sim@example.com. {SPEC_COMPLETE}"]
    assert out["forced"] == {"refreshed": True, "mode": "metadata_db"}
    assert out["generations"] == [0, 2], "the session's 401 and one forced refresh, each stored"
    assert out["not_due"] is False
    assert stats["refreshes"] == 3 and stats["reuses"] == 0 and stats["invalid_grant"] == 0
    assert airflow_pg_home.get_connection_extra("aac_hook_e2e")["generation"] == 1
    stored = airflow_pg_home.get_connection_extra("aac_hook_e2e_session")
    assert stored["generation"] == 2 and "refresh_in_flight" not in stored


def test_wrong_airflow_api_credentials_refuse_before_spending(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    airflow_pg_home.add_connection(
        "airflow_api_wrong",
        "http",
        host=airflow_api_server.base_url,
        login="admin",
        password="not-the-password",
    )
    with AACSimulator(access_ttl=1) as sim:
        airflow_pg_home.add_aac_connection(
            "aac_wrong_api",
            sim,
            refresh_mode="lock",
            lock_conn_id="race_lock_redis_for_hook",
            airflow_api_conn_id="airflow_api_wrong",
        )
        airflow_pg_home.add_lock_connection("race_lock_redis_for_hook", "redis")
        before = airflow_pg_home.get_connection_extra("aac_wrong_api")
        code = textwrap.dedent(
            """
            from airflow_provider_aac.errors import AACConfigError
            from airflow_provider_aac.hooks.aac import AACHook
            try:
                AACHook("aac_wrong_api").get_access_token(min_ttl=10)
            except AACConfigError as err:
                print("RESULT", "refused the login" in str(err), "airflow_api_wrong" in str(err))
            """
        )
        result = airflow_pg_home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
        stats = sim.stats()
    assert "RESULT True True" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
    assert stats["token_requests"] == 0, (
        "the refresh token must not be spent when the result cannot be stored"
    )
    unchanged = airflow_pg_home.get_connection_extra("aac_wrong_api") == before
    assert unchanged


def test_single_writer_task_without_a_refresh_dag_says_what_to_start(airflow_pg_home: AirflowHome) -> None:
    """The 1 s token has expired by the time the interpreter starts; nothing else may refresh it."""
    with AACSimulator(access_ttl=1) as sim:
        airflow_pg_home.add_aac_connection("aac_lonely", sim, refresh_mode="single_writer", publish_wait=1)
        code = textwrap.dedent(
            """
            from airflow_provider_aac.errors import AACRefreshNotPublishedError
            from airflow_provider_aac.hooks.aac import AACHook
            try:
                AACHook("aac_lonely").get_access_token()
            except AACRefreshNotPublishedError as err:
                print("RESULT", "aac_token_refresh" in str(err), "unpaused" in str(err))
            """
        )
        result = airflow_pg_home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
        assert sim.stats()["token_requests"] == 0
    assert "RESULT True True" in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
