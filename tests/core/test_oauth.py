"""``request_refresh`` against the simulator's real token endpoint, over real HTTP.

No HTTP is mocked: the transport is the provider's own ``requests`` edge. Only ``sleep``
is replaced, by a recorder, so waits are asserted instead of taken. Tokens are never
compared in an assert expression (a failure would print them): booleans are computed first.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from airflow_provider_aac.core.errors import (
    AACClientRejectedError,
    AACConfigError,
    AACTokenChainBrokenError,
    AACTransientError,
)
from airflow_provider_aac.core.exchange import HttpAnswer, TransportFailure
from airflow_provider_aac.core.oauth import (
    AACRefreshOutcomeUnknownError,
    SendWindow,
    TokenEndpoint,
    interpret_token_response,
    refresh_form,
    request_refresh,
)
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.transport.token_post import requests_token_transport

CONN = "aac_oauth_test"
BACKOFF = Backoff(attempts=3, base=0.5, cap=5.0, max_retry_after=20.0)


class Sleeps:
    """A ``sleep`` that records the delays instead of waiting, optionally doing something first."""

    def __init__(self, on_sleep: Callable[[float], None] | None = None) -> None:
        self.delays: list[float] = []
        self._on_sleep = on_sleep

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._on_sleep is not None:
            self._on_sleep(seconds)


@pytest.fixture
def session() -> Any:
    with requests.Session() as http:
        yield http


def endpoint_of(sim: AACSimulator, client_id: str | None = None) -> TokenEndpoint:
    return TokenEndpoint(url=sim.token_url, client_id=client_id or sim.client_id)


def refresh(
    sim: AACSimulator, session: requests.Session, token: str, sleep: Sleeps, **kwargs: Any
) -> TokenGrant:
    endpoint = kwargs.pop("endpoint", None) or endpoint_of(sim)
    return request_refresh(
        requests_token_transport(session),
        endpoint,
        token,
        conn_id=CONN,
        deadline=time.time() + kwargs.pop("window", 10.0),
        clock=time.time,
        backoff=kwargs.pop("backoff", BACKOFF),
        sleep=sleep,
    )


def spend_directly(sim: AACSimulator, token: str) -> None:
    """Rotate ``token`` out from under the code under test, as another process would."""
    response = requests.post(
        sim.token_url,
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": sim.client_id},
        timeout=5,
    )
    assert response.status_code == 200


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def usable(grant: TokenGrant) -> bool:
    """A grant with both tokens; asserts use a local bool, so a failure never prints a token."""
    return bool(grant.access_token and grant.refresh_token)


def no_token_in(message: str, *tokens: str) -> bool:
    return not any(token and token in message for token in tokens)


# --------------------------------------------------------------------------- success


def test_success_rotates_and_the_old_token_is_dead(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    sleeps = Sleeps()
    old = aac_token_pair["refresh_token"]
    grant = refresh(aac_simulator, session, old, sleeps)
    complete = bool(grant.access_token and grant.refresh_token)
    assert complete
    rotated = grant.refresh_token != old and grant.access_token != aac_token_pair["access_token"]
    assert rotated
    expires_in = grant.expires_in
    assert expires_in == aac_simulator.access_ttl
    assert sleeps.delays == []
    assert aac_simulator.stats()["refreshes"] == 1
    # The new token works; the spent one does not (and presenting it is a reuse).
    works = usable(refresh(aac_simulator, session, grant.refresh_token, sleeps))
    assert works
    with pytest.raises(AACTokenChainBrokenError):
        refresh(aac_simulator, session, old, sleeps)
    assert aac_simulator.stats()["reuses"] == 1


def test_refresh_form_is_what_aac_documents() -> None:
    assert refresh_form("r", "c") == {"grant_type": "refresh_token", "refresh_token": "r", "client_id": "c"}


# --------------------------------------------------------------------------- definite errors


def test_invalid_grant_says_how_to_store_a_new_pair(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    token = aac_token_pair["refresh_token"]
    aac_simulator.revoke_family_of(token)
    sleeps = Sleeps()
    with pytest.raises(AACTokenChainBrokenError) as info:
        refresh(aac_simulator, session, token, sleeps)
    message = str(info.value)
    clean = no_token_in(message, token, aac_token_pair["access_token"])
    assert clean
    assert f"AAC rejected the refresh token of connection {CONN!r} (invalid_grant)" in message
    assert "Preferences > OAuth 2.0 API Tokens > Generate" in message
    assert (
        f"airflow connections delete {CONN} && airflow connections add {CONN} --conn-type aac "
        "--conn-host <API base URL> --conn-extra "
        '\'{"access_token": "<access token>", "refresh_token": "<refresh token>"}\''
    ) in message
    assert "lost in transit" not in message
    assert sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 1


def test_invalid_client_is_a_config_error_and_the_token_is_not_spent(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    token = aac_token_pair["refresh_token"]
    sleeps = Sleeps()
    with pytest.raises(AACClientRejectedError) as info:
        refresh(aac_simulator, session, token, sleeps, endpoint=endpoint_of(aac_simulator, "wrong-client"))
    assert isinstance(info.value, AACConfigError)
    message = str(info.value)
    assert "(invalid_client)" in message and "The refresh token was not spent." in message
    assert "'client_id'" in message
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["invalid_client"], stats["token_requests"]) == (0, 1, 1)
    assert sleeps.delays == []
    # Not spent indeed: the same token still refreshes, exactly once.
    works = usable(refresh(aac_simulator, session, token, sleeps))
    assert works
    assert aac_simulator.stats()["refreshes"] == 1
    assert aac_simulator.stats()["reuses"] == 0


def test_other_4xx_is_a_config_error_pointing_at_the_token_url(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    endpoint = TokenEndpoint(url=aac_simulator.base_url + "/as/not-the-token-endpoint", client_id="x")
    with pytest.raises(AACConfigError) as info:
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], Sleeps(), endpoint=endpoint)
    assert "answered 404" in str(info.value) and "Check 'token_url'" in str(info.value)
    assert aac_simulator.stats()["refreshes"] == 0


# --------------------------------------------------------------------------- retried answers


def test_429_with_retry_after_is_retried_and_honoured(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.fail_token_endpoint(429, retry_after=2.5)
    sleeps = Sleeps()
    grant = refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps)
    works = usable(grant)
    assert works
    assert len(sleeps.delays) == 1
    assert sleeps.delays[0] >= 2.5
    assert sleeps.delays[0] <= 2.5 + BACKOFF.cap / 4
    stats = aac_simulator.stats()
    assert (stats["token_requests"], stats["rate_limited"], stats["refreshes"]) == (2, 1, 1)


def test_429_with_too_long_retry_after_stops_without_spending(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.fail_token_endpoint(429, retry_after=BACKOFF.max_retry_after + 1)
    sleeps = Sleeps()
    with pytest.raises(AACTransientError) as info:
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps)
    assert not isinstance(info.value, AACRefreshOutcomeUnknownError)
    assert "kept answering 429" in str(info.value) and "the refresh token was not spent" in str(info.value)
    assert sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 1


def test_persistent_429_gives_up_after_the_attempts(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.fail_token_endpoint(429, times=10)
    sleeps = Sleeps()
    with pytest.raises(AACTransientError, match=r"kept answering 429 .*\(3 attempts\)"):
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps)
    assert len(sleeps.delays) == 2
    assert all(0 <= d <= BACKOFF.cap for d in sleeps.delays)
    assert aac_simulator.stats()["token_requests"] == 3
    assert aac_simulator.stats()["refreshes"] == 0


def test_503_is_retried(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.fail_token_endpoint(503, times=2)
    sleeps = Sleeps()
    works = usable(refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps))
    assert works
    assert len(sleeps.delays) == 2
    stats = aac_simulator.stats()
    assert (stats["token_requests"], stats["refreshes"], stats["reuses"]) == (3, 1, 0)


def test_invalid_grant_after_a_503_says_the_earlier_answer_was_probably_lost(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    token = aac_token_pair["refresh_token"]
    aac_simulator.fail_token_endpoint(503)
    # While we wait, the token is rotated (as if the 503 had come from a proxy after AAC acted).
    sleeps = Sleeps(on_sleep=lambda _: spend_directly(aac_simulator, token))
    with pytest.raises(AACTokenChainBrokenError) as info:
        refresh(aac_simulator, session, token, sleeps)
    message = str(info.value)
    assert "(invalid_grant)" in message
    assert "This happened on a retry after the token endpoint answered 503" in message
    assert "the earlier answer was probably lost in transit" in message
    assert "airflow connections add" in message
    assert len(sleeps.delays) == 1


# --------------------------------------------------------------------------- unknown outcomes


@pytest.mark.parametrize("status", [500, 502, 504])
def test_5xx_other_than_503_is_retried_once_at_once(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session, status: int
) -> None:
    aac_simulator.fail_token_endpoint(status)  # the token stays unspent, so the retry succeeds
    sleeps = Sleeps()
    works = usable(refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps))
    assert works
    assert sleeps.delays == [], "the retry after an unknown outcome comes at once"
    stats = aac_simulator.stats()
    assert (stats["token_requests"], stats["refreshes"], stats["reuses"]) == (2, 1, 0)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_second_unknown_outcome_is_reported_without_a_third_request(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session, status: int
) -> None:
    aac_simulator.fail_token_endpoint(status, times=3)
    sleeps = Sleeps()
    with pytest.raises(AACRefreshOutcomeUnknownError) as info:
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps)
    message = str(info.value)
    assert f"answered {status}" in message and "it is not repeated now" in message
    assert "It was presented once more at once" in message
    assert sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 2


def test_a_lost_answer_without_a_grace_period_ends_the_chain_on_the_one_retry(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.lose_token_response()
    sleeps = Sleeps()
    with pytest.raises(AACTokenChainBrokenError) as info:
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps)
    message = str(info.value)
    clean = no_token_in(message, aac_token_pair["refresh_token"])
    assert clean
    assert "(invalid_grant)" in message
    assert "This happened on the retry after the token endpoint gave no usable answer" in message
    assert "no answer came back" in message and "no reuse grace period covered the retry" in message
    assert "airflow connections add" in message
    assert sleeps.delays == []
    stats = aac_simulator.stats()
    # AAC had rotated: the retry is the one reuse the next refresh would otherwise have made later.
    assert (stats["token_requests"], stats["refreshes"], stats["reuses"]) == (2, 1, 1)


def test_a_lost_answer_inside_a_grace_period_recovers_the_pair_aac_issued(
    session: requests.Session,
) -> None:
    with AACSimulator(reuse_grace=20.0) as sim:
        pair = sim.mint_pair()
        sim.lose_token_response()
        sleeps = Sleeps()
        grant = refresh(sim, session, pair["refresh_token"], sleeps)
        works = usable(grant)
        assert works
        assert grant.refresh_token is not None
        assert sim.refresh_token_status(grant.refresh_token) == "live"
        stats = sim.stats()
    assert (stats["token_requests"], stats["refreshes"], stats["grace_replays"], stats["reuses"]) == (
        2,
        1,
        1,
        0,
    )
    assert sleeps.delays == []


def test_a_lost_answer_twice_is_an_unknown_outcome_after_two_requests(session: requests.Session) -> None:
    with AACSimulator(reuse_grace=20.0) as sim:
        pair = sim.mint_pair()
        sim.lose_token_response(times=2)
        with pytest.raises(AACRefreshOutcomeUnknownError) as info:
            refresh(sim, session, pair["refresh_token"], Sleeps())
        stats = sim.stats()
    message = str(info.value)
    assert "was sent to" in message and "no answer came back" in message and "not sent again" in message
    assert "It was presented once more at once" in message
    assert (stats["token_requests"], stats["refreshes"], stats["grace_replays"], stats["reuses"]) == (
        2,
        1,
        1,
        0,
    )


def test_an_answer_past_the_deadline_is_an_unknown_outcome_and_not_retried(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.slow_token_endpoint(3.5)
    sleeps = Sleeps()
    with pytest.raises(AACRefreshOutcomeUnknownError, match="no complete answer within"):
        refresh(aac_simulator, session, aac_token_pair["refresh_token"], sleeps, window=2.5)
    assert sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 1


def test_200_without_a_json_object_is_an_unknown_outcome() -> None:
    for body in (b"<html>ok</html>", b"[1, 2]", b"\xff"):
        with pytest.raises(AACRefreshOutcomeUnknownError, match="answered 200 without a JSON object"):
            interpret_token_response(HttpAnswer(200, {}, body), conn_id=CONN)


# --------------------------------------------------------------------------- unreachable


def test_unreachable_endpoint_is_retried_then_reported_as_not_spent(session: requests.Session) -> None:
    endpoint = TokenEndpoint(url=f"http://127.0.0.1:{closed_port()}/as/token", client_id="cid")
    sleeps = Sleeps()
    with pytest.raises(AACTransientError) as info:
        request_refresh(
            requests_token_transport(session),
            endpoint,
            "r",
            conn_id=CONN,
            deadline=time.time() + 30,
            clock=time.time,
            backoff=BACKOFF,
            sleep=sleeps,
        )
    assert not isinstance(info.value, AACRefreshOutcomeUnknownError)
    message = str(info.value)
    assert "Cannot reach AAC's token endpoint" in message and "after 3 attempts" in message
    assert "ConnectionError" in message and "the refresh token was not spent" in message
    assert len(sleeps.delays) == 2


def test_transport_failure_before_sending_is_retried_and_then_succeeds(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    real = requests_token_transport(session)
    calls: list[str] = []

    def flaky(url: str, form: Any, window: SendWindow) -> HttpAnswer:
        calls.append(url)
        if len(calls) == 1:
            raise TransportFailure("ConnectionError", request_sent=False)
        return real(url, form, window)

    sleeps = Sleeps()
    grant = request_refresh(
        flaky,
        endpoint_of(aac_simulator),
        aac_token_pair["refresh_token"],
        conn_id=CONN,
        deadline=time.time() + 30,
        clock=time.time,
        sleep=sleeps,
    )
    works = usable(grant)
    assert works and len(calls) == 2 and len(sleeps.delays) == 1
    assert aac_simulator.stats()["token_requests"] == 1


# --------------------------------------------------------------------------- odd 200s


def test_200_without_access_token_is_a_grant_without_one(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    aac_simulator.fail_token_endpoint(
        200, body={"refresh_token": "injected-rotated-refresh", "token_type": "Bearer", "expires_in": 300}
    )
    grant = refresh(aac_simulator, session, aac_token_pair["refresh_token"], Sleeps())
    shape = (grant.access_token is None, grant.refresh_token == "injected-rotated-refresh", grant.expires_in)
    assert shape == (True, True, 300.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"access_token": "a", "refresh_token": "r", "expires_in": "60"}, TokenGrant("a", "r", 60.0)),
        ({"access_token": "a", "expires_in": 0}, TokenGrant("a", None, None)),
        ({"access_token": "", "refresh_token": 5, "expires_in": "soon"}, TokenGrant(None, None, None)),
        ({}, TokenGrant(None, None, None)),
    ],
)
def test_grant_fields_are_read_defensively(body: dict[str, Any], expected: TokenGrant) -> None:
    assert interpret_token_response(HttpAnswer(200, {}, json.dumps(body).encode()), conn_id=CONN) == expected


def test_a_retry_that_cannot_get_through_keeps_the_outcome_unknown(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], session: requests.Session
) -> None:
    """After a lost answer the token may be spent: a retry refused with 503s must not read as "not spent"."""
    real = requests_token_transport(session)
    calls: list[int] = []

    def lose_then_busy(url: str, form: Any, window: SendWindow) -> HttpAnswer:
        calls.append(1)
        if len(calls) == 1:
            aac_simulator.lose_token_response()
            try:
                return real(url, form, window)
            finally:
                aac_simulator.fail_token_endpoint(503, times=10)
        return real(url, form, window)

    sleeps = Sleeps()
    with pytest.raises(AACRefreshOutcomeUnknownError) as info:
        request_refresh(
            lose_then_busy,
            endpoint_of(aac_simulator),
            aac_token_pair["refresh_token"],
            conn_id=CONN,
            deadline=time.time() + 30,
            clock=time.time,
            backoff=BACKOFF,
            sleep=sleeps,
        )
    message = str(info.value)
    assert "no answer came back" in message and "did not get an answer either" in message
    assert "kept answering 503" in message and "not spent" not in message
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["reuses"]) == (1, 0)
