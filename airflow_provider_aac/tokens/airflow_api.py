"""Writing the connection through Airflow's public REST API, for workers and triggerers.

Airflow 3 serves connections to tasks read-only, so a worker that spends the refresh
token writes the new pair with ``PATCH /api/v2/connections/{id}``, using the credentials
of a second connection (``airflow_api_conn_id``). The REST API has no compare-and-swap,
so this store is only used inside an exclusive section (a lock that every refresher of
the connection takes, or the single writer), and builds each write on a lookup made right
before it: the claim on the read that decided it, the new pair on a read after the token
request. What remains is a person's edit in the one round trip of the PATCH itself. The
PATCH answers with the connection as written, which is the check that the write landed.

Whether Airflow's lookup shows what the REST API writes (a connection in a secrets
backend or an environment variable shadows the row) is asked until a process has seen
it once for the connection: a GET of the row before the lookup (so that it never sits
between a read and the write built on it) must match it, and a lookup right after the
claim must show the claim, tokens included, before anything is spent. Later refreshes
skip both; a lookup that does not show the process's own last write makes it ask again.

An api-server that does not answer (a restart in a deploy, a 502 from its proxy) is
reported as ``AACStoreUnavailableError``, which the refresh retries for minutes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Protocol

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


class CheckMemory(Protocol):
    """Where a process remembers which REST API it saw Airflow's lookup follow (``tokens.token_cache``)."""

    rest_checked: str | None


class RestTokenStore:
    """The token state as tasks read it, written back through the REST API.

    ``checked`` is the process's memory of this connection (its token-cache entry):
    until a lookup has shown a claim this process wrote, each write is checked by a
    lookup after it, and a GET before the read it is built on; after that, neither.
    """

    def __init__(self, conn_id: str, api: AirflowApiClient, checked: CheckMemory) -> None:
        self.conn_id = conn_id
        self.api = api
        self._checked = checked
        self._conn_type = "aac"
        self._row: dict[str, Any] | None = None
        self._unused_read: AACConnectionConfig | None = None
        self._written: dict[str, Any] | None = None

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        """A lookup, as tasks see it; while the connection is unchecked, a GET of the row first.

        A lookup that does not show this store's last write (a person's edit, or a
        secrets backend that shadows the row since) makes the process check again.
        """
        if not self._was_checked:
            self._row = self._stored_extra()
        config = read_config(self.conn_id)
        if self._written is not None and not _same_pair(config.extra, self._written, compare_tokens=True):
            self._checked.rest_checked = None
        self._unused_read = config
        return config.token_state(), config.extra

    @property
    def _was_checked(self) -> bool:
        return self._checked.rest_checked == self.api.base_url

    def check_writable(self) -> None:
        """Refuse, before the claim, a connection whose REST-written row is not what tasks read.

        While unchecked, the row as the GET before the last lookup saw it must hold the
        lookup's generation and access token; on a difference the row is read again,
        once: if that now matches, the connection was edited between the two reads. The
        claim's own check (``update``) then proves it before anything is spent.
        """
        refuse_unwritable(self.conn_id)
        if self._was_checked:
            return
        looked_up = (
            self._unused_read.extra if self._unused_read is not None else read_config(self.conn_id).extra
        )
        row = self._row if self._row is not None else self._stored_extra()
        if not _same_chain_point(row, looked_up) and not _same_chain_point(self._stored_extra(), looked_up):
            raise AACConfigError(
                f"Connection {self.conn_id!r} is shadowed: tasks read it from a secrets backend or an "
                "environment variable, not from the metadata DB that the REST API writes, so a refreshed "
                "pair would never be used. Nothing was spent. Keep the connection in one place only."
            )

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        """PATCH the whole extra, built on the lookup made right before it; the answer shows it landed.

        A read is used by one write only: the claim uses the read that decided it, the
        store the read it makes after the token request, and any other write (a release
        after a failed request) reads again. While the connection is unchecked, a lookup
        after the write must show it (tokens included), or the connection is shadowed.
        """
        stored, self._unused_read = self._unused_read or read_config(self.conn_id), None
        state = stored.token_state()
        check_version(state, expected, conn_id=self.conn_id)
        extra = change(state, stored.extra)
        written = self.api.patch_connection_extra(self.conn_id, self._conn_type, extra)
        self._conn_type = str(written.get("conn_type") or self._conn_type)
        if not _same_pair(
            parse_extra(written.get("extra"), conn_id=self.conn_id), extra, compare_tokens=False
        ):
            raise AACStoreError(
                f"Airflow's REST API answered the update of connection {self.conn_id!r} with another "
                "generation or refresh marker than the one written."
            )
        self._written = extra
        if not self._was_checked:
            self._check_lookup_shows(extra)
        return extra

    def _check_lookup_shows(self, extra: dict[str, Any]) -> None:
        """The one lookup after a write that proves tasks read what the REST API writes."""
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
        self._checked.rest_checked = self.api.base_url

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
