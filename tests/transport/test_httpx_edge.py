"""One httpx client per event loop, and a bound on the requests it has in flight."""

from __future__ import annotations

import asyncio
import json
import math
import time

import pytest

from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.transport.httpx_edge import LOOP_CONNECTIONS, LoopHttp, loop_http

CALLS = 100
HELD = 0.2


def test_a_loop_keeps_its_client_and_a_new_loop_gets_its_own() -> None:
    async def twice() -> tuple[LoopHttp, LoopHttp]:
        return loop_http(), loop_http()

    first, again = asyncio.run(twice())
    other, _ = asyncio.run(twice())
    assert first is again
    assert other is not first and other.client is not first.client


def test_concurrent_calls_on_one_loop_reach_aac_a_bounded_number_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """AAC holds each answer 0.2 s: bounded calls take rounds of LOOP_CONNECTIONS, not one round."""
    with AACSimulator(access_ttl=300) as sim:
        sim.runs.slow(HELD, path_prefix="/v4/people/current", times=CALLS)
        pair = sim.mint_pair()
        extra = {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
        monkeypatch.setenv(
            "AIRFLOW_CONN_AAC_SLOTS", json.dumps({"conn_type": "aac", "host": sim.base_url, "extra": extra})
        )

        async def main() -> list[int]:
            hook = AACHook("aac_slots")
            answers = await asyncio.gather(
                *(hook.arequest("GET", "/v4/people/current") for _ in range(CALLS))
            )
            return [answer.status_code for answer in answers]

        started = time.monotonic()
        statuses = asyncio.run(main())
        elapsed = time.monotonic() - started
        stats = sim.stats()
    assert statuses == [200] * CALLS
    assert elapsed >= math.ceil(CALLS / LOOP_CONNECTIONS) * HELD * 0.95
    assert elapsed < CALLS * HELD / 2, "the calls still overlap"
    assert stats["refreshes"] == 0
