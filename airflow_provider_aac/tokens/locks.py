"""Lock mode: a PostgreSQL advisory lock or a Redis lock, named by an Airflow connection.

Both are held by the holder's liveness, not by a timer it cannot extend. The PostgreSQL
lock is a session-level advisory lock: it lasts exactly as long as the holder's
database session, which ends when the process dies, and TCP keepalives on both sides
end it when the holder's host disappears. The Redis lock carries a short expiry that a
watchdog thread renews while the holder works, so a holder that dies or freezes loses it
within seconds. Either way, ``ensure_held()`` asks the backend, right before the refresh
token is sent and before each store write, whether the lock is still ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from airflow_provider_aac import metrics
from airflow_provider_aac.core.token_store import Guard
from airflow_provider_aac.errors import AACConfigError, AACLockTimeoutError, AACLockUnavailableError
from airflow_provider_aac.tokens.connection import get_named_connection
from airflow_provider_aac.tokens.masking import mask

log = logging.getLogger(__name__)

POSTGRES_TYPES = frozenset({"postgres", "postgresql"})
REDIS_TYPES = frozenset({"redis"})
KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 10, 5, 3
# The Redis lock's expiry, renewed every third of it: a frozen or dead holder loses the
# lock this long after its last renewal, while a live one never does.
REDIS_LOCK_TTL = 15.0
# ensure_held() refuses when less than this is left on the Redis lock: the send or write
# that follows must not outlast it.
REDIS_MIN_LEFT = 3.0
# The longest a dead holder keeps a lock: Redis lets it expire; PostgreSQL ends the
# session at once when the process dies, or after the keepalives when its host does.
LOCK_RELEASE_BOUND = max(REDIS_LOCK_TTL, KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT)


def lock_name(aac_conn_id: str) -> str:
    return f"airflow-provider-aac:refresh:{aac_conn_id}"


@contextmanager
def refresh_lock(conn: Any, aac_conn_id: str, *, wait: float) -> Iterator[Guard]:
    """The lock that guards refreshes of ``aac_conn_id``, by the type of ``conn`` (from ``lock_connection``, which
    the caller looks up once per refresh for the lock and the rescue places); its wait measured.

    It yields the refresh's guard: raises ``AACLockUnavailableError`` unless the lock is
    certainly still ours, asked right before the token is sent and before each write.
    """
    backend = lock_backend(conn) or "redis"
    lock: AbstractContextManager[_PostgresHeld | _RedisHeld] = (
        postgres_advisory_lock(conn, lock_name(aac_conn_id), wait=wait)
        if backend in POSTGRES_TYPES
        else redis_lock(conn, lock_name(aac_conn_id), wait=wait)
    )
    started = time.monotonic()
    acquired = False
    try:
        with lock as held:
            acquired = True
            metrics.lock_waited(aac_conn_id, backend, "acquired", time.monotonic() - started)
            yield held.ensure_held
    except (AACLockTimeoutError, AACLockUnavailableError) as err:
        if not acquired:
            outcome = "timeout" if isinstance(err, AACLockTimeoutError) else "unavailable"
            metrics.lock_waited(aac_conn_id, backend, outcome, time.monotonic() - started)
        raise


def lock_connection(lock_conn_id: str, aac_conn_id: str) -> Any:
    """The lock connection, checked: its id exists and its type names a lock backend."""
    conn = get_named_connection(lock_conn_id, named_by="lock_conn_id", aac_conn_id=aac_conn_id)
    mask(conn.password)
    if lock_backend(conn) is None:
        raise AACConfigError(
            f"Lock connection {lock_conn_id!r} has type {conn.conn_type!r}; use a 'postgres' or 'redis' "
            'connection, or any connection with {"lock_backend": "postgres"} or {"lock_backend": "redis"} '
            "in its extra (Airflow stores the type as 'generic' when the postgres or redis provider is not "
            f"installed), or remove 'lock_conn_id' from the AAC connection {aac_conn_id!r}."
        )
    return conn


def lock_backend(conn: Any) -> str | None:
    """'postgres' or 'redis' from the connection's type, or its extra's ``lock_backend``."""
    if conn.conn_type in POSTGRES_TYPES | REDIS_TYPES:
        return "postgres" if conn.conn_type in POSTGRES_TYPES else "redis"
    hint = str((conn.extra_dejson or {}).get("lock_backend") or "").lower()
    if hint in POSTGRES_TYPES:
        return "postgres"
    return "redis" if hint in REDIS_TYPES else None


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key, as ``pg_advisory_lock`` takes."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def postgres_connect(conn: Any, *, options: str = "") -> Any:
    """A psycopg2 connection in autocommit, with keepalives so a vanished peer ends the session."""
    try:
        import psycopg2
    except ImportError:
        raise AACConfigError(
            "Lock mode with PostgreSQL needs psycopg2: pip install 'airflow-provider-aac[postgres]'."
        ) from None
    server_keepalives = (
        f"-c tcp_keepalives_idle={KEEPALIVE_IDLE} -c tcp_keepalives_interval={KEEPALIVE_INTERVAL} "
        f"-c tcp_keepalives_count={KEEPALIVE_COUNT}"
    )
    try:
        db = psycopg2.connect(
            host=conn.host or "127.0.0.1",
            port=conn.port or 5432,
            user=conn.login or None,
            password=conn.password or None,
            dbname=conn.schema or "postgres",
            connect_timeout=10,
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE,
            keepalives_interval=KEEPALIVE_INTERVAL,
            keepalives_count=KEEPALIVE_COUNT,
            options=f"{server_keepalives} {options}".strip(),
            application_name="airflow-provider-aac",
        )
    except psycopg2.OperationalError as err:
        raise AACLockUnavailableError(
            f"Cannot reach the PostgreSQL lock database of connection {conn.conn_id!r} "
            f"({_first_line(err)}). If it is restarting, try again; otherwise check its host, port, login "
            "and schema (database). Nothing was spent."
        ) from None
    db.autocommit = True
    return db


class _PostgresHeld:
    def __init__(self, db: Any, name: str) -> None:
        self.db = db
        self.name = name

    def ensure_held(self) -> None:
        import psycopg2

        try:
            with self.db.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid()"
                )
                (held,) = cursor.fetchone()
        except psycopg2.Error:
            held = 0
        if not held:
            raise AACLockUnavailableError(
                f"The PostgreSQL refresh lock {self.name!r} was lost (its session ended: a database restart "
                "or a network cut). Nothing was sent with it; try again."
            )


@contextmanager
def postgres_advisory_lock(conn: Any, name: str, *, wait: float) -> Iterator[_PostgresHeld]:
    import psycopg2
    from psycopg2 import errors

    db = postgres_connect(conn, options=f"-c lock_timeout={int(wait * 1000)}")
    try:
        try:
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", (advisory_key(name),))
        except errors.LockNotAvailable:
            raise AACLockTimeoutError(
                f"Another process held the refresh lock {name!r} for more than {wait:.0f} s. It may be "
                "stuck on a slow token endpoint or a store outage; try again, and check the other workers' logs."
            ) from None
        except psycopg2.Error as err:
            raise AACLockUnavailableError(
                f"The PostgreSQL lock database of connection {conn.conn_id!r} failed while locking "
                f"({_first_line(err)}); try again. Nothing was spent."
            ) from None
        yield _PostgresHeld(db, name)
    finally:
        with contextlib.suppress(psycopg2.Error), db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(name),))
        with contextlib.suppress(psycopg2.Error):
            db.close()


def redis_client(conn: Any) -> Any:
    try:
        import redis
    except ImportError:
        raise AACConfigError(
            "Lock mode with Redis needs redis: pip install 'airflow-provider-aac[redis]'."
        ) from None
    extra = conn.extra_dejson or {}
    return redis.Redis(
        host=conn.host or "127.0.0.1",
        port=conn.port or 6379,
        db=int(extra.get("db", conn.schema or 0) or 0),
        username=conn.login or None,
        password=conn.password or None,
        ssl=bool(extra.get("ssl", False)),
        socket_timeout=5,
        socket_connect_timeout=5,
        socket_keepalive=True,
    )


class _RedisHeld:
    """The Redis lock and the watchdog that renews it until the holder is done."""

    def __init__(self, lock: Any, name: str) -> None:
        self.lock = lock
        self.name = name
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="aac-redis-lock-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _renew(self) -> None:
        import redis

        while not self._stop.wait(REDIS_LOCK_TTL / 3):
            try:
                self.lock.reacquire()
            except redis.exceptions.LockNotOwnedError:
                self.lost = "it expired or Redis restarted"
                return
            except redis.RedisError as err:
                log.warning(
                    "Could not renew the refresh lock %r (%s); retrying.", self.name, type(err).__name__
                )

    def ensure_held(self) -> None:
        import redis

        problem = self.lost
        if problem is None:
            try:
                left = self.lock.redis.pttl(self.name) / 1000.0
                if left < 0:
                    problem = "it is gone (it expired, or Redis restarted)"
                elif not self.lock.owned():
                    problem = "another process owns it now"
                elif left < REDIS_MIN_LEFT:
                    problem = f"it has only {left:.1f} s left"
            except redis.RedisError as err:
                problem = f"Redis did not answer ({type(err).__name__})"
        if problem is not None:
            raise AACLockUnavailableError(
                f"The Redis refresh lock {self.name!r} is no longer certainly held: {problem}. Nothing was "
                "sent with it; try again."
            )


@contextmanager
def redis_lock(conn: Any, name: str, *, wait: float) -> Iterator[_RedisHeld]:
    import redis

    client = redis_client(conn)
    lock = client.lock(name, timeout=REDIS_LOCK_TTL, blocking_timeout=wait, sleep=0.02, thread_local=False)
    try:
        try:
            acquired = lock.acquire()
        except redis.RedisError as err:
            raise AACLockUnavailableError(
                f"Cannot use the Redis lock of connection {conn.conn_id!r} ({type(err).__name__}). If Redis is "
                "restarting, try again; otherwise check its host, port and password. Nothing was spent."
            ) from None
        if not acquired:
            raise AACLockTimeoutError(
                f"Another process held the refresh lock {name!r} for more than {wait:.0f} s; try again."
            )
        held = _RedisHeld(lock, name)
        held.start()
        try:
            yield held
        finally:
            held.stop()
            try:
                lock.release()
            except redis.exceptions.LockError:
                log.warning("The refresh lock %r was lost before it was released (%s).", name, held.lost)
            except redis.RedisError as err:
                log.warning("Could not release the refresh lock %r (%s).", name, type(err).__name__)
    finally:
        client.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__
