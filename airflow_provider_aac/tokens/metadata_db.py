"""Metadata-DB mode: the connection row itself is the lock and the store.

Only for processes with ORM access (api-server, scheduler-side code, the in-process test
modes, scripts that declare themselves server processes). Each section is one short
transaction that locks the connection row: ``SELECT ... FOR UPDATE`` on PostgreSQL and
MySQL; on SQLite, which has no row locks, a no-op UPDATE first takes the database's
write lock so two writers cannot both read the old state. Every write also announces
itself to the processes waiting for it (``tokens.row_changes``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from airflow_provider_aac.core.token_state import TokenState, Version, check_version
from airflow_provider_aac.core.token_store import Change, TokenStore
from airflow_provider_aac.errors import AACConfigError, AACStoreUnavailableError
from airflow_provider_aac.tokens.connection import config_from_connection, read_config
from airflow_provider_aac.tokens.row_changes import announce_write

BUSY_RETRY_SECONDS = 30.0


class MetadataDbTokenStore:
    """The locked connection row, inside one transaction."""

    def __init__(self, conn_id: str, session: Any, row: Any) -> None:
        self.conn_id = conn_id
        self.session = session
        self.row = row

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        config = config_from_connection(self.row)
        return config.token_state(), config.extra

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        stored, extra = self.read()
        check_version(stored, expected, conn_id=self.conn_id)
        new_extra = change(stored, extra)
        self.row.set_extra(json.dumps(new_extra))
        announce_write(self.session, self.conn_id)
        return new_extra

    def check_writable(self) -> None:
        """Tasks read through Airflow's lookup; if that shows other tokens, our writes are invisible."""
        if read_config(self.conn_id).extra.get("refresh_token") != self.read()[1].get("refresh_token"):
            raise AACConfigError(
                f"Connection {self.conn_id!r} is shadowed: Airflow's lookup (an AIRFLOW_CONN_ variable or "
                "a secrets backend) returns other tokens than the metadata DB row, so a refreshed pair "
                "stored in the row would never be used. Nothing was spent. Keep the connection in one "
                "place only: remove it from the secrets backend or the environment."
            )


def metadata_db_section(conn_id: str) -> AbstractContextManager[TokenStore]:
    """One transaction holding the connection row's lock; commits on success."""
    return _transaction(conn_id, lock=True)


def metadata_db_look(conn_id: str) -> TokenState:
    """The row's token state as last committed, read without its lock: a waiter's look must not queue."""
    with _transaction(conn_id, lock=False) as store:
        return store.read()[0]


@contextmanager
def _transaction(conn_id: str, *, lock: bool) -> Iterator[TokenStore]:
    """A transaction on the connection's row, locked or not, in a session of its own.

    Not the thread's scoped session: Airflow's connection lookup uses that one and commits
    it, which would end this transaction and free the row early.
    A database that fails (a restart, a failover) is reported as unavailable, so the
    refresh retries its store instead of dropping the pair.
    """
    from airflow.utils.session import create_session
    from sqlalchemy.exc import DBAPIError

    try:
        with create_session(scoped=False) as session:
            yield MetadataDbTokenStore(conn_id, session, _row(session, conn_id, lock=lock))
    except DBAPIError as err:
        raise AACStoreUnavailableError(
            f"The metadata DB failed while reading or writing connection {conn_id!r} "
            f"({type(err.orig).__name__ if err.orig is not None else type(err).__name__}); it may be restarting."
        ) from None


def _row(session: Any, conn_id: str, *, lock: bool) -> Any:
    from airflow.models.connection import Connection
    from sqlalchemy import select, update
    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + BUSY_RETRY_SECONDS
    delay = 0.02
    while True:
        try:
            query = select(Connection).where(Connection.conn_id == conn_id)
            if lock and session.get_bind().dialect.name == "sqlite":
                session.execute(
                    update(Connection).where(Connection.conn_id == conn_id).values(conn_id=Connection.conn_id)
                )
            elif lock:
                query = query.with_for_update()
            row = session.scalars(query).one_or_none()
            break
        except OperationalError as err:
            session.rollback()
            if "locked" not in str(err).lower():
                raise
            if time.monotonic() > deadline:
                raise AACStoreUnavailableError(
                    f"The metadata DB stayed busy while locking connection {conn_id!r}; try again."
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if row is None:
        raise AACConfigError(
            f"Connection {conn_id!r} is not in Airflow's metadata DB (it comes from an environment "
            "variable or a secrets backend), so rotated tokens cannot be stored. Nothing was spent. "
            f"Create it with: airflow connections add {conn_id} --conn-type aac ..."
        )
    return row
