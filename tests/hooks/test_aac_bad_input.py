"""AACHook with bad input: every case gets a clear error, and nothing stored is lost.

Most cases need no write and use an ``AIRFLOW_CONN_<ID>`` JSON environment variable,
against a simulator private to the test. Cases that only surface during a refresh need
a connection the provider may write: those run in one subprocess against a migrated
SQLite metadata DB (``airflow_sqlite_home``), because Airflow's settings are configured
once per interpreter. Retry waits are recorded instead of taken.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from airflow_provider_aac.compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_aac.errors import AACApiError, AACConfigError, AACNotFoundError, AACTransientError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.spec_summary import SPEC_COMPLETE

CONN = "aac_bad_input"
ENV = "AIRFLOW_CONN_AAC_BAD_INPUT"


def unsigned_jwt(**claims: Any) -> str:
    return jwt.encode(claims, key=None, algorithm="none")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def define(monkeypatch: pytest.MonkeyPatch, *, extra: Any, conn_type: str = "aac", **fields: Any) -> None:
    monkeypatch.setenv(ENV, json.dumps({"conn_type": conn_type, "extra": extra, **fields}))


def mentions_no_token(message: str, *tokens: str) -> bool:
    return not any(token and token in message for token in tokens)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    """The hook's retry waits, recorded instead of taken, so a test of five attempts takes no time."""
    return Sleeps()


def recording_hook(sleeps: Sleeps, conn_id: str = CONN) -> AACHook:
    """A hook whose waits (sync and async) go to ``sleeps``."""
    return AACHook(conn_id, sleep=sleeps, asleep=sleeps.asleep)


