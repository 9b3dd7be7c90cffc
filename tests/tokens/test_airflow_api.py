"""A lock-mode refresh through the REST store costs few lookups: counted, in order, in a real process.

A real api-server, a PostgreSQL advisory lock and the simulator; the process counts the
SQL that looks up the ``aac`` connection and the REST calls it sends, as they happen
(nothing of the provider is patched: the counters listen on SQLAlchemy and requests).
"""

from __future__ import annotations

import json
from pathlib import Path

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome, ApiServer

CONN = "aac_rest_store_counts"
LOCK = "rest_store_counts_lock"
API = "rest_store_counts_api"

COUNTING = """
import json
import requests
from airflow import settings
from sqlalchemy import event
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.hooks.aac import AACHook

events = []

@event.listens_for(settings.engine, "before_cursor_execute")
def looked_up(conn, cursor, statement, parameters, *args):
    if "FROM connection" in statement and {conn!r} in repr(parameters):
        events.append("read")

send = requests.Session.send

def counted(self, request, **kwargs):
    if request.url.startswith({api_url!r}) and request.method in ("GET", "PATCH"):
        events.append(request.method)
    elif request.url.startswith({token_url!r}):
        events.append("spend")
    return send(self, request, **kwargs)

requests.Session.send = counted
hook = AACHook({conn!r})
hook.get_access_token()
refreshes = []
for _ in range({refreshes}):
    events.clear()
    try:
        outcome = hook.refresh_tokens(force=True)
    except AACError as err:
        refreshes.append({{"events": events, "error": str(err)}})
        break
    refreshes.append({{"events": list(events), "generation": outcome.generation}})
print(json.dumps(refreshes))
"""


def counted_refreshes(
    home: AirflowHome, api: ApiServer, sim: AACSimulator, refreshes: int, env: dict[str, str] | None = None
) -> list[dict[str, object]]:
    home.add_lock_connection(LOCK, "postgres")
    home.add_airflow_api_connection(API, api.base_url)
    home.add_aac_connection(CONN, sim, refresh_mode="lock", lock_conn_id=LOCK, airflow_api_conn_id=API)
    code = COUNTING.format(conn=CONN, api_url=api.base_url, token_url=sim.token_url, refreshes=refreshes)
    out = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server", **(env or {})})
    result: list[dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_a_lock_mode_refresh_reads_the_connection_once_under_the_lock_and_writes_twice(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer, aac_simulator: AACSimulator
) -> None:
    first, second, third = counted_refreshes(airflow_pg_home, airflow_api_server, aac_simulator, 3)

    assert [first["generation"], second["generation"], third["generation"]] == [1, 2, 3]
    # The first refresh of a process checks that the REST API writes what tasks read: a
    # GET of the row before the read under the lock, and a lookup after the claim that
    # must show it, before the spend. Each write is built on the read right before it.
    assert first["events"] == ["read", "GET", "read", "PATCH", "read", "spend", "read", "PATCH"]
    # Then: the look that found the token stale (outside the lock), one read under the
    # lock, the claim built on it, the spend, one read to store over, the store. The
    # PATCH answers show that each write landed; no GET, no read after a write.
    for later in (second, third):
        assert later["events"] == ["read", "read", "PATCH", "spend", "read", "PATCH"]
    assert aac_simulator.stats()["reuses"] == 0


def test_a_copy_in_a_secrets_backend_is_refused_before_anything_is_spent(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer, aac_simulator: AACSimulator, tmp_path: Path
) -> None:
    """A copy made as the row was shadows it with the same generation: only the lookup after the claim tells."""
    home = airflow_pg_home
    conn, lock, api = "aac_shadowed_copy", "shadowed_copy_lock", "shadowed_copy_api"
    home.add_lock_connection(lock, "postgres")
    home.add_airflow_api_connection(api, airflow_api_server.base_url)
    home.add_aac_connection(
        conn, aac_simulator, refresh_mode="lock", lock_conn_id=lock, airflow_api_conn_id=api
    )
    copy = {
        conn: {"conn_type": "aac", "host": aac_simulator.base_url, "extra": home.get_connection_extra(conn)}
    }
    path = tmp_path / "connections.json"
    path.write_text(json.dumps(copy))
    backend = {
        "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
        "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(path)}),
    }
    code = COUNTING.format(
        conn=conn, api_url=airflow_api_server.base_url, token_url=aac_simulator.token_url, refreshes=1
    )
    out = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server", **backend})
    (refused,) = json.loads(out.stdout.strip().splitlines()[-1])

    assert "shadowed" in str(refused["error"]), refused
    assert "spend" not in refused["events"], refused
    assert "PATCH" in refused["events"], (
        refused
    )  # the claim, which the REST API shows and the lookup does not
    assert aac_simulator.stats()["token_requests"] == 0
