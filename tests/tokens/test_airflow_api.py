"""A lock-mode refresh through the REST store costs few lookups: counted, in order, in a real process.

A real api-server, a PostgreSQL advisory lock and the simulator; the process counts the
SQL that looks up the ``aac`` connection and the REST calls it sends, as they happen
(nothing of the provider is patched: the counters listen on SQLAlchemy and requests).
"""

from __future__ import annotations

import json

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
events.clear()
outcome = hook.refresh_tokens(force=True)
print(json.dumps({{"events": events, "generation": outcome.generation}}))
"""


def test_a_lock_mode_refresh_reads_the_connection_once_under_the_lock_and_writes_twice(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer, aac_simulator: AACSimulator
) -> None:
    home = airflow_pg_home
    home.add_lock_connection(LOCK, "postgres")
    home.add_airflow_api_connection(API, airflow_api_server.base_url)
    home.add_aac_connection(
        CONN, aac_simulator, refresh_mode="lock", lock_conn_id=LOCK, airflow_api_conn_id=API
    )
    code = COUNTING.format(conn=CONN, api_url=airflow_api_server.base_url, token_url=aac_simulator.token_url)
    out = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
    result = json.loads(out.stdout.strip().splitlines()[-1])
    events: list[str] = result["events"]

    assert result["generation"] == 1
    assert events.count("PATCH") == 2, events  # the claim, then the new pair
    assert events.count("GET") == 1, events  # that the REST API writes what tasks read
    claim = events.index("PATCH")
    # One look outside the lock, one read under it; the shadow check reuses that read.
    assert events[:claim] == ["read", "read", "GET"], events
    # After the claim: its check, then a re-read before storing what the spend brought, and the store's check.
    assert events[claim:] == ["PATCH", "read", "spend", "read", "PATCH", "read"], events
    assert aac_simulator.stats()["reuses"] == 0
