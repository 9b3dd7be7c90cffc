"""``AACHook.get_conn()``: a session that sends the token only to the connection's ``/v4``.

The connection is an ``AIRFLOW_CONN_<ID>`` variable and AAC the simulator, as in
``test_aac_bad_input``; a second local server stands for any other host and records
what reached it. Retry waits are recorded instead of taken.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.local_http import serving

CONN = "aac_session"
ENV = "AIRFLOW_CONN_AAC_SESSION"


class Recorder(ThreadingHTTPServer):
    """Another host: records each request's path and whether it carried a bearer token."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Recording)
        self.seen: list[tuple[str, bool]] = []
        self.redirect_to: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Recording(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.seen.append((self.path, "authorization" in {k.lower() for k in self.headers}))
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def other_host() -> Iterator[Recorder]:
    with serving(Recorder()) as server:
        yield server


def define(monkeypatch: pytest.MonkeyPatch, host: str, pair: dict[str, Any]) -> None:
    monkeypatch.setenv(ENV, json.dumps({"conn_type": "aac", "host": host, "extra": pair}))


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def session(
    monkeypatch: pytest.MonkeyPatch,
    aac_simulator: AACSimulator,
    aac_token_pair: dict[str, Any],
    sleeps: list[float],
) -> requests.Session:
    define(monkeypatch, aac_simulator.base_url, aac_token_pair)
    return AACHook(CONN, sleep=sleeps.append).get_conn()


def api_calls(sim: AACSimulator) -> int:
    return int(sim.stats()["api_calls"])


def test_the_session_calls_v4_with_the_token(session: requests.Session, aac_simulator: AACSimulator) -> None:
    response = session.get(aac_simulator.base_url + "/v4/people/current", params={"x": "1"})
    assert response.status_code == 200 and response.json()["email"] == "sim@example.com"
    assert isinstance(session, requests.Session) and api_calls(aac_simulator) == 1


@pytest.mark.parametrize(
    "url",
    [
        "{other}/v4/people/current",  # another host
        "{sim_host}:{other_port}/v4/people/current",  # the same host, another port
        "{sim}@{other_hostport}/v4/people/current",  # the bound URL as user info
        "{sim}/as/token",  # the bound host, outside /v4
        "{sim}/v4/../as/token",  # dot segments out of /v4
        "{sim}/v4/%2e%2e/as/token",
        "{sim_https}/v4/people/current",  # another scheme
    ],
)
def test_any_other_url_is_refused_before_the_token_is_sent(
    session: requests.Session, aac_simulator: AACSimulator, other_host: Recorder, url: str
) -> None:
    sim = aac_simulator.base_url
    target = url.format(
        other=other_host.url,
        other_port=other_host.server_address[1],
        other_hostport=other_host.url.removeprefix("http://"),
        sim=sim,
        sim_host=sim.rsplit(":", 1)[0],
        sim_https=sim.replace("http://", "https://"),
    )
    with pytest.raises(AACConfigError) as info:
        session.get(target)
    message = str(info.value)
    assert "Refused to send GET" in message or "dot segments" in message
    assert "nothing was sent" in message.lower() or "dot segments" in message
    assert other_host.seen == [] and api_calls(aac_simulator) == 0


def test_a_redirect_is_returned_not_followed(
    monkeypatch: pytest.MonkeyPatch, aac_token_pair: dict[str, Any], other_host: Recorder
) -> None:
    with serving(Recorder()) as bound:
        bound.redirect_to = other_host.url + "/v4/people/current"
        define(monkeypatch, bound.url, aac_token_pair)
        response = AACHook(CONN).get_conn().get(bound.url + "/v4/people/current")
    assert response.status_code == 302 and bound.seen == [("/v4/people/current", True)]
    assert other_host.seen == [], "the token followed a redirect to another host"


def test_retries_are_the_hooks(
    session: requests.Session, aac_simulator: AACSimulator, sleeps: list[float]
) -> None:
    aac_simulator.fail_api(503, times=2)
    assert session.get(aac_simulator.base_url + "/v4/people/current").status_code == 200
    assert api_calls(aac_simulator) == 3 and len(sleeps) == 2


def test_a_plain_post_is_not_repeated_after_a_5xx_and_the_answer_is_returned(
    session: requests.Session, aac_simulator: AACSimulator, sleeps: list[float]
) -> None:
    aac_simulator.fail_api(500, method="POST")
    response = session.post(aac_simulator.base_url + "/v4/plans/1/run", json={})
    assert response.status_code == 500 and api_calls(aac_simulator) == 1 and sleeps == []
    assert aac_simulator.stats()["runs_started"] == 0


def test_a_404_is_a_response_as_in_requests(session: requests.Session, aac_simulator: AACSimulator) -> None:
    response = session.get(aac_simulator.base_url + "/v4/plans/999999")
    assert response.status_code == 404 and api_calls(aac_simulator) == 1


def test_http_to_another_host_is_refused_when_the_session_is_made(
    monkeypatch: pytest.MonkeyPatch, aac_token_pair: dict[str, Any]
) -> None:
    define(monkeypatch, "http://aac.example.com", aac_token_pair)
    with pytest.raises(AACConfigError, match=r"plain http:// to another machine.*allow_insecure_http"):
        AACHook(CONN).get_conn()
