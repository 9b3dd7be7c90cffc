"""Lock mode: a PostgreSQL advisory lock or a Redis lock, named by an Airflow connection.

Both bound the wait and carry a lease, so a holder that dies or hangs cannot block the
others for longer than one refresh can take: the Redis key expires, and PostgreSQL ends
a session left idle in its transaction (and drops a dead client's session) which frees
the advisory lock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from airflow_provider_aac.core.errors import AACConfigError, AACLockTimeoutError
from airflow_provider_aac.secrets import mask

log = logging.getLogger(__name__)

POSTGRES_TYPES = frozenset({"postgres", "postgresql"})
REDIS_TYPES = frozenset({"redis"})


def lock_name(aac_conn_id: str) -> str:
    return f"airflow-provider-aac:refresh:{aac_conn_id}"


def refresh_lock(
    lock_conn_id: str, aac_conn_id: str, *, wait: float, lease: float
) -> AbstractContextManager[None]:
    """The lock that guards refreshes of ``aac_conn_id``, by the lock connection's type."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(lock_conn_id)
    mask(conn.password)
    backend = lock_backend(conn)
    if backend in POSTGRES_TYPES:
        return postgres_advisory_lock(conn, lock_name(aac_conn_id), wait=wait, lease=lease)
    if backend in REDIS_TYPES:
        return redis_lock(conn, lock_name(aac_conn_id), wait=wait, lease=lease)
    raise AACConfigError(
        f"Lock connection {lock_conn_id!r} has type {conn.conn_type!r}; use a 'postgres' or 'redis' "
        'connection, or any connection with {"lock_backend": "postgres"} or {"lock_backend": "redis"} in '
        "its extra (Airflow stores the type as 'generic' when the postgres or redis provider is not "
        "installed), or remove 'lock_conn_id' from the AAC connection."
    )


def lock_backend(conn: Any) -> str | None:
    """The connection's type, or its extra's ``lock_backend`` when the type says nothing."""
    if conn.conn_type in POSTGRES_TYPES | REDIS_TYPES:
        return str(conn.conn_type)
    hint = (conn.extra_dejson or {}).get("lock_backend")
    return str(hint).lower() if hint else None


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key, as ``pg_advisory_xact_lock`` takes."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


@contextmanager
def postgres_advisory_lock(conn: Any, name: str, *, wait: float, lease: float) -> Iterator[None]:
    try:
        import psycopg2
        from psycopg2 import errors
    except ImportError:
        raise AACConfigError(
            "Lock mode with PostgreSQL needs psycopg2: pip install 'airflow-provider-aac[postgres]'."
        ) from None
    options = f"-c lock_timeout={int(wait * 1000)} -c idle_in_transaction_session_timeout={int(lease * 1000)}"
    try:
        db = psycopg2.connect(
            host=conn.host or "127.0.0.1",
            port=conn.port or 5432,
            user=conn.login or None,
            password=conn.password or None,
            dbname=conn.schema or "postgres",
            connect_timeout=10,
            options=options,
            application_name="airflow-provider-aac",
        )
    except psycopg2.Error as err:
        raise AACConfigError(
            f"Cannot connect to the PostgreSQL lock database of connection {conn.conn_id!r} "
            f"({type(err).__name__}). Check its host, port, login and schema (database)."
        ) from None
    try:
        with db.cursor() as cursor:
            try:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (advisory_key(name),))
            except errors.LockNotAvailable:
                raise AACLockTimeoutError(
                    f"Another process held the refresh lock {name!r} for more than {wait:.0f} s. It may be "
                    "stuck on a slow token endpoint; try again, and check the other workers' logs."
                ) from None
        yield
        db.commit()
    finally:
        db.close()


@contextmanager
def redis_lock(conn: Any, name: str, *, wait: float, lease: float) -> Iterator[None]:
    try:
        import redis
    except ImportError:
        raise AACConfigError(
            "Lock mode with Redis needs redis: pip install 'airflow-provider-aac[redis]'."
        ) from None
    extra = conn.extra_dejson or {}
    client = redis.Redis(
        host=conn.host or "127.0.0.1",
        port=conn.port or 6379,
        db=int(extra.get("db", conn.schema or 0) or 0),
        username=conn.login or None,
        password=conn.password or None,
        ssl=bool(extra.get("ssl", False)),
        socket_timeout=10,
        socket_connect_timeout=10,
    )
    lock = client.lock(name, timeout=lease, blocking_timeout=wait, sleep=0.02)
    try:
        acquired = lock.acquire()
    except redis.RedisError as err:
        raise AACConfigError(
            f"Cannot use the Redis lock of connection {conn.conn_id!r} ({type(err).__name__}). Check its "
            "host, port and password."
        ) from None
    if not acquired:
        raise AACLockTimeoutError(
            f"Another process held the refresh lock {name!r} for more than {wait:.0f} s; try again."
        )
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning(
                "The refresh lock %r expired before it was released: the refresh outlived its lease.", name
            )
        client.close()
