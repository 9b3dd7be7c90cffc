"""The process-wide token cache, in fresh interpreters on a real metadata DB and the simulator.

Connection reads are counted where they happen, in the SQL Airflow's engine sends to the
``connection`` table; refreshes and reuses at the simulator. The scripts print only counts.
"""

from __future__ import annotations

import asyncio
import gc
import json
import textwrap
import weakref
from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.tokens.token_cache import CachedTokens
from tests.support.airflow_env import AirflowHome

PRELUDE = textwrap.dedent(
    """
    import asyncio, json, sys, threading, time
    from airflow import settings
    from sqlalchemy import event
    from airflow_provider_aac.hooks.aac import AACHook
    from airflow_provider_aac.tokens.token_cache import process_token_cache

    reads = []

    @event.listens_for(settings.engine, "before_cursor_execute")
    def count_connection_reads(conn, cursor, statement, *args):
        if "FROM connection" in statement:
            reads.append(1)

    def report(**out):
        print("RESULT " + json.dumps(out))
    """
)


def run(home: AirflowHome, body: str) -> dict[str, Any]:
    result = home.run_python(PRELUDE + textwrap.dedent(body), env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
    assert "eyJ" not in result.stdout + result.stderr, "a JWT reached the output"
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    parsed: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return parsed


def test_a_fresh_token_is_served_from_memory(airflow_pg_home: AirflowHome) -> None:
    with AACSimulator(access_ttl=300) as sim:
        airflow_pg_home.add_aac_connection("aac_cache_hot", sim)
        out = run(
            airflow_pg_home,
            """
            hooks = [AACHook("aac_cache_hot") for _ in range(3)]
            tokens = {hooks[i % 3].get_access_token() for i in range(1000)}
            calls = [hooks[0].request("GET", "/v4/people/current").status_code for _ in range(20)]
            reads_before_clear = len(reads)
            process_token_cache().clear("aac_cache_hot")
            hooks[0].get_access_token()
            report(distinct_tokens=len(tokens), calls=calls, reads=reads_before_clear,
                   reads_after_clear=len(reads) - reads_before_clear)
            """,
        )
        stats = sim.stats()
    assert out["distinct_tokens"] == 1
    assert out["calls"] == [200] * 20
    assert out["reads"] == 1, "1,000 token asks and 20 calls across three hooks read the connection once"
    assert out["reads_after_clear"] == 1
    assert stats["refreshes"] == 0


STORM = """
hook = AACHook(CONN_ID)
first = hook.get_access_token()
while hook.tokens.read()[1].seconds_left(time.time()) > 0.5:
    time.sleep(0.05)
before = hook.tokens.read()[1].generation
reads.clear()
got = ask_all()
stored = len(reads)
report(distinct=len(set(got)), renewed=first not in got, reads=stored,
       refreshes=hook.tokens.read()[1].generation - before)
"""

IN_THREADS = """
def ask_all():
    start = threading.Barrier(16)
    got = []

    def ask():
        start.wait()
        got.append(AACHook(CONN_ID).get_access_token())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return got
"""

IN_COROUTINES = """
def ask_all():
    async def main():
        hooks = [AACHook(CONN_ID) for _ in range(100)]
        return await asyncio.gather(*(h.aget_access_token() for h in hooks))

    return asyncio.run(main())
"""


@pytest.mark.parametrize("callers", [IN_THREADS, IN_COROUTINES], ids=["16 threads", "100 coroutines"])
def test_callers_meeting_an_expired_token_share_one_read_and_one_refresh(
    airflow_pg_home: AirflowHome, callers: str
) -> None:
    conn_id = f"aac_cache_storm_{len(callers)}"
    with AACSimulator(access_ttl=3) as sim:
        airflow_pg_home.add_aac_connection(conn_id, sim, min_ttl=1)
        out = run(airflow_pg_home, f"CONN_ID = {conn_id!r}\n{callers}{STORM}")
        stats = sim.stats()
    assert out["distinct"] == 1 and out["renewed"] is True
    assert out["refreshes"] == 1, "the interpreter's start may take a first refresh; the storm one more"
    assert stats["reuses"] == 0
    # One caller reads, then its refresh reads and writes the row under its lease; the
    # others wait for it and read nothing.
    assert out["reads"] <= 4, out


def test_a_401_drops_the_held_token_and_reads_the_newer_one(airflow_pg_home: AirflowHome) -> None:
    """Another process refreshed and AAC revoked nothing; a 401 on the held token still recovers."""
    with AACSimulator(access_ttl=300) as sim:
        airflow_pg_home.add_aac_connection("aac_cache_401", sim)
        sim.fail_api(401, times=1, path_prefix="/v4/people/current")
        out = run(
            airflow_pg_home,
            """
            hook = AACHook("aac_cache_401")
            held = hook.get_access_token()
            generation = hook.tokens.read()[1].generation
            import subprocess
            subprocess.run([sys.executable, "-c",
                "from airflow_provider_aac.hooks.aac import AACHook; "
                "AACHook('aac_cache_401').refresh_tokens(force=True)"], check=True)
            still_held = hook.get_access_token() == held
            status = hook.request("GET", "/v4/people/current").status_code
            report(still_held=still_held, status=status,
                   renewed=hook.get_access_token() != held,
                   generation_after=hook.tokens.read()[1].generation - generation)
            """,
        )
        stats = sim.stats()
    assert out["still_held"] is True, "another process's refresh does not reach this one's memory"
    assert out["status"] == 200
    assert out["renewed"] is True and out["generation_after"] == 1
    assert stats["refreshes"] == 1 and stats["reuses"] == 0


def test_an_entry_lets_go_of_event_loops_that_have_closed() -> None:
    """A triggerer or a test runner makes many loops; a closed one must not stay in memory."""
    entry = CachedTokens()

    async def contend() -> None:
        lock = entry.async_flight()
        async with lock:
            waiter = asyncio.create_task(lock.acquire())  # a waiter ties the lock to this loop
            await asyncio.sleep(0)
        await waiter
        lock.release()

    old = asyncio.new_event_loop()
    old.run_until_complete(contend())
    old.close()
    gone = weakref.ref(old)
    del old
    asyncio.run(contend())
    gc.collect()
    assert gone() is None
