"""The ``aac`` connection: its configuration, the refresh plan it implies, and its store.

Reads always go through Airflow's own lookup (the Execution API on workers, the secrets
backends and the metastore elsewhere), so a task sees exactly what Airflow gives it.

Every refresh runs the one algorithm (``Refresher.with_lease``) over a store; what
differs between processes is only which store, who may spend, and whether a lock is an
outer section. The user-facing ``refresh_mode`` names that decision (and is recorded
with each pair, as ``status`` shows it); ``plan_refresh`` turns it into the three parts.

Whether the store behind the lookup can be used and answers is asked here too: after a
"not defined" (to tell a missing connection from an outage), and by ``tokens.manager``
(whether this process may use the ORM).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aac.core.cleartext import insecure_http_allowed, refuse_cleartext
from airflow_provider_aac.core.token_grant import text
from airflow_provider_aac.core.token_state import TokenState, parse_extra
from airflow_provider_aac.errors import AACConfigError, AACStoreUnavailableError

CONN_TYPE = "aac"
DEFAULT_CONN_ID = "aac_default"
DEFAULT_REFRESH_DAG_ID = "aac_token_refresh"


class RefreshMode(str, Enum):
    """Who may spend the refresh token, chosen by what the process can do."""

    AUTO = "auto"
    METADATA_DB = "metadata_db"
    LOCK = "lock"
    SINGLE_WRITER = "single_writer"


@dataclass(frozen=True)
class AACConnectionConfig:
    """One read of the connection; never cached beyond the call that made it."""

    conn_id: str
    base_url: str
    extra: dict[str, Any]

    def __repr__(self) -> str:
        return f"AACConnectionConfig(conn_id={self.conn_id!r}, base_url={self.base_url!r})"

    def token_state(self) -> TokenState:
        return TokenState.from_extra(self.extra, conn_id=self.conn_id)

    def text(self, key: str) -> str | None:
        return text(self.extra.get(key))

    @property
    def lock_conn_id(self) -> str | None:
        return self.text("lock_conn_id")

    @property
    def airflow_api_conn_id(self) -> str | None:
        return self.text("airflow_api_conn_id")

    @property
    def refresh_dag_id(self) -> str:
        return self.text("refresh_dag_id") or DEFAULT_REFRESH_DAG_ID

    @property
    def refresh_mode(self) -> RefreshMode:
        raw = self.text("refresh_mode") or RefreshMode.AUTO.value
        try:
            return RefreshMode(raw)
        except ValueError:
            choices = ", ".join(m.value for m in RefreshMode)
            raise AACConfigError(
                f"Connection {self.conn_id!r} has refresh_mode {raw!r}; use one of {choices}, or remove it."
            ) from None

    @property
    def allow_insecure_http(self) -> bool:
        return insecure_http_allowed(self.extra, conn_id=self.conn_id)

    @property
    def min_ttl(self) -> float | None:
        return self.seconds("min_ttl")

    def seconds(self, key: str) -> float | None:
        """An optional, non-negative number of seconds from the extra."""
        raw = self.extra.get(key)
        if raw in (None, ""):
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise AACConfigError(
                f"Connection {self.conn_id!r} has {key} {raw!r}; it must be a number of seconds."
            ) from None
        if not math.isfinite(value) or value < 0:
            raise AACConfigError(
                f"Connection {self.conn_id!r} has {key} {raw!r}; use a number of seconds >= 0."
            )
        return value


def config_from_connection(conn: Any) -> AACConnectionConfig:
    """Validate an Airflow connection object as an ``aac`` connection."""
    conn_id = conn.conn_id
    if conn.conn_type != CONN_TYPE:
        raise AACConfigError(
            f"Connection {conn_id!r} has type {conn.conn_type!r}, not {CONN_TYPE!r}. Recreate it with "
            f"--conn-type {CONN_TYPE} (install airflow-provider-aac where the connection is created, "
            "or Airflow drops the type), or pass the id of an AAC connection."
        )
    config = AACConnectionConfig(
        conn_id=conn_id,
        base_url=base_url_of(conn_id, conn.host, conn.schema, conn.port),
        extra=_unprefixed(parse_extra(conn.extra, conn_id=conn_id)),
    )
    refuse_cleartext(
        config.base_url, what="API base URL (the host)", conn_id=conn_id, allowed=config.allow_insecure_http
    )
    return config


def _unprefixed(extra: dict[str, Any]) -> dict[str, Any]:
    """Form fields saved as ``extra__aac__<name>`` by older UIs count as ``<name>``; plain keys win."""
    prefix = f"extra__{CONN_TYPE}__"
    plain = {k: v for k, v in extra.items() if not k.startswith(prefix)}
    for key, value in extra.items():
        if key.startswith(prefix) and value not in (None, ""):
            plain.setdefault(key[len(prefix) :], value)
    return plain


def base_url_of(conn_id: str, host: str | None, schema: str | None, port: int | None) -> str:
    """The API base URL: the host with its scheme, as AAC documents it per region."""
    raw = (host or "").strip().rstrip("/")
    if not raw:
        raise AACConfigError(
            f"Connection {conn_id!r} has no host. Set it to your AAC API base URL, such as "
            "https://us1.alteryxcloud.com (or eu1 / au1)."
        )
    if "://" not in raw and schema in ("http", "https"):
        raw = f"{schema}://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AACConfigError(
            f"The host of connection {conn_id!r} ({raw}) has no http(s) scheme. Set it to the full "
            "API base URL, such as https://us1.alteryxcloud.com."
        )
    if port and parts.port is None:
        raw = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
    if parts.path.rstrip("/").endswith("/v4"):
        raw = raw[: raw.rstrip("/").rfind("/v4")]
    return raw


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


def read_config(conn_id: str) -> AACConnectionConfig:
    return config_from_connection(get_named_connection(conn_id))


def get_named_connection(conn_id: str, *, named_by: str | None = None, aac_conn_id: str | None = None) -> Any:
    """A connection through Airflow's lookup; a missing one and an unreachable store are told apart.

    Airflow's lookup reports "not defined" both when the connection does not exist and
    when the store behind it (the api-server on workers, the metadata DB elsewhere) did
    not answer. A missing connection is a mistake to fix; an outage passes, so sensors
    and triggers may keep polling through it. On "not defined", the store is asked once
    whether it answers at all.
    """
    from airflow_provider_aac.compat import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as err:
        if type(err).__name__ != "AirflowNotFoundException":
            raise AACStoreUnavailableError(
                f"Could not read connection {conn_id!r} ({type(err).__name__}); Airflow's API server or "
                "metadata DB may be restarting. Try again."
            ) from None
    variable = environment_variable_defining(conn_id)
    if variable:
        # Before Airflow 3.2 the lookup skips a variable it cannot parse and reports "not defined".
        raise AACConfigError(
            f"Connection {conn_id!r} is defined by the environment variable {variable}, but Airflow could "
            "not read it: its value must be a connection URI or JSON whose extra is a JSON object. "
            f"Fix {variable}."
        )
    unreachable = connection_store_unreachable()
    if unreachable:
        raise AACStoreUnavailableError(
            f"Could not read connection {conn_id!r}: {unreachable}. It may be restarting; try again."
        )
    if named_by:
        raise AACConfigError(
            f"Connection {conn_id!r}, named by '{named_by}' in the extra of AAC connection {aac_conn_id!r}, "
            f"does not exist. Create it (airflow connections add {conn_id} ...), or fix '{named_by}'."
        )
    raise AACConfigError(
        f"Connection {conn_id!r} does not exist. Create it with: airflow connections add {conn_id} "
        '--conn-type aac --conn-host <API base URL> --conn-extra \'{"access_token": ..., "refresh_token": ...}\''
    )


def environment_variable_defining(conn_id: str) -> str | None:
    """The ``AIRFLOW_CONN_*`` variable that defines (and shadows) this connection, if any."""
    name = f"AIRFLOW_CONN_{conn_id.upper()}"
    return name if os.environ.get(name) else None


def refuse_unwritable(conn_id: str) -> None:
    variable = environment_variable_defining(conn_id)
    if variable:
        raise AACConfigError(
            f"Connection {conn_id!r} is defined by the environment variable {variable}, which the "
            "provider cannot update, so the rotated refresh token would be lost. Nothing was spent. "
            f"Create the connection in Airflow's metadata DB instead (airflow connections add {conn_id} "
            f"--conn-type aac ...) and remove {variable}."
        )


def orm_available() -> bool:
    """False on workers and triggerers, where Airflow 3 blocks the ORM."""
    if os.environ.get("_AIRFLOW_PROCESS_CONTEXT") == "client":
        return False
    try:
        from airflow import settings
        from airflow.configuration import conf
    except ImportError:
        return False
    if conf.get("database", "sql_alchemy_conn", fallback="").startswith("airflow-db-not-allowed"):
        return False
    session_factory = getattr(settings, "Session", None)
    return session_factory is not None and getattr(session_factory, "__name__", "") != "BlockedDBSession"


def connection_store_unreachable() -> str | None:
    """Why the store behind Airflow's connection lookup does not answer, or None when it does."""
    if orm_available():
        return metadata_db_unreachable()
    return execution_api_unreachable()


def metadata_db_unreachable() -> str | None:
    """Why the metadata DB does not answer a trivial query, or None when it does."""
    try:
        from airflow import settings
        from sqlalchemy import text

        engine = settings.engine
        if engine is None:
            return None
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:
        return f"the metadata DB did not answer ({type(err).__name__})"
    return None


def execution_api_unreachable() -> str | None:
    """Why Airflow's API server (the store on workers and triggerers) does not answer its health check."""
    import httpx

    from airflow_provider_aac.compat import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    if base.startswith("/"):
        base = f"http://localhost:8080{base}"
    url = conf.get("core", "execution_api_server_url", fallback=f"{base.rstrip('/')}/execution/")
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5.0)
    except httpx.HTTPError as err:
        return f"Airflow's API server at {url} did not answer ({type(err).__name__})"
    return None