@pytest.fixture
def good(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> dict[str, Any]:
    """A working connection from an environment variable, with a fresh pair."""
    define(monkeypatch, extra=dict(aac_token_pair), host=aac_simulator.base_url)
    return aac_token_pair


def nothing_sent(sim: AACSimulator) -> bool:
    stats = sim.stats()
    return stats["token_requests"] == 0 and stats["api_calls"] == 0


# =========================================================================== the stored pair


@pytest.mark.parametrize(
    ("label", "make_token", "hint"),
    [
        ("garbage", lambda pair: "not-a-jwt", "is not a JWT"),
        ("bearer prefix", lambda pair: "Bearer " + pair["access_token"], "'Bearer ' prefix"),
        ("quoted", lambda pair: '"' + pair["access_token"] + '"', "without quotes"),
        ("truncated", lambda pair: pair["access_token"][:40], "three base64url parts"),
    ],
)
def test_malformed_access_token(
    monkeypatch: pytest.MonkeyPatch,
    aac_simulator: AACSimulator,
    aac_token_pair: dict[str, Any],
    label: str,
    make_token: Any,
    hint: str,
) -> None:
    token = make_token(aac_token_pair)
    extra = {"access_token": token, "refresh_token": aac_token_pair["refresh_token"]}
    define(monkeypatch, extra=extra, host=aac_simulator.base_url)
    hook = AACHook(CONN)
    with pytest.raises(AACConfigError) as info:
        hook.request("GET", "/v4/people/current")
    message = str(info.value)
    clean = mentions_no_token(message, token, aac_token_pair["refresh_token"], aac_token_pair["access_token"])
    assert clean
    assert f"connection {CONN!r}" in message and hint in message
    ok, text = hook.test_connection()
    assert not ok and hint in text
    assert nothing_sent(aac_simulator)


def test_missing_refresh_token(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    define(monkeypatch, extra={"access_token": aac_token_pair["access_token"]}, host=aac_simulator.base_url)
    with pytest.raises(AACConfigError) as info:
        AACHook(CONN).request("GET", "/v4/people/current")
    message = str(info.value)
    clean = mentions_no_token(message, aac_token_pair["access_token"])
    assert clean
    assert f"Connection {CONN!r} has no refresh_token in its extra" in message
    assert f"airflow connections add {CONN} --conn-type aac" in message
    assert nothing_sent(aac_simulator)


def test_token_without_iss_or_client_id_in_an_environment_variable(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = int(time.time())
    expired = unsigned_jwt(exp=now - 10, iat=now - 310)
    define(
        monkeypatch,
        extra={"access_token": expired, "refresh_token": aac_token_pair["refresh_token"]},
        host=aac_simulator.base_url,
    )
    with pytest.raises(AACConfigError) as info:
        AACHook(CONN).request("GET", "/v4/people/current")
    # It needs a refresh, which an environment variable cannot store: refused before anything else.
    assert ENV in str(info.value) and "Nothing was spent" in str(info.value)
    assert nothing_sent(aac_simulator)


def test_environment_variable_connection_that_needs_a_refresh_is_refused(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = int(time.time())
    expired = unsigned_jwt(
        iss=aac_simulator.issuer, client_id=aac_simulator.client_id, exp=now - 10, iat=now - 310
    )
    define(
        monkeypatch,
        extra={"access_token": expired, "refresh_token": aac_token_pair["refresh_token"], "note": "mine"},
        host=aac_simulator.base_url,
    )
    before = json.loads(os.environ[ENV])
    hook = AACHook(CONN)
    with pytest.raises(AACConfigError) as info:
        hook.request("GET", "/v4/people/current")
    message = str(info.value)
    clean = mentions_no_token(message, expired, aac_token_pair["refresh_token"])
    assert clean
    assert f"Connection {CONN!r} is defined by the environment variable {ENV}" in message
    assert "the rotated refresh token would be lost. Nothing was spent." in message
    assert f"airflow connections add {CONN} --conn-type aac" in message
    assert aac_simulator.stats()["token_requests"] == 0
    with pytest.raises(AACConfigError, match="defined by the environment variable"):
        hook.refresh_tokens(force=True)
    assert aac_simulator.stats()["token_requests"] == 0
    unchanged = json.loads(os.environ[ENV]) == before
    assert unchanged
    # The chain is intact: the same refresh token still works elsewhere.
    rotations = aac_simulator.family_info(aac_token_pair["refresh_token"])["rotations"]
    assert rotations == 0


# =========================================================================== the connection itself


def test_wrong_connection_type(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    define(monkeypatch, extra=dict(aac_token_pair), host=aac_simulator.base_url, conn_type="http")
    with pytest.raises(AACConfigError, match=r"has type 'http', not 'aac'.*--conn-type aac"):
        AACHook(CONN).request("GET", "/v4/people/current")
    assert nothing_sent(aac_simulator)


@pytest.mark.parametrize(
    ("extra", "match"), [("not json", "is not valid JSON"), ("[1]", "must be a JSON object")]
)
def test_extra_that_is_not_a_json_object(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, extra: str, match: str
) -> None:
    define(monkeypatch, extra=extra, host=aac_simulator.base_url)
    if not AIRFLOW_V_3_2_PLUS:  # Airflow's own lookup drops the variable; the provider says which one
        match = f"environment variable {ENV}, but Airflow could not read it"
    with pytest.raises(AACConfigError, match=match):
        AACHook(CONN).request("GET", "/v4/people/current")
    assert nothing_sent(aac_simulator)


@pytest.mark.parametrize("host", ["127.0.0.1", "us1.alteryxcloud.com", "ftp://us1.alteryxcloud.com"])
def test_host_without_a_scheme(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], host: str
) -> None:
    define(monkeypatch, extra=dict(aac_token_pair), host=host)
    hook = AACHook(CONN)
    with pytest.raises(AACConfigError, match=r"has no http\(s\) scheme.*https://us1.alteryxcloud.com"):
        hook.request("GET", "/v4/people/current")
    ok, text = hook.test_connection()
    assert not ok and "has no http(s) scheme" in text
    assert nothing_sent(aac_simulator)


def test_scheme_and_port_in_their_own_fields_work(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    port = int(aac_simulator.base_url.rsplit(":", 1)[1])
    define(monkeypatch, extra=dict(aac_token_pair), host="127.0.0.1", schema="http", port=port)
    assert AACHook(CONN).request("GET", "/v4/people/current").data["email"] == "sim@example.com"


def test_bad_path_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, good: dict[str, Any]
) -> None:
    with pytest.raises(AACConfigError, match="must start with '/v4/'"):
        AACHook(CONN).request("GET", "people/current")
    assert nothing_sent(aac_simulator)


def test_unknown_connection_id_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AAC_NO_SUCH_CONNECTION", raising=False)
    with pytest.raises(Exception, match="aac_no_such_connection"):
        AACHook("aac_no_such_connection").request("GET", "/v4/people/current")


# =========================================================================== AAC's answers


def api_calls(sim: AACSimulator) -> int:
    return sim.stats()["api_calls"]


@pytest.mark.parametrize(
    ("status", "name", "hint_start"),
    [
        (403, "AccessControlException", "The token's user may not do this"),
        (404, "DataNotFoundException", "No such object in this workspace"),
        (400, "ValidationFailed", "AAC rejected the request as invalid"),
    ],
)
def test_4xx_carries_aacs_words_and_the_hint_without_retrying(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps, status: int, name: str, hint_start: str
) -> None:
    aac_simulator.fail_api(status)
    with pytest.raises(AACApiError) as info:
        recording_hook(sleeps).request("GET", "/v4/people/current")
    error = info.value
    assert isinstance(error, AACNotFoundError) is (status == 404)
    assert (error.status_code, error.aac_name) == (status, name)
    message = str(error)
    assert (
        f"AAC answered {status} to GET /v4/people/current: {name}: Simulated failure (HTTP {status})"
        in message
    )
    assert hint_start in message
    assert error.request_id and f"(AAC request id {error.request_id})" in message
    assert api_calls(aac_simulator) == 1 and sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 0


def test_real_404_for_an_unknown_object(aac_simulator: AACSimulator, good: dict[str, Any]) -> None:
    with pytest.raises(AACNotFoundError) as info:
        AACHook(CONN).request("GET", "/v4/planSnapshotRuns/424242")
    assert "DataNotFoundException: Plan run 424242 not found" in str(info.value)


GATEWAY_400 = (
    "<html><head><title>400 Bad Request</title></head>"
    "<body><center><h1>400 Bad Request</h1></center><hr><center>nginx</center></body></html>"
)


@pytest.mark.parametrize("method", ["sync", "async"])
def test_an_html_error_page_gives_the_same_clear_error_as_aacs_json(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps, method: str
) -> None:
    """A gateway in front of AAC may answer HTML: same class, same hint, the page's title as its words."""
    hook = recording_hook(sleeps)

    def fail() -> AACApiError:
        with pytest.raises(AACApiError) as info:
            if method == "sync":
                hook.request("GET", "/v4/people/current")
            else:
                asyncio.run(hook.arequest("GET", "/v4/people/current"))
        return info.value

    aac_simulator.fail_api(400)
    from_json = fail()
    aac_simulator.fail_api(400, text=GATEWAY_400, content_type="text/html")
    from_html = fail()

    assert type(from_html) is type(from_json)
    assert (from_html.status_code, from_html.aac_name, from_html.aac_message) == (
        400,
        None,
        "400 Bad Request",
    )
    assert str(from_html).startswith(
        "AAC answered 400 to GET /v4/people/current: 400 Bad Request. AAC rejected the request as invalid"
    )
    assert "<" not in str(from_html) and f"(AAC request id {from_html.request_id})" in str(from_html)
    assert api_calls(aac_simulator) == 2 and sleeps.delays == []


def test_401_on_a_connection_that_cannot_be_refreshed_spends_nothing(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(401)
    with pytest.raises(AACConfigError, match="defined by the environment variable"):
        recording_hook(sleeps).request("GET", "/v4/people/current")
    assert aac_simulator.stats()["token_requests"] == 0 and api_calls(aac_simulator) == 1


def test_401_on_a_connection_that_cannot_be_refreshed_says_aac_rejected_the_token(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(401)
    with pytest.raises(Exception) as info:
        recording_hook(sleeps).request("GET", "/v4/people/current")
    assert "401" in str(info.value)


def test_429_on_get_is_retried_honouring_x_retry_after(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(429, times=2, retry_after=3)
    response = recording_hook(sleeps).request("GET", "/v4/people/current")
    assert response.status_code == 200
    assert api_calls(aac_simulator) == 3
    assert len(sleeps.delays) == 2 and all(d >= 3 for d in sleeps.delays)


def test_429_waits_for_the_reset_aac_gives_in_epoch_milliseconds(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    """With no x-retry-after, the wait is the window's reset, read as the milliseconds AAC sends."""
    aac_simulator.runs.set_rate_limits(window=20.0, retry_after=False, runPlan=(1, 10))
    hook = recording_hook(sleeps)
    hook.request("POST", "/v4/plans/1/run", json={}, headers={"x-execution-id": "ms-1"})
    with pytest.raises(AACApiError, match="AAC answered 429"):
        hook.request("POST", "/v4/plans/1/run", json={}, headers={"x-execution-id": "ms-2"})

    assert sleeps.delays and all(15 <= delay <= 25 for delay in sleeps.delays), sleeps.delays
    assert aac_simulator.stats()["runs_started"] == 1


def test_429_on_a_run_post_is_retried_and_starts_one_run(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(429, method="POST", retry_after=1)
    response = recording_hook(sleeps).request("POST", "/v4/plans/1/run", json={})
    assert response.status_code == 201 and response.data["planSnapshotRunId"]
    assert api_calls(aac_simulator) == 2 and aac_simulator.stats()["runs_started"] == 1
    assert len(sleeps.delays) == 1 and sleeps.delays[0] >= 1


def test_429_that_does_not_stop_ends_with_the_rate_limit_hint(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(429, times=50)
    with pytest.raises(AACApiError) as info:
        recording_hook(sleeps).request("GET", "/v4/plans")
    message = str(info.value)
    assert "AAC answered 429 to GET /v4/plans: TooManyRequestsException" in message
    assert "about 30 runs per user and 60 per workspace" in message
    assert api_calls(aac_simulator) == 5 and len(sleeps.delays) == 4


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_on_get_is_retried(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps, status: int
) -> None:
    aac_simulator.fail_api(status, times=2)
    assert recording_hook(sleeps).request("GET", "/v4/people/current").status_code == 200
    assert api_calls(aac_simulator) == 3 and len(sleeps.delays) == 2


def test_5xx_that_does_not_stop_ends_with_aacs_words(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(500, times=50)
    with pytest.raises(AACApiError) as info:
        recording_hook(sleeps).request("GET", "/v4/plans")
    message = str(info.value)
    assert "AAC answered 500 to GET /v4/plans: InternalServerErrorException: Simulated failure" in message
    assert "server error" in message
    assert api_calls(aac_simulator) == 5


def test_5xx_on_a_plain_run_post_is_not_retried(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(500, method="POST")
    with pytest.raises(AACApiError) as info:
        recording_hook(sleeps).request("POST", "/v4/plans/1/run", json={})
    assert info.value.status_code == 500
    assert api_calls(aac_simulator) == 1 and sleeps.delays == []


def test_5xx_on_a_run_post_with_execution_id_is_retried_once_safely(
    aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps
) -> None:
    aac_simulator.fail_api(503, method="POST")
    response = recording_hook(sleeps).request(
        "POST", "/v4/plans/1/run", json={}, headers={"x-execution-id": "exec-42"}
    )
    assert response.status_code == 201
    assert api_calls(aac_simulator) == 2 and aac_simulator.stats()["runs_started"] == 1


def test_unreachable_aac_host(
    monkeypatch: pytest.MonkeyPatch,
    aac_simulator: AACSimulator,
    aac_token_pair: dict[str, Any],
    sleeps: Sleeps,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    define(monkeypatch, extra=dict(aac_token_pair), host=url)
    hook = recording_hook(sleeps)
    for method in ("GET", "POST"):  # never reached, so even a plain POST may be retried
        sleeps.delays.clear()
        with pytest.raises(AACTransientError) as info:
            hook.request(method, "/v4/plans/1/run" if method == "POST" else "/v4/plans")
        message = str(info.value)
        assert "failed after 5 attempt(s)" in message and f"ConnectionError reaching {url}" in message
        assert "not repeated" not in message
        assert len(sleeps.delays) == 4
    ok, text = hook.test_connection()
    assert not ok and "ConnectionError" in text
    assert aac_simulator.stats()["token_requests"] == 0


# --------------------------------------------------------------------------- async (triggers)


def test_async_404_and_retried_503(aac_simulator: AACSimulator, good: dict[str, Any], sleeps: Sleeps) -> None:
    hook = recording_hook(sleeps)
    aac_simulator.fail_api(404)
    with pytest.raises(AACNotFoundError, match="DataNotFoundException"):
        asyncio.run(hook.arequest("GET", "/v4/people/current"))
    aac_simulator.fail_api(503, times=2)
    response = asyncio.run(hook.arequest("GET", "/v4/people/current"))
    assert response.status_code == 200
    assert api_calls(aac_simulator) == 4 and len(sleeps.delays) == 2


def test_async_unreachable_host(
    monkeypatch: pytest.MonkeyPatch, aac_token_pair: dict[str, Any], sleeps: Sleeps
) -> None:
    define(monkeypatch, extra=dict(aac_token_pair), host=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(AACTransientError, match=r"failed after 5 attempt\(s\): ConnectError"):
        asyncio.run(recording_hook(sleeps).arequest("GET", "/v4/plans"))
    assert len(sleeps.delays) == 4


# =========================================================================== writable connections


SUBPROCESS_CASES = r"""
import json, os, time
import jwt, requests
from sqlalchemy import select
from airflow.models.connection import Connection
from airflow.utils.session import create_session
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.errors import AACError

spec = json.loads(os.environ["AAC_BAD_INPUT_CASES"])
sim = spec["base_url"]
now = int(time.time())

def expired(**claims):
    return jwt.encode({"exp": now - 10, "iat": now - 310, **claims}, key=None, algorithm="none")

def stats():
    return requests.get(sim + "/_sim/stats", timeout=5).json()

def stored(conn_id):
    with create_session() as session:
        row = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
        return json.loads(row.extra)

results = {}
for case in spec["cases"]:
    conn_id = "bad_input_" + case["name"]
    extra = {"refresh_token": case["refresh_token"], "note": "the user's own key", **case["extra"]}
    extra["access_token"] = expired(**case["claims"])
    with create_session() as session:
        session.add(Connection(conn_id=conn_id, conn_type="aac", host=sim, extra=json.dumps(extra)))
    before = stats()
    hook = AACHook(conn_id)
    hook.tokens._sleep = lambda seconds: None
    outcome = {"error": None}
    try:
        hook.request("GET", "/v4/people/current")
    except AACError as err:
        outcome["error"] = [type(err).__name__, str(err)]
    after = stats()
    row = stored(conn_id)
    outcome["delta"] = {k: after[k] - before[k] for k in ("token_requests", "refreshes", "api_calls")}
    outcome["tokens_kept"] = (
        row["access_token"] == extra["access_token"] and row["refresh_token"] == extra["refresh_token"]
    )
    outcome["user_keys_kept"] = all(row.get(k) == v for k, v in extra.items() if "token" not in k)
    outcome["marker_left"] = "refresh_in_flight" in row
    outcome["generation"] = row.get("generation", 0)
    results[case["name"]] = outcome
print("RESULTS=" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def writable_results(airflow_sqlite_home: Any) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Runs every writable-connection case once, in a server-context subprocess."""
    with AACSimulator() as sim:
        pairs = {name: sim.mint_pair() for name in ("no_iss", "bad_url", "client", "revoked", "unreachable")}
        sim.revoke_family_of(pairs["revoked"]["refresh_token"])
        claims = {"iss": sim.issuer, "client_id": sim.client_id}
        cases = [
            {"name": "no_iss", "claims": {}, "extra": {}},
            {
                "name": "bad_url",
                "claims": {},
                "extra": {"token_url": "ftp://x.test/as/token", "client_id": "c"},
            },
            {"name": "client", "claims": {**claims, "client_id": "wrong-client"}, "extra": {}},
            {"name": "revoked", "claims": claims, "extra": {}},
            {
                "name": "unreachable",
                "claims": claims,
                "extra": {"token_url": f"http://127.0.0.1:{closed_port()}/as/token"},
            },
        ]
        for case in cases:
            case["refresh_token"] = pairs[str(case["name"])]["refresh_token"]
        spec = {"base_url": sim.base_url, "cases": cases}
        result = airflow_sqlite_home.run_python(
            SUBPROCESS_CASES,
            check=False,
            timeout=120,
            env={"_AIRFLOW_PROCESS_CONTEXT": "server", "AAC_BAD_INPUT_CASES": json.dumps(spec)},
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("RESULTS=")]
        if result.returncode != 0 or not lines:
            pytest.fail(f"the subprocess failed ({result.returncode}):\n{result.stderr[-4000:]}")
        secrets = [pair["refresh_token"] for pair in pairs.values()] + [
            pair["access_token"] for pair in pairs.values()
        ]
        yield json.loads(lines[-1][len("RESULTS=") :]), secrets


def check_nothing_lost(outcome: dict[str, Any]) -> None:
    assert outcome["tokens_kept"], "the stored pair must be left as it was"
    assert outcome["user_keys_kept"]
    assert not outcome["marker_left"], "a definite failure must not leave a refresh marker"
    assert outcome["generation"] == 0
    assert outcome["delta"]["refreshes"] == 0 and outcome["delta"]["api_calls"] == 0


def error_of(results: tuple[dict[str, Any], list[str]], name: str) -> tuple[str, str]:
    outcome = results[0][name]
    assert outcome["error"] is not None, f"{name}: no error raised"
    kind, message = outcome["error"]
    clean = mentions_no_token(message, *results[1])
    assert clean, f"{name}: a token reached the error message"
    check_nothing_lost(outcome)
    return kind, message


def test_writable_token_without_iss_or_client_id(writable_results: Any) -> None:
    kind, message = error_of(writable_results, "no_iss")
    assert kind == "AACConfigError"
    assert "Cannot tell where to refresh the tokens of connection 'bad_input_no_iss'" in message
    assert "no iss or client_id claim" in message and "'token_url' and 'client_id'" in message
    assert writable_results[0]["no_iss"]["delta"]["token_requests"] == 0


def test_writable_token_url_that_is_not_http(writable_results: Any) -> None:
    kind, message = error_of(writable_results, "bad_url")
    assert kind == "AACConfigError" and "is not an http(s) URL" in message
    assert writable_results[0]["bad_url"]["delta"]["token_requests"] == 0


def test_writable_wrong_client_id(writable_results: Any) -> None:
    kind, message = error_of(writable_results, "client")
    assert kind == "AACClientRejectedError" and "(invalid_client)" in message
    assert "The refresh token was not spent." in message
    assert writable_results[0]["client"]["delta"]["token_requests"] == 1


def test_writable_revoked_pair(writable_results: Any) -> None:
    kind, message = error_of(writable_results, "revoked")
    assert kind == "AACTokenChainBrokenError" and "(invalid_grant)" in message
    assert (
        "airflow connections delete bad_input_revoked && airflow connections add bad_input_revoked "
        "--conn-type aac"
    ) in message


def test_writable_unreachable_token_endpoint(writable_results: Any) -> None:
    kind, message = error_of(writable_results, "unreachable")
    assert kind == "AACTransientError"
    assert "Cannot reach AAC's token endpoint" in message and "the refresh token was not spent" in message
    assert writable_results[0]["unreachable"]["delta"]["token_requests"] == 0


# --------------------------------------------------------------------------- the Test button's spec check


def test_the_test_button_checks_the_tenants_spec(aac_simulator: AACSimulator, good: dict[str, Any]) -> None:
    assert AACHook(CONN).test_connection() == (True, f"Connected to AAC as sim@example.com. {SPEC_COMPLETE}")
    assert aac_simulator.stats()["token_requests"] == 0


@pytest.mark.aac_simulator(without_operations=("runFlow",))
def test_the_test_button_fails_on_a_spec_that_lacks_what_the_provider_needs(
    aac_simulator: AACSimulator, good: dict[str, Any]
) -> None:
    ok, text = AACHook(CONN).test_connection()

    assert not ok
    assert text == (
        "Connected to AAC as sim@example.com. AAC's API spec v2025.23.2 lacks what the provider needs: "
        "POST /v4/flows/{id}/run (runFlow): POST /v4/flows/{id}/run is not in the spec. "
        f"For the full check: airflow aac doctor {CONN}."
    )


def test_the_test_button_says_when_the_spec_cannot_be_read(
    aac_simulator: AACSimulator, good: dict[str, Any]
) -> None:
    aac_simulator.fail_api(503, path_prefix="/v4/open-api-spec")

    ok, text = AACHook(CONN).test_connection()

    assert ok
    assert text.endswith(
        f"Its API spec could not be read (AAC answered 503). For the full check: airflow aac doctor {CONN}."
    )
    assert api_calls(aac_simulator) == 2, "one try at the spec, no retries"
