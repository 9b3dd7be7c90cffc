"""``TokenManager``'s decisions as tables: who spends, what must be configured, when a 401 is not about age.

No server and no Airflow process: the decisions read the connection's configuration and
what the process can do. A worker is set up as Airflow sets one up (its process
context, ``_AIRFLOW_PROCESS_CONTEXT=client``); nothing of the provider is patched.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.core.token_state import (
    ACCESS_FINGERPRINT,
    ACCESS_LIFETIME,
    REFRESHED_AT,
    TokenState,
    fingerprint,
    utc_iso,
)
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.tokens.connection import (
    AACConnectionConfig,
    RefreshMode,
    Spender,
    Store,
    plan_refresh,
)
from airflow_provider_aac.tokens.manager import REJECTION_COOLDOWN, TokenManager

CONN = "aac_manager_table"
PAIR = {"access_token": "header.payload.signature", "refresh_token": "refresh-" + "r" * 20}
NOW = 1_800_000_000.0

META, LOCK, SINGLE = RefreshMode.METADATA_DB, RefreshMode.LOCK, RefreshMode.SINGLE_WRITER


def config(
    mode: str | None = None, *, lock: bool = False, api: bool = False, **extra: Any
) -> AACConnectionConfig:
    settings = {
        "refresh_mode": mode,
        "lock_conn_id": "aac_lock" if lock else None,
        "airflow_api_conn_id": "airflow_api" if api else None,
    }
    return AACConnectionConfig(
        conn_id=CONN,
        base_url="https://us1.alteryxcloud.com",
        extra={**PAIR, **{k: v for k, v in settings.items() if v is not None}, **extra},
    )


def manager() -> TokenManager:
    return TokenManager(CONN, clock=lambda: NOW)


# auto: by what the process can do (orm), who it is (the refresh operator is the writer),
# and what the connection names (a lock, an API connection).
AUTO_TABLE = [
    # orm,  writer, lock,  api,   mode
    (True, False, False, False, META),  # api-server, scheduler, no REST writer anywhere
    (True, False, True, False, META),
    (True, False, True, True, META),  # the lock orders the row writer with the REST writers
    (True, False, False, True, SINGLE),  # lock-less REST writers exist: leave it to the refresh DAG
    (True, True, False, True, META),  # the refresh operator with ORM access writes the row
    (True, True, False, False, META),
    (True, True, True, True, META),
    (False, False, True, True, LOCK),  # a worker with a lock
    (False, False, True, False, LOCK),
    (False, True, True, True, LOCK),
    (False, False, False, True, SINGLE),  # a worker without a lock waits for the refresh DAG
    (False, False, False, False, SINGLE),
    (False, True, False, True, SINGLE),  # the refresh operator on a worker: the single writer
]


@pytest.mark.parametrize(("orm", "as_writer", "lock", "api", "expected"), AUTO_TABLE)
def test_auto_chooses_by_the_process_and_the_connection(
    orm: bool, as_writer: bool, lock: bool, api: bool, expected: RefreshMode
) -> None:
    chosen = manager().mode_of(config(lock=lock, api=api), orm=orm, as_writer=as_writer)
    assert chosen is expected
    assert config(lock=lock, api=api).refresh_mode is RefreshMode.AUTO


@pytest.mark.parametrize("named", [META, LOCK, SINGLE])
@pytest.mark.parametrize("orm", [True, False])
@pytest.mark.parametrize("as_writer", [True, False])
def test_a_named_mode_is_used_as_named(named: RefreshMode, orm: bool, as_writer: bool) -> None:
    assert manager().mode_of(config(named.value, lock=True, api=True), orm=orm, as_writer=as_writer) is named


ROW, REST = Store.METADATA_DB, Store.REST
CLAIM, DAG = Spender.CLAIM_HOLDER, Spender.REFRESH_DAG

# The one decision: from the connection and the process, the store, the spender and the
# outer lock that ``with_lease`` runs with. The single writer is only a row of it.
PLAN_TABLE = [
    # named,          orm,   writer, lock,  api,   store, spender
    (None, True, False, False, False, ROW, CLAIM),
    (None, True, False, True, True, ROW, CLAIM),
    (None, True, False, False, True, REST, DAG),  # waits for the refresh DAG like a worker
    (None, True, True, False, True, ROW, CLAIM),  # the refresh operator with ORM access writes the row
    (None, True, True, False, False, ROW, CLAIM),
    (None, False, False, True, True, REST, CLAIM),  # a worker in lock mode
    (None, False, False, False, True, REST, DAG),
    (None, False, True, False, True, REST, CLAIM),  # the refresh operator on a worker
    ("single_writer", True, True, False, False, ROW, CLAIM),  # the writer with ORM and no REST writer
    ("single_writer", True, True, False, True, REST, CLAIM),
    ("single_writer", False, False, False, True, REST, DAG),
    ("lock", True, False, True, True, REST, CLAIM),
    ("lock", True, True, True, False, ROW, CLAIM),
    ("metadata_db", True, False, True, True, ROW, CLAIM),
    ("metadata_db", True, True, False, True, ROW, CLAIM),
]


@pytest.mark.parametrize(("named", "orm", "as_writer", "lock", "api", "store", "spender"), PLAN_TABLE)
def test_the_plan_names_a_store_a_spender_and_the_lock(
    named: str | None, orm: bool, as_writer: bool, lock: bool, api: bool, store: Store, spender: Spender
) -> None:
    plan = plan_refresh(config(named, lock=lock, api=api), orm=orm, as_writer=as_writer)
    assert (plan.store, plan.spender) == (store, spender)
    assert plan.lock_conn_id == ("aac_lock" if lock else None)


@pytest.mark.parametrize(
    ("lock", "api", "waits"), [(False, True, True), (False, False, True), (True, True, False)]
)
def test_tasks_wait_for_the_refresh_dag_only_without_a_lock(lock: bool, api: bool, waits: bool) -> None:
    assert manager().tasks_wait_for_refresh_dag(config(lock=lock, api=api)) is waits


# On a worker (no ORM), the checked mode refuses what cannot work, naming the key to fix.
WORKER_REFUSALS = [
    (config("metadata_db", lock=True, api=True), "asks for refresh_mode 'metadata_db'", "'lock'"),
    (config("lock", api=True), "asks for refresh_mode 'lock' but has no 'lock_conn_id'", "postgres or redis"),
    (config("refresh_mode_typo"), "has refresh_mode 'refresh_mode_typo'", "auto"),
]


@pytest.mark.parametrize(("cfg", "what", "fix"), WORKER_REFUSALS)
def test_a_worker_refuses_a_mode_it_cannot_use(
    monkeypatch: pytest.MonkeyPatch, cfg: AACConnectionConfig, what: str, fix: str
) -> None:
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    with pytest.raises(AACConfigError) as info:
        manager().mode(cfg)
    assert what in str(info.value) and fix in str(info.value)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [(config(lock=True, api=True), LOCK), (config(api=True), SINGLE), (config("single_writer"), SINGLE)],
)
def test_a_worker_uses_what_it_can(
    monkeypatch: pytest.MonkeyPatch, cfg: AACConnectionConfig, expected: RefreshMode
) -> None:
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    assert manager().mode(cfg) is expected


@pytest.mark.parametrize(
    ("cfg", "refused"),
    [
        (config(lock=True, api=True), None),
        (config(api=True), None),
        (config(lock=True), "has no 'airflow_api_conn_id'"),  # lock mode writes through REST
        (config("single_writer"), "has no 'airflow_api_conn_id'"),
    ],
)
def test_a_worker_is_told_at_once_what_a_refresh_would_lack(
    monkeypatch: pytest.MonkeyPatch, cfg: AACConnectionConfig, refused: str | None
) -> None:
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "client")
    monkeypatch.delenv(f"AIRFLOW_CONN_{CONN.upper()}", raising=False)
    if refused is None:
        manager().ensure_refreshable(cfg)
        return
    with pytest.raises(AACConfigError, match=refused):
        manager().ensure_refreshable(cfg)


def test_a_connection_in_an_environment_variable_is_not_refreshable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", '{"conn_type": "aac"}')
    with pytest.raises(AACConfigError, match=f"environment variable AIRFLOW_CONN_{CONN.upper()}"):
        manager().ensure_refreshable(config(lock=True, api=True))


# A 401 on a token issued within the cool-down (60 s, or a quarter of a short lifetime)
# is not about its age: it is reported instead of replaced.
@pytest.mark.parametrize(
    ("refreshed_ago", "lifetime", "not_about_expiry"),
    [
        (None, 3600.0, False),  # never refreshed by the provider: a pasted pair may be old
        (10.0, 3600.0, True),
        (REJECTION_COOLDOWN - 1, 3600.0, True),
        (REJECTION_COOLDOWN + 1, 3600.0, False),
        (14.0, 60.0, True),  # a 60 s token: the cool-down is 15 s
        (16.0, 60.0, False),
        (25.0, 80.0, False),  # 20 s
    ],
)
def test_a_rejection_soon_after_a_refresh_is_not_about_expiry(
    refreshed_ago: float | None, lifetime: float, not_about_expiry: bool
) -> None:
    extra: dict[str, Any] = {
        **PAIR,
        ACCESS_LIFETIME: lifetime,
        ACCESS_FINGERPRINT: fingerprint(PAIR["access_token"]),
    }
    if refreshed_ago is not None:
        extra[REFRESHED_AT] = utc_iso(NOW - refreshed_ago)
    state = TokenState.from_extra(extra, conn_id=CONN)
    assert manager().rejection_is_not_about_expiry(state) is not_about_expiry
