"""Writing the connection through Airflow's public REST API, for workers and triggerers.

Airflow 3 serves connections to tasks read-only, so a worker that spends the refresh
token writes the new pair with ``PATCH /api/v2/connections/{id}``, using the credentials
of a second connection (``airflow_api_conn_id``). The REST API has no compare-and-swap,
so this store is only used inside an exclusive section (a lock that every refresher of
the connection takes, or the single writer), checks what it last read before it writes,
and re-reads what tasks will see after. A new pair pasted between the claim's read and
the shadow check's GET is seen by that check; what remains is a person's edit of other
keys in that span, or any edit between the GET and the PATCH: a window of two round
trips to the api-server, for the claim only (the store re-reads right before its PATCH).

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
from airflow_provider_aac.core.jwt_claims import read_claims
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_state import (
    ACCESS_FINGERPRINT,
    GENERATION,
    IN_FLIGHT,
    REFRESH_TOKEN,
    TokenState,
    Version,
    as_int,
    check_version,
    parse_extra,
)
from airflow_provider_aac.core.token_store import Change
from airflow_provider_aac.errors import (
    AACConfigError,
    AACError,
    AACStoreConflictError,
    AACStoreError,
    AACStoreUnavailableError,
)
from airflow_provider_aac.tokens.connection import (
    AACConnectionConfig,
    base_url_of,
    get_named_connection,
    read_config,
    refuse_unwritable,
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

    def patch_connection_extra(self, conn_id: str, conn_type: str, extra: dict[str, Any]) -> None:
        """PATCH is idempotent here (the whole extra), so transient failures are retried."""
        body = {"connection_id": conn_id, "conn_type": conn_type, "extra": json.dumps(extra)}
        response = self._with_retries(
            lambda: self._send(
                "PATCH", f"/api/v2/connections/{conn_id}", params={"update_mask": "extra"}, json=body
            )
        )
        self._raise_for(response, f"update connection {conn_id!r}")

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


class RestTokenStore:
    """The token state as tasks read it, written back through the REST API."""

    def __init__(self, conn_id: str, api: AirflowApiClient) -> None:
        self.conn_id = conn_id
        self.api = api
        self._conn_type = "aac"
        self._just_read: AACConnectionConfig | None = None

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        config = read_config(self.conn_id)
        self._just_read = config
        return config.token_state(), config.extra

    def check_writable(self) -> None:
        """Refuse a connection whose REST-written row is not what tasks read.

        Compared with the store's last read; on a difference, read again: if that now
        matches, the connection was edited since, and the next write re-reads and refuses
        it over its version like any other edit.
        """
        refuse_unwritable(self.conn_id)
        stored = self._stored_extra()
        if self._just_read is not None and _same_chain_point(stored, self._just_read.extra):
            return
        self._just_read = None
        if not _same_chain_point(stored, read_config(self.conn_id).extra):
            raise AACConfigError(
                f"Connection {self.conn_id!r} is shadowed: tasks read it from a secrets backend or an "
                "environment variable, not from the metadata DB that the REST API writes, so a refreshed "
                "pair would never be used. Nothing was spent. Keep the connection in one place only."
            )

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        """Check what tasks read, then PATCH the whole extra built from it, then check it landed.

        What tasks read is the store's own last read if no write has used it yet (the
        claim right after settling, the store right after its re-read): the section is
        exclusive, so reading again would only cost a lookup. The first write uses it up,
        so a later write (a release after a failed request) reads again, and the refresh
        steps read again before they store what a request brought back.
        """
        stored, self._just_read = self._just_read or read_config(self.conn_id), None
        state = stored.token_state()
        check_version(state, expected, conn_id=self.conn_id)
        extra = change(state, stored.extra)
        self.api.patch_connection_extra(self.conn_id, self._conn_type, extra)
        if not _same_pair(read_config(self.conn_id).extra, extra, compare_tokens=True):
            if not _same_pair(self._stored_extra(), extra, compare_tokens=False):
                raise AACStoreConflictError(
                    f"Connection {self.conn_id!r} was changed by someone else right after this process wrote "
                    "it; the other change is kept."
                )
            raise AACConfigError(
                f"Connection {self.conn_id!r} was written through the REST API, but tasks still read the "
                "old value: it is shadowed by a secrets backend or an environment variable."
            )
        return extra

    def _stored_extra(self) -> dict[str, Any]:
        stored = self.api.connection(self.conn_id)
        if stored is None:
            raise AACConfigError(
                f"Connection {self.conn_id!r} is not in Airflow's metadata DB as the REST API at "
                f"{self.api.base_url} sees it (it comes from an environment variable or a secrets backend, "
                "or the API belongs to another Airflow). Nothing was spent. Create the connection with "
                f"airflow connections add {self.conn_id} --conn-type aac ..., and point "
                "'airflow_api_conn_id' at this Airflow's api-server."
            )
        self._conn_type = str(stored.get("conn_type") or "aac")
        return parse_extra(stored.get("extra"), conn_id=self.conn_id)


def _same_chain_point(stored: dict[str, Any], visible: dict[str, Any]) -> bool:
    """Whether the REST API's row (tokens masked) and what tasks read hold the same generation and access token."""
    return as_int(stored.get(GENERATION)) == as_int(visible.get(GENERATION)) and stored.get(
        ACCESS_FINGERPRINT
    ) == visible.get(ACCESS_FINGERPRINT)


def _same_pair(seen: dict[str, Any], written: dict[str, Any], *, compare_tokens: bool) -> bool:
    """Whether ``seen`` shows the write; the REST API masks tokens, so only Airflow's lookup can compare them."""
    same = as_int(seen.get(GENERATION)) == as_int(written.get(GENERATION)) and seen.get(
        IN_FLIGHT
    ) == written.get(IN_FLIGHT)
    return same and (not compare_tokens or seen.get(REFRESH_TOKEN) == written.get(REFRESH_TOKEN))


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    detail = body.get("detail") if isinstance(body, dict) else body
    return str(detail)[:300]
