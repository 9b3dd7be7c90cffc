"""Who spends the refresh token and where the pair is stored: one decision, from the connection and the process.

Every refresh runs the one algorithm (``Refresher.with_lease``) over a store; what
differs between processes is only which store, who may spend, and whether a lock is an
outer section. The user-facing ``refresh_mode`` names that decision (and is recorded
with each pair, as ``status`` shows it); this module turns it into the three parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.tokens.connection import AACConnectionConfig, RefreshMode


class Store(str, Enum):
    """Where the claim and the new pair are written."""

    METADATA_DB = "metadata_db"
    """The connection's row, claimed in one short transaction and stored in another."""
    REST = "rest"
    """Airflow's REST API, which has no compare-and-swap: only inside a lock or for the single writer."""


class Spender(str, Enum):
    """Who may present the refresh token."""

    CLAIM_HOLDER = "claim_holder"
    """Whichever process writes the claim first; the others wait for what it stores."""
    REFRESH_DAG = "refresh_dag"
    """Only the refresh DAG; this process waits for the pair it publishes."""


@dataclass(frozen=True)
class RefreshPlan:
    mode: RefreshMode
    """The mode as users name it, recorded with each pair this process keeps."""
    store: Store
    spender: Spender
    lock_conn_id: str | None
    """A lock every refresher of the connection takes around the whole refresh, in every mode."""


def plan_refresh(config: AACConnectionConfig, *, orm: bool, as_writer: bool) -> RefreshPlan:
    """The plan a process of that kind would follow, unchecked (for reports on other components too).

    ``orm``: the process may use Airflow's metadata DB (Airflow 3 blocks it on workers and
    triggerers). ``as_writer``: the refresh operator, which spends in single-writer mode.
    """
    mode = chosen_mode(config, orm=orm, as_writer=as_writer)
    row = mode is RefreshMode.METADATA_DB or (as_writer and orm and not config.airflow_api_conn_id)
    return RefreshPlan(
        mode=mode,
        store=Store.METADATA_DB if row else Store.REST,
        spender=(
            Spender.REFRESH_DAG
            if mode is RefreshMode.SINGLE_WRITER and not as_writer
            else Spender.CLAIM_HOLDER
        ),
        lock_conn_id=config.lock_conn_id,
    )


def checked_plan(config: AACConnectionConfig, *, orm: bool, as_writer: bool) -> RefreshPlan:
    """The plan this process follows; a mode it cannot use is refused with what to change."""
    plan = plan_refresh(config, orm=orm, as_writer=as_writer)
    if plan.mode is RefreshMode.METADATA_DB and not orm:
        raise AACConfigError(
            f"Connection {config.conn_id!r} asks for refresh_mode 'metadata_db', but this process "
            "cannot use Airflow's metadata DB (Airflow 3 blocks it on workers and triggerers). "
            "Use 'lock' (with 'lock_conn_id' and 'airflow_api_conn_id') or 'single_writer', or 'auto'."
        )
    if plan.mode is RefreshMode.LOCK and not plan.lock_conn_id:
        raise AACConfigError(
            f"Connection {config.conn_id!r} asks for refresh_mode 'lock' but has no 'lock_conn_id'. Add "
            "the id of a postgres or redis connection to its extra."
        )
    return plan


def chosen_mode(config: AACConnectionConfig, *, orm: bool, as_writer: bool) -> RefreshMode:
    """The mode the connection names, or the one ``auto`` picks by what the process can do.

    A process with ORM access refreshes through the row only where no lock-less REST
    writer can race it: when the connection names a lock (then it takes the lock too)
    or has no Airflow API connection (then no worker writes). Otherwise the workers are
    single-writer waiters and the refresh DAG writes through the REST API without a
    lock, so this process leaves the spending to that DAG as well.
    """
    chosen = config.refresh_mode
    if chosen is not RefreshMode.AUTO:
        return chosen
    if orm:
        if as_writer or config.lock_conn_id or not config.airflow_api_conn_id:
            return RefreshMode.METADATA_DB
        return RefreshMode.SINGLE_WRITER
    return RefreshMode.LOCK if config.lock_conn_id else RefreshMode.SINGLE_WRITER
