"""The sync and the async driver share one step function, so they do the same IO for the same exchange.

Both drivers run against the simulator with the same injected 429s; a counting wrapper
around the hook's real token manager (everything delegated) records each token lookup,
and the waits are recorded instead of taken.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from airflow_provider_aac.core.exchange import Exchange, FreshToken, Send, Wait
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.hooks.driver import Drive
from airflow_provider_aac.testing.simulator import AACSimulator

CONN = "aac_driver"


class CountedTokens:
    """The hook's token manager, with its lookups counted."""

    def __init__(self, tokens: Any) -> None:
        self.tokens = tokens
        self.lookups = 0

    def fresh(self, min_ttl: float | None = None) -> Any:
        self.lookups += 1
        return self.tokens.fresh(min_ttl)

    async def afresh(self, min_ttl: float | None = None) -> Any:
        self.lookups += 1
        return await self.tokens.afresh(min_ttl)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokens, name)


@pytest.fixture
def hooks(
    monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> tuple[AACHook, list[float]]:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN.upper()}",
        json.dumps({"conn_type": "aac", "host": aac_simulator.base_url, "extra": dict(aac_token_pair)}),
    )
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    hook = AACHook(CONN, sleep=waits.append, asleep=asleep)
    return hook, waits


def test_both_drivers_take_the_token_once_per_call_and_wait_the_same(
    hooks: tuple[AACHook, list[float]], aac_simulator: AACSimulator
) -> None:
    hook, waits = hooks
    seen = {}
    for name, run in {
        "sync": lambda: hook.request("GET", "/v4/people/current"),
        "async": lambda: asyncio.run(hook.arequest("GET", "/v4/people/current")),
    }.items():
        counted = hook.tokens = CountedTokens(hook.tokens)  # type: ignore[assignment]
        waits.clear()
        aac_simulator.fail_api(429, times=2, retry_after=3)
        assert run().status_code == 200
        seen[name] = (counted.lookups, len(waits), all(wait >= 3 for wait in waits))
        hook.tokens = counted.tokens
    assert seen["sync"] == seen["async"] == (1, 2, True)


def two_sends() -> Exchange[int]:
    yield FreshToken()
    yield Send("GET", "/v4/a")
    yield Wait(1.0)
    yield Send("GET", "/v4/b")
    return 7


def test_the_step_sends_with_the_token_taken_last_and_returns_the_result() -> None:
    class Config:
        base_url = "https://aac.test"

    class State:
        access_token = "token-a"

    drive = Drive(two_sends(), CONN)
    kinds = []
    while (io := drive.next_io()) is not None:
        kinds.append(io.kind)
        if io.kind == "send":
            assert io.args[1:] == ("https://aac.test", "token-a")
        drive.done((Config(), State()) if io.kind == "token" else None)
    assert kinds == ["token", "send", "sleep", "send"]
    assert drive.result == 7


def test_a_send_before_a_token_is_a_bug_of_the_exchange() -> None:
    def sends_first() -> Exchange[None]:
        yield Send("GET", "/v4/a")

    with pytest.raises(TypeError, match="FreshToken"):
        Drive(sends_first(), CONN).next_io()
