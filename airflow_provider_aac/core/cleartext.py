"""Plain ``http://`` only to this machine, unless the connection opts in.

Both URLs the provider sends tokens to (the API base URL, with the access token; the
token endpoint, with the refresh token) pass through ``refuse_cleartext`` before anything
is sent. Over plain HTTP to another host either token crosses the network readable by
anyone on the path; a spent refresh token seen there is a stolen token family. Loopback
addresses (``127.0.0.0/8``, ``::1``, ``localhost``) stay allowed for the simulator. The
check reads the URL only: no name is resolved, so a refusal happens before any connection.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aac.core.errors import AACConfigError

ALLOW_INSECURE_HTTP = "allow_insecure_http"


def insecure_http_allowed(extra: Mapping[str, Any], *, conn_id: str) -> bool:
    """The connection's explicit opt-in: ``"allow_insecure_http": true`` in its extra."""
    raw = extra.get(ALLOW_INSECURE_HTTP)
    if raw in (None, "", False) or (isinstance(raw, str) and raw.strip().lower() == "false"):
        return False
    if raw is True or (isinstance(raw, str) and raw.strip().lower() == "true"):
        return True
    raise AACConfigError(
        f"Connection {conn_id!r} has {ALLOW_INSECURE_HTTP} {raw!r}; use true or false, or remove it."
    )


def is_loopback_host(host: str | None) -> bool:
    """True for a loopback IP address or the name ``localhost`` (RFC 6761), without resolving."""
    if not host:
        return False
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_cleartext(url: str, *, what: str, conn_id: str, allowed: bool) -> None:
    """Raise unless ``url`` is https, goes to loopback, or the connection opted in (``allowed``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or allowed or is_loopback_host(parts.hostname):
        return
    raise AACConfigError(
        f"The {what} of connection {conn_id!r} ({url}) is plain http:// to another machine, so AAC's "
        "tokens would cross the network unencrypted, where anyone on the path could read and spend "
        "them. Nothing was sent. Use https://; or, only if the network between Airflow and that host "
        f'is trusted (e.g. a TLS-terminating proxy beside Airflow), set "{ALLOW_INSECURE_HTTP}": true '
        "in the connection's extra."
    )
