"""The Airflow API connection under the cleartext rule: the new pair crosses it, so plain http:// stays local.

Lock and single-writer modes write the rotated pair (and send the API login) through the
connection that ``airflow_api_conn_id`` names; its host follows the rule of the AAC URLs
(``core.cleartext``), with that connection's own ``allow_insecure_http`` as the opt-in.

Real HTTP: the connection is an ``AIRFLOW_CONN_<ID>`` variable and the api-server a local
server that records every request. ``http://0.0.0.0:<port>`` reaches that server (Linux
and macOS send a connection to 0.0.0.0 to this machine) while the rule, which reads the
URL only, counts it as another machine: so a refusal can be shown to send nothing, and
the opt-in to send. The last test takes the whole path: a lock-mode refresh with a real
api-server, a PostgreSQL lock and the simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_aac.core.token_state import IN_FLIGHT
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.tokens.airflow_api import AirflowApiClient
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.local_http import serving

API = "airflow_api_cleartext"
ENV = "AIRFLOW_CONN_AIRFLOW_API_CLEARTEXT"
AAC_CONN = "aac_cleartext"
REFUSED = (
    r"The Airflow API URL \(the host\) of connection 'airflow_api_cleartext' \(.*\) is plain http:// to "
    r"another machine.*Nothing was sent.*Use https://.*\"allow_insecure_http\": true"
)


class RecordingApiServer(ThreadingHTTPServer):
    """Stands for the api-server: answers a connection read, records each request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Answering)
        self.seen: list[tuple[str, str]] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Answering(BaseHTTPRequestHandler):
    server: RecordingApiServer

    def do_GET(self) -> None:
        self.server.seen.append(("GET", self.path))
        body = json.dumps({"connection_id": AAC_CONN, "conn_type": "aac", "extra": "{}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[RecordingApiServer]:
    with serving(RecordingApiServer()) as server:
        yield server


def define(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> None:
    """The Airflow API connection, with a ready API token so that no login precedes the read."""
    fields = {"conn_type": "http", "host": host, "extra": {"token": "api-token", **extra}}
    monkeypatch.setenv(ENV, json.dumps(fields))


def client() -> AirflowApiClient:
    return AirflowApiClient(API, aac_conn_id=AAC_CONN)


def test_plain_http_to_another_machine_is_refused_and_nothing_reaches_it(
    monkeypatch: pytest.MonkeyPatch, api_server: RecordingApiServer
) -> None:
    define(monkeypatch, f"http://0.0.0.0:{api_server.port}")
    with pytest.raises(AACConfigError, match=REFUSED):
        client().connection(AAC_CONN)
    assert api_server.seen == []


@pytest.mark.parametrize(
    "host",
    [
        "http://airflow-apiserver.invalid:8080",  # the usual in-cluster service name
        "http://10.0.0.7:8080/",
        "HTTP://airflow-apiserver.invalid",
    ],
)
def test_the_refusal_reads_the_url_only(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    """An unresolvable name is refused as such: no lookup, no connection attempt, no timeout."""
    define(monkeypatch, host)
    with pytest.raises(AACConfigError, match=REFUSED):
        client()


def test_a_scheme_in_the_schema_field_is_read_as_the_url_is(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = {"conn_type": "http", "host": "airflow-apiserver.invalid", "schema": "http", "port": 8080}
    monkeypatch.setenv(ENV, json.dumps({**fields, "extra": {"token": "api-token"}}))
    with pytest.raises(AACConfigError, match=REFUSED):
        client()


@pytest.mark.parametrize("opt_in", [True, "true", " True "])
def test_the_api_connections_opt_in_lets_plain_http_through(
    monkeypatch: pytest.MonkeyPatch, api_server: RecordingApiServer, opt_in: object
) -> None:
    define(monkeypatch, f"http://0.0.0.0:{api_server.port}", allow_insecure_http=opt_in)
    assert client().connection(AAC_CONN) == {"connection_id": AAC_CONN, "conn_type": "aac", "extra": "{}"}
    assert api_server.seen == [("GET", f"/api/v2/connections/{AAC_CONN}")]


@pytest.mark.parametrize("host", ["http://127.0.0.1:{port}", "http://localhost:{port}"])
def test_plain_http_to_loopback_needs_no_opt_in(
    monkeypatch: pytest.MonkeyPatch, api_server: RecordingApiServer, host: str
) -> None:
    define(monkeypatch, host.format(port=api_server.port))
    assert client().connection(AAC_CONN) is not None
    assert api_server.seen == [("GET", f"/api/v2/connections/{AAC_CONN}")]


def test_https_to_another_machine_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    define(monkeypatch, "https://airflow-apiserver.invalid:8443")
    assert client().base_url == "https://airflow-apiserver.invalid:8443"


def test_an_opt_in_that_is_not_a_boolean_is_refused_naming_the_api_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    define(monkeypatch, "http://airflow-apiserver.invalid:8080", allow_insecure_http="yes")
    with pytest.raises(AACConfigError, match=r"Connection 'airflow_api_cleartext' has allow_insecure_http"):
        client()


def test_an_opt_out_is_refused_as_no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    define(monkeypatch, "http://airflow-apiserver.invalid:8080", allow_insecure_http=False)
    with pytest.raises(AACConfigError, match=REFUSED):
        client()


REFRESH = """
import json
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.hooks.aac import AACHook

try:
    outcome = AACHook({conn!r}).refresh_tokens(force=True)
except AACConfigError as err:
    print(json.dumps({{"refused": str(err)}}))
else:
    print(json.dumps({{"generation": outcome.generation}}))
"""


def test_a_lock_mode_refresh_spends_nothing_until_the_api_connection_opts_in(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer, aac_simulator: AACSimulator
) -> None:
    """The real path: a lock, a real api-server reached as 0.0.0.0 (another machine to the rule)."""
    home, lock = airflow_pg_home, "cleartext_lock"
    elsewhere = airflow_api_server.base_url.replace("127.0.0.1", "0.0.0.0")
    home.add_lock_connection(lock, "postgres")
    for api, extra in (("cleartext_api", None), ("cleartext_api_opted_in", {"allow_insecure_http": True})):
        home.add_connection(
            api, "http", host=elsewhere, login=home.username, password=home.password, extra=extra
        )
        home.add_aac_connection(
            f"aac_{api}", aac_simulator, refresh_mode="lock", lock_conn_id=lock, airflow_api_conn_id=api
        )

    def refresh(conn: str) -> dict[str, Any]:
        out = home.run_python(REFRESH.format(conn=conn), env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))

    refused = refresh("aac_cleartext_api")
    assert "connection 'cleartext_api'" in refused["refused"] and "Nothing was sent" in refused["refused"]
    assert aac_simulator.stats()["token_requests"] == 0
    stored = home.get_connection_extra("aac_cleartext_api")
    assert stored.get("generation", 0) == 0 and IN_FLIGHT not in stored

    assert refresh("aac_cleartext_api_opted_in") == {"generation": 1}
    assert aac_simulator.stats()["token_requests"] == 1
