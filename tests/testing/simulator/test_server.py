"""The HTTP layer: concurrent callers and keep-alive connections ended by stop()."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.processes import poll_until
from tests.testing.simulator.helpers import TIMEOUT, api


def test_sixty_four_concurrent_callers(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    callers = 64
    barrier = threading.Barrier(callers)

    def call(_: int) -> int:
        barrier.wait()
        return api(aac_simulator, "GET", "/v4/people/current", aac_token_pair["access_token"]).status_code

    with ThreadPoolExecutor(callers) as pool:
        statuses = list(pool.map(call, range(callers)))

    assert statuses == [200] * callers
    assert aac_simulator.stats()["api_authorized"] == callers


def test_stop_ends_keep_alive_connections() -> None:
    def handler_threads() -> int:
        return sum("process_request_thread" in thread.name for thread in threading.enumerate())

    before = handler_threads()
    sim = AACSimulator().start()
    session = requests.Session()
    assert session.get(sim.base_url + "/v4/people/current", timeout=TIMEOUT).status_code == 401
    assert handler_threads() > before

    started = time.monotonic()
    sim.stop()

    assert time.monotonic() - started < 2
    poll_until(
        lambda: handler_threads() == before or None,
        timeout=TIMEOUT,
        interval=0.02,
        what="handler threads to end",
    )
    with pytest.raises(RuntimeError):
        _ = sim.base_url
    session.close()
