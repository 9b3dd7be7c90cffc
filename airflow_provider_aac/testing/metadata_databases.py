"""The metadata databases of throwaway Airflow homes: one fresh PostgreSQL database each, or SQLite.

A database per home (rather than a schema or a shared DB) is what lets homes run side by
side and be dropped without trace. Reads open a fresh connection per call: tests read
what other processes committed, and an idle connection of ours must never hold a lock
that a writer under test waits on.

Environment knob: ``AAC_TEST_PG_URL`` (libpq URL of the server's maintenance database,
default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def pg_maintenance_url() -> str:
    return os.environ.get("AAC_TEST_PG_URL", DEFAULT_PG_URL)


def with_dbname(url: str, dbname: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=scheme or parts.scheme, path="/" + quote(dbname)))


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _maintenance_statement(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(pg_maintenance_url(), connect_timeout=5)
    try:
        conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def create_pg_database() -> str:
    """Create an empty database with a fresh name on the maintenance server; returns the name."""
    name = f"aac_test_{uuid.uuid4().hex[:12]}"
    _maintenance_statement(f'CREATE DATABASE "{name}"')
    return name


def drop_pg_database(name: str) -> None:
    """Drop ``name``, forcing out sessions that a killed component left behind."""
    _maintenance_statement(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query_pg(dbname: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(with_dbname(pg_maintenance_url(), dbname), connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


def query_sqlite(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``%s`` placeholders, as on PostgreSQL, so callers write one statement for both."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        return list(conn.execute(sql.replace("%s", "?"), params).fetchall())
    finally:
        conn.close()


def postgres_unavailable_reason(url: str | None = None) -> str | None:
    """Return why PostgreSQL cannot be used for tests, or None when it can.

    For a skip (or, where PostgreSQL is required, a failure), so it says where it looked.
    """
    url = url or pg_maintenance_url()
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    try:
        conn = psycopg2.connect(url, connect_timeout=3)
    except Exception as exc:
        detail = " ".join(str(exc).split())
        return f"PostgreSQL not reachable at {redact_url(url)}: {detail}"
    conn.close()
    return None
