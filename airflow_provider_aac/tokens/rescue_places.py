"""Where a deployment can hold a token pair that could not be stored yet.

- The lock backend, when the connection names one: a Redis hash or a PostgreSQL table
  next to the lock. Every refresher of the connection takes that lock, so whoever
  refreshes next, on any machine, finds the pair there.
- A spool directory on this machine (``[aac] rescue_dir``, default
  ``$AIRFLOW_HOME/aac_rescue``): the next refresh on the same machine finds it.
- This process's memory, for the retries of the refresh that received the pair.

Pairs are encrypted with Airflow's Fernet key. Without a key they go to the local spool
only (a file readable by its owner alone), never over the network.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from pathlib import Path
from typing import Any, Protocol

from airflow_provider_aac.core.keeping import HeldPair, MemoryPlace, Rescue, RescuePlace
from airflow_provider_aac.tokens.connection import AACConnectionConfig
from airflow_provider_aac.tokens.locks import lock_backend, lock_connection, postgres_connect, redis_client

log = logging.getLogger(__name__)

PROCESS_MEMORY = MemoryPlace()
PG_TABLE = "airflow_provider_aac_held_pairs"


class Cipher(Protocol):
    def encrypt(self, msg: bytes) -> bytes: ...

    def decrypt(self, msg: bytes | str, ttl: int | None = None) -> bytes: ...


class _Plain:
    def encrypt(self, msg: bytes) -> bytes:
        return msg

    def decrypt(self, msg: bytes | str, ttl: int | None = None) -> bytes:
        return msg if isinstance(msg, bytes) else msg.encode()


def airflow_fernet() -> Cipher | None:
    """Airflow's Fernet, or None when no ``[core] fernet_key`` is configured."""
    from airflow_provider_aac.compat import get_fernet

    fernet = get_fernet()
    return fernet if getattr(fernet, "is_encrypted", False) else None


def rescue_dir() -> Path:
    from airflow_provider_aac.compat import conf

    configured = conf.get("aac", "rescue_dir", fallback=None)
    if configured:
        return Path(configured)
    home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
    return Path(home) / "aac_rescue"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class LocalSpool:
    """One file per held pair, written atomically and readable by its owner only."""

    def __init__(self, directory: Path, cipher: Cipher | None) -> None:
        self.directory = directory
        self.cipher = cipher or _Plain()
        self.where = f"{directory} on host {socket.gethostname()}"

    def _path(self, conn_id: str, spends: str) -> Path:
        return self.directory / f"{_safe(conn_id)}.{_safe(spends)}.pair"

    def hold(self, pair: HeldPair) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(pair.conn_id, pair.spends)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(self.cipher.encrypt(pair.to_bytes()))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    def held(self, conn_id: str) -> list[HeldPair]:
        if not self.directory.is_dir():
            return []
        pairs = []
        for path in self.directory.glob(f"{_safe(conn_id)}.*.pair"):
            pair = _decode(self.cipher, path.read_bytes(), str(path))
            if pair is not None and pair.conn_id == conn_id:
                pairs.append(pair)
        return pairs

    def drop(self, conn_id: str, spends: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(conn_id, spends).unlink()


class RedisPlace:
    """A hash per connection next to the Redis lock, one field per held pair."""

    def __init__(self, conn: Any, cipher: Cipher) -> None:
        self.conn = conn
        self.cipher = cipher
        self.where = f"the Redis lock backend of connection {conn.conn_id!r}"

    def _key(self, conn_id: str) -> str:
        return f"airflow-provider-aac:held:{conn_id}"

    def _client(self) -> Any:
        return redis_client(self.conn)

    def hold(self, pair: HeldPair) -> None:
        with contextlib.closing(self._client()) as client:
            client.hset(self._key(pair.conn_id), pair.spends, self.cipher.encrypt(pair.to_bytes()))

    def held(self, conn_id: str) -> list[HeldPair]:
        with contextlib.closing(self._client()) as client:
            values = client.hvals(self._key(conn_id))
        pairs = (_decode(self.cipher, value, self.where) for value in values)
        return [pair for pair in pairs if pair is not None]

    def drop(self, conn_id: str, spends: str) -> None:
        with contextlib.closing(self._client()) as client:
            client.hdel(self._key(conn_id), spends)


class PostgresPlace:
    """A small table next to the PostgreSQL advisory lock, created on first use."""

    def __init__(self, conn: Any, cipher: Cipher) -> None:
        self.conn = conn
        self.cipher = cipher
        self.where = f"the table {PG_TABLE} of the PostgreSQL lock database of connection {conn.conn_id!r}"

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        db = postgres_connect(self.conn, options="-c statement_timeout=10000")
        try:
            with db.cursor() as cursor:
                cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {PG_TABLE} (conn_id text NOT NULL, spends text NOT NULL, "
                    "pair text NOT NULL, held_at timestamptz NOT NULL DEFAULT now(), "
                    "PRIMARY KEY (conn_id, spends))"
                )
                cursor.execute(sql, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            db.close()

    def hold(self, pair: HeldPair) -> None:
        self._run(
            f"INSERT INTO {PG_TABLE} (conn_id, spends, pair) VALUES (%s, %s, %s) "
            "ON CONFLICT (conn_id, spends) DO UPDATE SET pair = EXCLUDED.pair, held_at = now()",
            (pair.conn_id, pair.spends, self.cipher.encrypt(pair.to_bytes()).decode()),
        )

    def held(self, conn_id: str) -> list[HeldPair]:
        rows = self._run(f"SELECT pair FROM {PG_TABLE} WHERE conn_id = %s", (conn_id,))
        pairs = (_decode(self.cipher, str(row[0]).encode(), self.where) for row in rows)
        return [pair for pair in pairs if pair is not None]

    def drop(self, conn_id: str, spends: str) -> None:
        self._run(f"DELETE FROM {PG_TABLE} WHERE conn_id = %s AND spends = %s", (conn_id, spends))


def _decode(cipher: Cipher, raw: bytes, where: str) -> HeldPair | None:
    try:
        return HeldPair.from_bytes(cipher.decrypt(raw))
    except Exception as err:  # a record under another Fernet key, or damaged
        log.warning(
            "Ignoring a held AAC token pair in %s that cannot be read (%s).", where, type(err).__name__
        )
        return None


def rescue_for(config: AACConnectionConfig, *, lock_conn: Any = None) -> Rescue:
    """Every place this deployment offers for the connection's held pairs, durable ones first.

    ``lock_conn``: the lock connection, when the caller has looked it up already.
    """
    cipher = airflow_fernet()
    places: list[RescuePlace] = []
    if config.lock_conn_id and cipher is not None:
        conn = lock_conn if lock_conn is not None else lock_connection(config.lock_conn_id, config.conn_id)
        places.append(
            PostgresPlace(conn, cipher) if lock_backend(conn) == "postgres" else RedisPlace(conn, cipher)
        )
    elif config.lock_conn_id:
        log.warning(
            "AAC connection %r: Airflow has no Fernet key ([core] fernet_key), so a token pair that cannot "
            "be stored is held only on this machine, not in the lock backend. Set a Fernet key.",
            config.conn_id,
        )
    places.append(LocalSpool(rescue_dir(), cipher))
    places.append(PROCESS_MEMORY)
    return Rescue(places)
