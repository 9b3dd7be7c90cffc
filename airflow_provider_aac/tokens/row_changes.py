"""News of a write to a connection's row, so that waiters wake when a pair is stored, not at their next look.

In metadata-DB mode the processes that find another's claim wait outside any
transaction for it to store the new pair. On PostgreSQL every write of the row's token
state sends ``NOTIFY`` on a channel of that connection from inside its own transaction,
so it is delivered at the commit and never before the row is visible; a waiter
``LISTEN``s on a connection of its own before it reads the row again, so no news falls
between that read and its wait, and blocks on the socket up to its next look.

Waking is only ever early: every wait is bounded by the refresher's own look interval
and deadlines, and anything that fails here (another database, another driver, a
dropped connection) turns the wait back into a sleep. The waiter's connection is taken
out of Airflow's pool (a ``LISTEN`` must not follow it back there), used by the one
thread that opened it and closed when the wait ends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import selectors
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from airflow_provider_aac.core.token_store import Changes, Sleeping

log = logging.getLogger(__name__)


def channel(conn_id: str) -> str:
    """The connection's channel: a plain lowercase identifier whatever the id holds (a clash only costs a read)."""
    return "aac_refresh_" + hashlib.blake2b(conn_id.encode(), digest_size=8).hexdigest()


def announce_write(session: Any, conn_id: str) -> None:
    """Tell the row's waiters, at this transaction's commit, that its token state was written."""
    from sqlalchemy import func, select

    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(channel(conn_id), "")))


class Listening:
    """A waiter's own PostgreSQL connection, listening on one connection's channel."""

    signalled = True

    def __init__(self, db: Any, conn_id: str, sleep: Callable[[float], None]) -> None:
        self.db: Any | None = db
        self.conn_id = conn_id
        self._sleep = sleep
        self._pid = os.getpid()

    def wait(self, timeout: float) -> None:
        """Until news arrives or ``timeout`` passes; a failure sleeps out the rest and ends the listening."""
        deadline = time.monotonic() + timeout
        db = self.db
        if db is None:
            self._sleep(timeout)
            return
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(db, selectors.EVENT_READ)
                while not _heard(db):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    selector.select(left)
                    db.poll()
        except Exception as err:  # a wait must never fail: it only ever ends early
            log.info(
                "AAC connection %r: stopped listening for stored pairs (%s); looking again by polling.",
                self.conn_id,
                type(err).__name__,
            )
            self.close()
            self._sleep(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Close the connection; in a forked child (which shares the socket) only forget it."""
        self.signalled = False
        db, self.db = self.db, None
        if db is not None and os.getpid() == self._pid:
            with suppress(Exception):
                db.close()


def _heard(db: Any) -> bool:
    """Whether news came in (any: the channel is this connection's alone); takes it off the queue."""
    heard = bool(db.notifies)
    db.notifies.clear()
    return heard


@contextmanager
def row_changes(conn_id: str, sleep: Callable[[float], None] = time.sleep) -> Iterator[Changes]:
    """News of writes to ``conn_id``'s row while the block runs: NOTIFY on PostgreSQL, a plain sleep elsewhere."""
    db = _listen(conn_id)
    if db is None:
        yield Sleeping(sleep)
        return
    listening = Listening(db, conn_id, sleep)
    try:
        yield listening
    finally:
        listening.close()


def _listen(conn_id: str) -> Any | None:
    """A connection of our own that LISTENs on the row's channel; None where that is not on offer."""
    from airflow import settings

    engine = getattr(settings, "engine", None)
    if engine is None or engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg2":
        return None
    db = None
    try:
        proxied = engine.raw_connection()
        proxied.detach()  # never back to the pool with a LISTEN on it: closing it really closes
        db = proxied.dbapi_connection
        db.rollback()  # a pool's liveness check may have opened a transaction
        db.autocommit = True
        with db.cursor() as cursor:
            cursor.execute(f'LISTEN "{channel(conn_id)}"')
        return db
    except Exception as err:  # news is an optimisation: without it the waiter polls
        log.info(
            "AAC connection %r: cannot listen for stored pairs (%s); polling instead.",
            conn_id,
            type(err).__name__,
        )
        if db is not None:
            with suppress(Exception):
                db.close()
        return None
