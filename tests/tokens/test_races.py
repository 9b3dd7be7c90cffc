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

import math
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.race_worker import call_span, race

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
    airflow_pg_home.add_lock_connection(LOCK_PG, "postgres")
    airflow_pg_home.add_lock_connection(LOCK_REDIS, "redis")
    airflow_pg_home.add_airflow_api_connection(API_CONN, airflow_api_server.base_url)
    return airflow_pg_home


def race_and_count(
    home: AirflowHome, sim: AACSimulator, conn_id: str, workdir: Path, processes: int
) -> dict[str, Any]:
    workers = race(
        home,
        conn_id,
        workdir,
        processes=processes,
        calls=CALLS,
        duration=DURATION,
        before_start=sim.reset_stats,
    )
    return {"workers": workers, "stats": sim.stats()}


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
    needed = math.ceil(call_span(workers) / (ACCESS_TTL - MIN_TTL))
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
        conn_id = f"aac_race_{mode}"
        race_home.add_aac_connection(conn_id, sim, min_ttl=MIN_TTL, **MODES[mode])
        outcome = race_and_count(race_home, sim, conn_id, tmp_path, PROCESSES)
        assert_chain_survived(race_home, sim, conn_id, outcome, PROCESSES)


def test_sqlite_metadata_db_serialises_writers(airflow_sqlite_home: AirflowHome, tmp_path: Path) -> None:
    """SQLite has no row locks; the no-op UPDATE that takes its write lock must do their job."""
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        conn_id = "aac_race_sqlite"
        airflow_sqlite_home.add_aac_connection(conn_id, sim, min_ttl=MIN_TTL)
        outcome = race_and_count(airflow_sqlite_home, sim, conn_id, tmp_path, 4)
        assert_chain_survived(airflow_sqlite_home, sim, conn_id, outcome, 4)
