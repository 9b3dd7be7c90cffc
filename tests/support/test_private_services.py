"""Private PostgreSQL and Redis behave like the real outages the fault suite simulates.

What matters to the fault suite is pinned here: a restart or a kill drops every session
(so an advisory lock is gone), the server comes back on the same port, an acknowledged
commit survives a kill, and Redis forgets every key (so a Redis lock is gone).
"""

from __future__ import annotations

import os
from pathlib import Path

import psycopg2
import pytest
import redis

from tests.support.airflow_env import AirflowEnvError
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.processes import descendants, still_running


def _scalar(url: str, sql: str) -> object:
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return row[0] if row else None
    finally:
        conn.close()


def test_postgres_restart_drops_sessions_and_locks_and_comes_back_on_the_same_port(
    private_postgres: PrivatePostgres,
) -> None:
    pg = private_postgres
    assert pg.last_start_seconds is not None and pg.last_start_seconds < 10
    assert _scalar(pg.url, "SHOW fsync") == "off"
    assert _scalar(pg.url, "SHOW listen_addresses") == "127.0.0.1"
    old = psycopg2.connect(pg.url)
    with old.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(42)")
    port, pid = pg.port, pg.pid

    pg.restart()

    assert (pg.port, pg.is_up()) == (port, True)
    assert pg.pid != pid
    with pytest.raises(psycopg2.OperationalError), old.cursor() as cur:
        cur.execute("SELECT 1")
    assert _scalar(pg.url, "SELECT pg_try_advisory_lock(42)") is True  # the old session's lock died with it


def test_postgres_kill_is_a_crash_that_keeps_acknowledged_commits(private_postgres: PrivatePostgres) -> None:
    pg = private_postgres
    url = pg.create_database("tokens")
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE pair (generation int)")
        cur.execute("INSERT INTO pair VALUES (7)")
    assert pg.pid is not None
    children = descendants(pg.pid)
    assert len(children) >= 3  # checkpointer, background writer, our backend, ...

    pg.kill()

    assert not pg.is_up()
    assert not any(still_running(pid, started) for pid, started in children)
    with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
        cur.execute("SELECT 1")
    pg.start()
    assert _scalar(url, "SELECT generation FROM pair") == 7
    pg.stop(mode="immediate")
    assert not pg.is_up()
    pg.start()
    assert _scalar(pg.sqlalchemy_url("tokens").replace("+psycopg2", ""), "SELECT count(*) FROM pair") == 1


def test_postgres_close_removes_everything() -> None:
    pg = PrivatePostgres().start()
    assert pg.pid is not None
    family = descendants(pg.pid)
    pg.close()
    assert not pg.alive() and not any(still_running(pid, started) for pid, started in family)
    assert not pg.root.exists()


def test_postgres_refuses_a_base_dir_its_os_user_cannot_enter(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root hands the server to another OS user")
    tmp_path.chmod(0o700)
    with pytest.raises(AirflowEnvError, match="cannot enter"):
        PrivatePostgres(base_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_redis_restart_loses_every_key_on_the_same_port(private_redis: PrivateRedis) -> None:
    rds = private_redis
    client = redis.Redis.from_url(rds.url, socket_timeout=5)
    assert client.set("aac:lock", "worker-1", nx=True, px=60_000)
    port = rds.port

    rds.restart()

    assert rds.port == port and rds.is_up()
    assert client.get("aac:lock") is None
    assert rds.last_stop_seconds is not None and rds.last_stop_seconds < 5


def test_redis_kill_drops_connections_and_start_recovers(private_redis: PrivateRedis) -> None:
    rds = private_redis
    client = redis.Redis.from_url(rds.url, socket_timeout=2, retry_on_timeout=False)
    client.set("k", "v")
    rds.kill()
    assert not rds.is_up()
    with pytest.raises(redis.ConnectionError):
        client.get("k")
    rds.start()
    assert client.get("k") is None
