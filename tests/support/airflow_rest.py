"""Calls to a running api-server's public REST API, as its admin user.

Tests write connections the way the UI does (much faster than the CLI) and read runs,
task instances and logs the way a user would, so the client stays this thin.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_home import minted_aac_extra
from tests.support.processes import AirflowEnvError


def api_token(base_url: str, username: str, password: str, timeout: float = 30.0) -> str:
    """``POST /auth/token`` (SimpleAuthManager) and return the JWT."""
    resp = httpx.post(
        f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=timeout
    )
    if resp.status_code != 201:
        raise AirflowEnvError(f"POST /auth/token answered {resp.status_code}: {resp.text}")
    return str(resp.json()["access_token"])


class RestClient:
    """Bearer-authenticated calls to one api-server; fetches a new token on 401."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.username = username
        self.password = password
        self._token: str | None = None
        self._http = httpx.Client(base_url=base_url, timeout=60.0)

    def api_token(self) -> str:
        """A fresh JWT from ``POST /auth/token``."""
        return api_token(self.base_url, self.username, self.password)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Authenticated request; the caller checks the status (tests assert on it)."""
        extra_headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            if self._token is None:
                self._token = self.api_token()
            headers = {"Authorization": f"Bearer {self._token}", **extra_headers}
            resp = self._http.request(method, path, headers=headers, **kwargs)
            if resp.status_code != 401 or attempt == 2:
                return resp
            self._token = None
        raise AssertionError("unreachable")

    def request_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """Authenticated request whose error status raises, with the body in the message."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise AirflowEnvError(f"{method} {path} answered {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def add_connection(
        self,
        conn_id: str,
        conn_type: str,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        port: int | None = None,
        schema: str | None = None,
    ) -> None:
        """Create a connection through the REST API, as the UI does; much faster than the CLI."""
        body: dict[str, Any] = {"connection_id": conn_id, "conn_type": conn_type}
        for key, value in (("host", host), ("login", login), ("password", password), ("port", port)):
            if value is not None:
                body[key] = value
        if schema is not None:
            body["schema"] = schema
        if extra is not None:
            body["extra"] = json.dumps(dict(extra))
        self.request_ok("POST", "/api/v2/connections", json=body)

    def add_aac_connection(self, conn_id: str, simulator: AACSimulator, **extra: Any) -> None:
        """As :meth:`AirflowHome.add_aac_connection`, through the REST API."""
        self.add_connection(
            conn_id, "aac", host=simulator.base_url, extra=minted_aac_extra(simulator, **extra)
        )

    def close(self) -> None:
        self._http.close()


def health(base_url: str) -> dict[str, Any] | None:
    try:
        resp = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5.0)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None
