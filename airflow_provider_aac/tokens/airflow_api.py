"""Airflow's public REST API, as the provider uses it from workers and triggerers.

Airflow 3 serves connections to tasks read-only, so a worker that spends the refresh
token writes the new pair with ``PATCH /api/v2/connections/{id}``, using the credentials
of a second connection (``airflow_api_conn_id``); single-writer tasks ask the refresh DAG
for a run through the same client. The store built on it is ``tokens.rest_store``.

An api-server that does not answer (a restart in a deploy, a 502 from its proxy) is
reported as ``AACStoreUnavailableError``, which the refresh retries for minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import requests

from airflow_provider_aac.core.cleartext import insecure_http_allowed, refuse_cleartext
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_grant import read_claims
from airflow_provider_aac.core.token_state import (
    parse_extra,
)
from airflow_provider_aac.errors import (
    AACConfigError,
    AACError,
    AACStoreError,
    AACStoreUnavailableError,
)
from airflow_provider_aac.tokens.connection import (
    base_url_of,
    get_named_connection,
)
from airflow_provider_aac.tokens.masking import mask

API_TOKEN_MARGIN = 60.0
# An api-server token without an exp claim is taken to live this long: short enough to log in again soon.
API_TOKEN_ASSUMED_LIFETIME = 300.0
WRITE_BACKOFF = Backoff(attempts=4, base=0.5, cap=4.0)


def api_server_url(api_conn_id: str, conn: Any) -> str:
    """The api-server's URL from its connection, refused when plain http:// would carry tokens in clear.

    The PATCH carries the new refresh token and the login carries a password, so the rule
    of the AAC URLs applies here too; the opt-in is this connection's own
    ``allow_insecure_http``, as it vouches for the path to this host, not to AAC's.
    """
    url = base_url_of(api_conn_id, conn.host, conn.schema, conn.port)
    allowed = insecure_http_allowed(parse_extra(conn.extra, conn_id=api_conn_id), conn_id=api_conn_id)
    refuse_cleartext(url, what="Airflow API URL (the host)", conn_id=api_conn_id, allowed=allowed)
    return url


class AirflowApiClient:
    """A small client for the few REST calls the provider needs, with a cached API token."""

    def __init__(
        self,
        api_conn_id: str,
        *,
        aac_conn_id: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        conn = get_named_connection(api_conn_id, named_by="airflow_api_conn_id", aac_conn_id=aac_conn_id)
        self.api_conn_id = api_conn_id
        self.base_url = api_server_url(api_conn_id, conn)
        extra = parse_extra(conn.extra, conn_id=api_conn_id)
        self._username = conn.login or None
        self._password = conn.password or None
        static = extra.get("token")
        self._token: str | None = static if isinstance(static, str) and static else None
        self._token_expires_at = float("inf") if self._token else 0.0
        self._auth_path = str(extra.get("auth_path") or "/auth/token")
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._http = requests.Session()
        # Set when the api-server refused these credentials: the next refresh reads the connection again.
        self.refused = False
        mask(self._password, self._token)
        if not self._token and not (self._username and self._password):
            raise AACConfigError(
                f"The Airflow API connection {api_conn_id!r} has neither a login and password nor a "
                "'token' in its extra. Give it the credentials of an Airflow user allowed to edit "
                "connections."
            )

    def connection(self, conn_id: str) -> dict[str, Any] | None:
        """The stored connection as the REST API shows it (secrets masked), or None if absent."""
        response = self._with_retries(lambda: self._send("GET", f"/api/v2/connections/{conn_id}"))
        if response.status_code == 404:
            return None
        self._raise_for(response, f"read connection {conn_id!r}")
        body: dict[str, Any] = response.json()
        return body

    def patch_connection_extra(self, conn_id: str, conn_type: str, extra: dict[str, Any]) -> dict[str, Any]:
        """Write the whole extra; the connection as written comes back (secrets masked).

        PATCH is idempotent here (the whole extra), so transient failures are retried.
        """
        body = {"connection_id": conn_id, "conn_type": conn_type, "extra": json.dumps(extra)}
        response = self._with_retries(
            lambda: self._send(
                "PATCH", f"/api/v2/connections/{conn_id}", params={"update_mask": "extra"}, json=body
            )
        )
        self._raise_for(response, f"update connection {conn_id!r}")
        try:
            written = response.json()
        except ValueError:
            written = None
        if not isinstance(written, dict):
            raise AACStoreError(
                f"Airflow's REST API at {self.base_url} answered the update of connection {conn_id!r} "
                "without the connection as written."
            )
        return written

    def _with_retries(self, send: Callable[[], requests.Response]) -> requests.Response:
        """A few quick retries of an idempotent call; the caller retries an outage for longer."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = send()
            except AACStoreUnavailableError:
                if (delay := WRITE_BACKOFF.delay(attempt)) is None:
                    raise
            else:
                if response.status_code < 500 or (delay := WRITE_BACKOFF.delay(attempt)) is None:
                    return response
            self._sleep(delay)

    def trigger_dag_run(
        self, dag_id: str, conf: dict[str, Any] | None = None, *, run_id: str | None = None
    ) -> bool:
        """Start a run; False when a run with ``run_id`` exists already (the request is pending)."""
        from datetime import datetime, timezone

        body: dict[str, Any] = {
            "logical_date": None,
            "conf": conf or {},
            "note": "requested by airflow-provider-aac",
            "run_after": datetime.now(timezone.utc).isoformat(),
        }
        if run_id is not None:
            body["dag_run_id"] = run_id
        response = self._send("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code == 409:
            return False
        self._raise_for(response, f"trigger DAG {dag_id!r}")
        return True

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        for attempt in (1, 2):
            try:
                response = self._http.request(
                    method,
                    self.base_url + path,
                    headers={"Authorization": f"Bearer {self._bearer()}"},
                    timeout=self._timeout,
                    **kwargs,
                )
            except requests.RequestException as err:
                raise AACStoreUnavailableError(
                    f"Cannot reach Airflow's REST API at {self.base_url} ({type(err).__name__}). If the "
                    "api-server is restarting, this passes; otherwise set the host of connection "
                    f"{self.api_conn_id!r} to the api-server's URL as workers reach it."
                ) from None
            if response.status_code != 401 or attempt == 2 or not self._can_login:
                return response
            self._token_expires_at = 0.0
        raise AssertionError("unreachable")

    @property
    def _can_login(self) -> bool:
        return bool(self._username and self._password)

    def _bearer(self) -> str:
        if self._token and self._clock() < self._token_expires_at:
            return self._token
        if not self._can_login:
            assert self._token is not None
            return self._token
        try:
            response = self._http.post(
                self.base_url + self._auth_path,
                json={"username": self._username, "password": self._password},
                timeout=self._timeout,
            )
        except requests.RequestException as err:
            raise AACStoreUnavailableError(
                f"Cannot reach Airflow's REST API at {self.base_url} to log in ({type(err).__name__}). If "
                "the api-server is restarting, this passes; otherwise set the host of connection "
                f"{self.api_conn_id!r} to the api-server's URL."
            ) from None
        if response.status_code in (401, 403):
            self.refused = True
            raise AACConfigError(
                f"Airflow's REST API refused the login of connection {self.api_conn_id!r} "
                f"({response.status_code}). Check its login and password (an Airflow user allowed to "
                "edit connections)."
            )
        self._raise_for(response, "log in")
        try:
            token = response.json().get("access_token")
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise AACStoreError(f"Airflow's REST API at {self.base_url} answered the login without a token.")
        mask(token)
        claims = read_claims(token, where=f"the login answer of {self.base_url}")
        self._token = token
        self._token_expires_at = (
            claims.expires_at or self._clock() + API_TOKEN_ASSUMED_LIFETIME
        ) - API_TOKEN_MARGIN
        return token

    def _raise_for(self, response: requests.Response, action: str) -> None:
        if response.status_code >= 400:
            raise self._error_for(response, action)

    def _error_for(self, response: requests.Response, action: str) -> AACError:
        if response.status_code in (401, 403):
            self.refused = True
            return AACConfigError(
                f"Airflow's REST API refused to {action} ({response.status_code}). The user of connection "
                f"{self.api_conn_id!r} needs permission to read and edit connections."
            )
        if response.status_code >= 500:
            return AACStoreUnavailableError(
                f"Airflow's REST API could not {action}: {response.status_code} {_detail(response)}; the "
                "api-server may be restarting."
            )
        return AACStoreError(
            f"Airflow's REST API could not {action}: {response.status_code} {_detail(response)}."
        )


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else body
    return str(detail)[:300]
