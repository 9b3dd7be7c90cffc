"""The ``aac`` connection: configuration and token store in one.

Reads always go through Airflow's own lookup (the Execution API on workers, the secrets
backends and the metastore elsewhere), so a task sees exactly what Airflow gives it.
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
from airflow_provider_aac.tokens.store_health import connection_store_unreachable

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
