"""The metadata databases of throwaway Airflow homes: one fresh PostgreSQL database each, or SQLite.

A database per home (rather than a schema or a shared DB) is what lets homes run side by
side and be dropped without trace. Reads open a fresh connection per call: tests read
what other processes committed, and an idle connection of ours must never hold a lock
that a writer under test waits on.

Environment knob: ``AAC_TEST_PG_URL`` (libpq URL of the server's maintenance database,
default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography.fernet import Fernet, MultiFernet

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


STORED_CONNECTION_QUERY = (
    "SELECT conn_id, conn_type, host, login, password, is_encrypted, port, schema, extra, "
    "is_extra_encrypted FROM connection WHERE conn_id = %s"
)


@dataclass(frozen=True)
class StoredConnection:
    """A connection row as stored in the metadata DB, decrypted (never masked)."""

    conn_id: str
    conn_type: str | None
    host: str | None
    login: str | None
    password: str | None
    port: int | None
    schema: str | None
    extra: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}


def decrypted_connection(row: Sequence[Any], fernet_key: str) -> StoredConnection:
    """A ``STORED_CONNECTION_QUERY`` row with its secrets decrypted by the home's Fernet key(s)."""
    fernet = MultiFernet([Fernet(k.strip().encode()) for k in fernet_key.split(",")])

    def decrypt(value: str | None, encrypted: bool) -> str | None:
        return fernet.decrypt(value.encode()).decode() if value is not None and encrypted else value

    cid, ctype, host, login, pwd, pwd_enc, port, schema, extra, extra_enc = row
    return StoredConnection(
        conn_id=cid,
        conn_type=ctype,
        host=host,
        login=login,
        password=decrypt(pwd, bool(pwd_enc)),
        port=port,
        schema=schema,
        extra=decrypt(extra, bool(extra_enc)),
    )
