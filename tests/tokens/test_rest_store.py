"""The REST store's reads and writes, counted in order, without servers.

Airflow's own lookup runs in a fresh interpreter, served by a secrets backend over a
file (``CountingFiles`` below, which counts each lookup); the REST API is an object that
keeps the row and, like the real one, answers a PATCH with the connection as written,
tokens masked. Writes that land also reach the file (tasks see them); writes that do not
land are a connection shadowed by a secrets backend. The token endpoint is the simulator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_home import minted_aac_extra

CONN = "aac_rest_store"

BACKEND = '''
events = []

class CountingFiles:
    """A file of connections, each lookup recorded as "read"; imports Airflow only when asked."""

    def __init__(self, connections_file_path):
        self.path = connections_file_path
        self.connection_class = None

    def _set_connection_class(self, cls):
        self.connection_class = cls

    def get_connection(self, conn_id, team_name=None):
        from airflow.secrets.local_filesystem import LocalFilesystemBackend

        events.append("read")
        backend = LocalFilesystemBackend(connections_file_path=self.path)
        if self.connection_class is not None:
            backend._set_connection_class(self.connection_class)
        return backend.get_connection(conn_id)

    def get_variable(self, key, team_name=None):
        return None

    def get_config(self, key):
        return None
'''

REFRESHES = '''
import json, os
from counting_files import events
from airflow_provider_aac.core.refresh import Refresher
from airflow_provider_aac.core.keeping import MemoryPlace, Rescue
from airflow_provider_aac.core.token_store import within
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.tokens.rest_store import RestTokenStore
from airflow_provider_aac.tokens.token_cache import CachedTokens
from airflow_provider_aac.transport.token_post import requests_token_transport

CONN, PATH, LANDS = {conn!r}, os.environ["CONN_FILE"], {lands!r}

def masked(extra):
    return {{k: "***" if "token" in k else v for k, v in extra.items()}}

class RestApi:
    """The metadata DB row as Airflow's REST API reads and writes it."""

    base_url = "http://api.test"

    def __init__(self):
        with open(PATH) as f:
            self.file = json.load(f)
        self.row = dict(self.file[CONN]["extra"])

    def connection(self, conn_id):
        events.append("GET")
        return {{"conn_type": "aac", "extra": json.dumps(masked(self.row))}}

    def patch_connection_extra(self, conn_id, conn_type, extra):
        events.append("PATCH")
        self.row = dict(extra)
        if LANDS:
            self.file[CONN]["extra"] = dict(extra)
            with open(PATH, "w") as f:
                json.dump(self.file, f)
        return {{"conn_type": "aac", "extra": json.dumps(masked(extra))}}

post = requests_token_transport()

def spend(url, form, window):
    events.append("spend")
    return post(url, form, window)

api, checked, out = RestApi(), CachedTokens(), []
refresher = Refresher(CONN, transport=spend, rescue=Rescue([MemoryPlace()]))
for _ in range({refreshes}):
    events.clear()
    store = RestTokenStore(CONN, api, checked)
    try:
        stale = json.loads(json.dumps(api.row)).get("generation", 0)
        state = refresher.with_lease(within(store), min_ttl=None, stale_generation=stale)
    except AACError as err:
        out.append({{"events": list(events), "error": type(err).__name__, "message": str(err)}})
        break
    out.append({{"events": list(events), "generation": state.generation}})
print(json.dumps(out))
'''


def refreshes(sim: AACSimulator, tmp_path: Path, count: int, *, lands: bool) -> list[dict[str, Any]]:
    (tmp_path / "counting_files.py").write_text(textwrap.dedent(BACKEND))
    path = tmp_path / "connections.json"
    extra = minted_aac_extra(sim)
    path.write_text(json.dumps({CONN: {"conn_type": "aac", "host": sim.base_url, "extra": extra}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW"))}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).resolve().parents[2])]),
            "CONN_FILE": str(path),
            "AIRFLOW__SECRETS__BACKEND": "counting_files.CountingFiles",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(path)}),
        }
    )
    code = REFRESHES.format(conn=CONN, lands=lands, refreshes=count)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_refresh_reads_once_before_its_claim_and_once_before_its_store(
    aac_simulator: AACSimulator, tmp_path: Path
) -> None:
    first, *later = refreshes(aac_simulator, tmp_path, 3, lands=True)

    assert [first["generation"]] + [run["generation"] for run in later] == [1, 2, 3]
    # The first refresh in a process proves that tasks read what the REST API writes: a
    # GET of the row before the read the claim is built on, and a read after the claim
    # that must show it, before anything is spent.
    assert first["events"] == ["GET", "read", "PATCH", "read", "spend", "read", "PATCH"]
    # Then one read under the lock before the claim, one before the store: each write is
    # built on the read right before it, and checked by what its PATCH answers.
    for run in later:
        assert run["events"] == ["read", "PATCH", "spend", "read", "PATCH"]
    assert aac_simulator.stats()["reuses"] == 0


def test_a_shadowed_connection_is_refused_after_its_claim_before_the_spend(
    aac_simulator: AACSimulator, tmp_path: Path
) -> None:
    (refused,) = refreshes(aac_simulator, tmp_path, 2, lands=False)

    assert refused["error"] == "AACConfigError" and "shadowed" in refused["message"]
    assert refused["events"] == ["GET", "read", "PATCH", "read", "GET"]
    assert aac_simulator.stats()["token_requests"] == 0
