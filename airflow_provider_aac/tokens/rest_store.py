"""The token state as tasks read it, written back through Airflow's REST API.

The REST API has no compare-and-swap, so this store is only used inside an exclusive
section (a lock that every refresher of the connection takes, or the single writer), and
builds each write on a lookup made right before it: the claim on the read that decided
it, the new pair on a read after the token request. What remains is a person's edit in
the one round trip of the PATCH itself. The PATCH answers with the connection as
written, which is the check that the write landed.

Whether Airflow's lookup shows what the REST API writes (a connection in a secrets
backend or an environment variable shadows the row) is asked until a process has seen
it once for the connection: a GET of the row before the lookup (so that it never sits
between a read and the write built on it) must match it, and a lookup right after the
claim must show the claim, tokens included, before anything is spent. Later refreshes
skip both; a lookup that does not show the process's own last write makes it ask again.
"""

from __future__ import annotations

from typing import Any, Protocol

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
from airflow_provider_aac.errors import AACConfigError, AACStoreConflictError, AACStoreError
from airflow_provider_aac.tokens.airflow_api import AirflowApiClient
from airflow_provider_aac.tokens.connection import AACConnectionConfig, read_config, refuse_unwritable


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
