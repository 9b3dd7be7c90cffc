"""Exchanges as generators of effects, driven by hand: no hook, no sockets, no sleeping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aac.core.api import ApiCall, ApiResponse, api_call, api_exchange
from airflow_provider_aac.core.errors import AACApiError, AACConfigError, AACTransientError
from airflow_provider_aac.core.exchange import (
    Effect,
    Exchange,
    FreshToken,
    HttpAnswer,
    ReplaceToken,
    Send,
    TransportFailure,
    Wait,
)
from airflow_provider_aac.core.retry import Backoff

NO_JITTER = Backoff(attempts=5, base=0.0, cap=0.0, max_retry_after=120.0)


def ok(data: Any = None, status: int = 200) -> HttpAnswer:
    return HttpAnswer(status, {"Content-Type": "application/json"}, json.dumps(data).encode())


def refused(status: int, headers: dict[str, str] | None = None) -> HttpAnswer:
    return HttpAnswer(status, headers or {}, b"")


class Hand:
    """Drives an exchange one effect at a time, as a driver would, recording what it yields."""

    def __init__(self, exchange: Exchange[Any]) -> None:
        self.exchange = exchange
        self.effects: list[Effect] = [next(exchange)]
        self.result: Any = None
        self.done = False

    @property
    def last(self) -> Effect:
        return self.effects[-1]

    def resume(self, reply: HttpAnswer | TransportFailure | None = None) -> Effect | None:
        """Resume with an answer, or raise a failure into the exchange, as a driver does."""
        try:
            if isinstance(reply, TransportFailure):
                effect = self.exchange.throw(reply)
            else:
                effect = self.exchange.send(reply)
        except StopIteration as stop:
            self.result, self.done = stop.value, True
            return None
        self.effects.append(effect)
        return effect


def test_a_call_takes_a_token_then_sends_and_returns_the_answer() -> None:
    hand = Hand(api_call("get", "/v4/plans", params={"limit": 5}, headers={"x-a": "1"}))
    assert hand.last == FreshToken()
    assert hand.resume() == Send("GET", "/v4/plans", {"limit": 5}, None, {"x-a": "1"})
    assert hand.resume(ok({"data": []})) is None
    assert hand.done
    assert isinstance(hand.result, ApiResponse)
    assert (hand.result.status_code, hand.result.data) == (200, {"data": []})


def test_429_waits_the_named_delay_then_resends() -> None:
    hand = Hand(api_call("POST", "/v4/plans/1/run", json={"a": 1}, backoff=NO_JITTER))
    send = hand.resume()
    assert send == Send("POST", "/v4/plans/1/run", None, {"a": 1})
    assert hand.resume(refused(429, {"x-retry-after": "7"})) == Wait(7.0)
    assert hand.resume() == send
    hand.resume(ok({"id": 9}, 201))
    assert hand.result.data == {"id": 9}
    assert [type(e) for e in hand.effects] == [FreshToken, Send, Wait, Send]


def test_401_replaces_the_token_once_and_a_second_401_raises() -> None:
    hand = Hand(api_call("GET", "/v4/people/current"))
    send = hand.resume()
    replace = hand.resume(refused(401))
    assert isinstance(replace, ReplaceToken)
    assert replace.rejection.status_code == 401
    assert hand.resume() == send
    with pytest.raises(AACApiError) as raised:
        hand.resume(refused(401))
    assert raised.value.status_code == 401
    assert sum(isinstance(e, ReplaceToken) for e in hand.effects) == 1


def test_a_lost_non_idempotent_request_is_not_resent() -> None:
    hand = Hand(api_call("POST", "/v4/plans/1/run"))
    hand.resume()
    with pytest.raises(AACTransientError, match="not repeated"):
        hand.resume(TransportFailure("ConnectionError reaching https://aac", request_sent=True))
    assert [type(e) for e in hand.effects] == [FreshToken, Send]


def test_a_request_that_never_left_is_resent_after_a_wait() -> None:
    hand = Hand(api_exchange(ApiCall("POST", "/v4/plans/1/run", backoff=NO_JITTER)))
    send = hand.resume()
    assert hand.resume(TransportFailure("ConnectTimeout reaching https://aac", request_sent=False)) == Wait(
        0.0
    )
    assert hand.resume() == send


def test_a_bad_path_is_refused_before_any_effect() -> None:
    with pytest.raises(AACConfigError):
        api_call("GET", "/v4/../admin")


def test_a_send_answered_with_nothing_is_a_driver_bug() -> None:
    hand = Hand(api_call("GET", "/v4/plans"))
    hand.resume()
    with pytest.raises(TypeError, match="HttpAnswer"):
        hand.resume(None)


def composed(backoff: Backoff) -> Exchange[list[Any]]:
    """Two calls in a row; a failed first call is caught as an ordinary exception."""
    try:
        first = (yield from api_call("GET", "/v4/jobGroups/1", backoff=backoff)).data
    except AACApiError as err:
        first = f"failed {err.status_code}"
    second = (yield from api_call("GET", "/v4/jobGroups/2", backoff=backoff)).data
    return [first, second]


def test_composed_exchanges_see_inner_errors_as_exceptions() -> None:
    hand = Hand(composed(NO_JITTER))
    assert hand.resume() == Send("GET", "/v4/jobGroups/1")
    assert hand.resume(refused(404)) == FreshToken()
    assert hand.resume() == Send("GET", "/v4/jobGroups/2")
    hand.resume(ok("Complete"))
    assert hand.result == ["failed 404", "Complete"]


def test_a_driver_failure_is_raised_at_the_yield() -> None:
    exchange = composed(NO_JITTER)
    assert next(exchange) == FreshToken()
    assert exchange.throw(AACApiError("no token", status_code=None)) == FreshToken()
    assert exchange.send(None) == Send("GET", "/v4/jobGroups/2")
