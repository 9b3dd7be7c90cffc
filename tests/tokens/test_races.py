"""Many OS processes, one connection, short-lived access tokens: the chain must survive.

Each mode runs 8 processes x 25 calls while access tokens live a few seconds, so every
process meets several expiries at once. The simulator counts what AAC would see. What
would fail if the feature broke: any reuse (two processes spending one refresh token),
any lost pair (stored generation != refreshes made), any unauthorised call, or
refreshing on every call instead of once per lifetime.

The processes read the connection from the metadata DB (they declare themselves server
processes, as Airflow's own do). In lock mode they still write through the real
api-server's REST API and lock with a real PostgreSQL advisory lock or Redis lock, as
workers must; the run under Airflow's real task supervisor is in tests/system.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.airflow_env import AirflowHome, ApiServer, poll_until
from airflow_provider_aac.testing.simulator import AACSimulator

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 8
CALLS = 25
ACCESS_TTL = 4.0
MIN_TTL = 1.0
DURATION = 12.0
LOCK_PG = "race_lock_pg"
LOCK_REDIS = "race_lock_redis"
API_CONN = "race_airflow_api"

MODES: dict[str, dict[str, Any]] = {
    "metadata_db": {"refresh_mode": "metadata_db"},
    "lock_postgres": {"refresh_mode": "lock", "lock_conn_id": LOCK_PG, "airflow_api_conn_id": API_CONN},
    "lock_redis": {"refresh_mode": "lock", "lock_conn_id": LOCK_REDIS, "airflow_api_conn_id": API_CONN},
}


@pytest.fixture(scope="module")
def race_home(airflow_pg_home: AirflowHome, airflow_api_server: ApiServer) -> AirflowHome:
    airflow_pg_home.add_connection(
        LOCK_PG,
        "generic",
        host="127.0.0.1",
        port=5432,
        login="postgres",
        schema="postgres",
        extra={"lock_backend": "postgres"},
    )
    airflow_pg_home.add_connection(
        LOCK_REDIS, "generic", host="127.0.0.1", port=6379, extra={"lock_backend": "redis"}
    )
    airflow_pg_home.add_connection(
        API_CONN,
        "http",
        host=airflow_api_server.base_url,
        login=airflow_api_server.username,
        password=airflow_api_server.password,
    )
    return airflow_pg_home


def race(
    home: AirflowHome, sim: AACSimulator, conn_id: str, workdir: Path, processes: int = PROCESSES
) -> dict[str, Any]:
    """Start the processes, release them together, and collect their counts and the simulator's."""
    go = workdir / "go"
    command = [
        sys.executable,
        "-m",
        "tests.support.race_worker",
        "--conn-id",
        conn_id,
        "--calls",
        str(CALLS),
        "--duration",
        str(DURATION),
        "--go-file",
        str(go),
    ]
    env = home.env(_AIRFLOW_PROCESS_CONTEXT="server")
    workers = [
        subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    try:
        poll_until(
            lambda: len(list(workdir.glob("go.ready.*"))) == processes or None,
            timeout=120,
            interval=0.05,
            what="race workers ready",
        )
        sim.reset_stats()
        go.touch()
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    results = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert out.strip(), f"worker {worker.pid} printed nothing; stderr:\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return {"workers": results, "stats": sim.stats()}


def assert_chain_survived(
    home: AirflowHome, sim: AACSimulator, conn_id: str, outcome: dict[str, Any], processes: int
) -> None:
    workers, stats = outcome["workers"], outcome["stats"]
    errors = [e for w in workers for e in w["errors"]]
    assert errors == [], errors[:5]
    assert [w["ok"] for w in workers] == [CALLS] * processes
    assert stats["reuses"] == 0
    assert stats["invalid_grant"] == 0
    assert stats["api_unauthorized"] == 0
    assert stats["api_authorized"] == processes * CALLS
    elapsed = max(w["seconds"] for w in workers)
    needed = math.ceil(elapsed / (ACCESS_TTL - MIN_TTL))
    assert 1 <= stats["refreshes"] <= needed + 2, (stats["refreshes"], needed)

    stored = home.get_connection_extra(conn_id)
    assert stored["generation"] == stats["refreshes"], "every rotated pair must have been stored"
    assert "refresh_in_flight" not in stored
    live = requests.post(
        sim.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": stored["refresh_token"],
            "client_id": sim.client_id,
        },
        timeout=10,
    )
    assert live.status_code == 200, "the stored refresh token must be the live end of the chain"


@pytest.mark.parametrize("mode", list(MODES))
def test_processes_share_one_chain_without_reuse(mode: str, race_home: AirflowHome, tmp_path: Path) -> None:
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        pair = sim.mint_pair()
        conn_id = f"aac_race_{mode}"
        race_home.add_connection(
            conn_id,
            "aac",
            host=sim.base_url,
            extra={
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
                "min_ttl": MIN_TTL,
                **MODES[mode],
            },
        )
        outcome = race(race_home, sim, conn_id, tmp_path)
        assert_chain_survived(race_home, sim, conn_id, outcome, PROCESSES)


def test_sqlite_metadata_db_serialises_writers(airflow_sqlite_home: AirflowHome, tmp_path: Path) -> None:
    """SQLite has no row locks; the no-op UPDATE that takes its write lock must do their job."""
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        pair = sim.mint_pair()
        conn_id = "aac_race_sqlite"
        airflow_sqlite_home.add_connection(
            conn_id,
            "aac",
            host=sim.base_url,
            extra={
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
                "min_ttl": MIN_TTL,
            },
        )
        outcome = race(airflow_sqlite_home, sim, conn_id, tmp_path, processes=4)
        assert_chain_survived(airflow_sqlite_home, sim, conn_id, outcome, 4)
