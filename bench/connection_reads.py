"""How often a process reads its ``aac`` connection, per access-token lifetime.

Before the token cache every call read the connection (a metadata-DB query, or on a
worker a round trip through the Execution API). Now a process reads it once when its
held token is no longer fresh (a plain read); the refresh that follows checks that the
connection can be written (another plain read) and reads the row under its lock to claim
and to store (two locked reads), because a refresh token is never spent from memory. One process with 1, 8 or 64 threads
calls ``get_access_token()`` every few milliseconds for a while, on a real PostgreSQL
metadata DB and the local simulator; reads are counted in the SQL Airflow's engine sends.
The goal is one look per lifetime, however many threads ask: two plain reads and two
locked ones per refresh, with 1, 8 or 64 threads.

``--mode lock`` runs the same callers in lock mode (a PostgreSQL advisory lock, the pair
written through a real api-server's REST API), and counts every lookup of a connection
(the ``aac`` one, and the lock and API connections it names) and every REST call by
method; ``before claim`` is the lookups of the ``aac`` connection from the end of one
refresh to the claim of the next. The goal there: one look per lifetime on the fast path,
and per refresh at most one read of the ``aac`` connection before the claim, under the
lock, and two writes (claim, store). The look that finds the token stale comes before the
lock and is counted with the refresh here (one process, so every lifetime ends in a
refresh); it stays because every process makes it, refreshing or not, and without it each
would take the lock once per lifetime to learn that another process had refreshed. The
refresh then reads once more after the token request, to store over whatever else
changed; each PATCH is checked by the connection it answers with, not by a read. Counting
starts after the first call, so a process's first refresh of a connection is not in the
table: it also GETs the row and looks once after its claim, to prove that tasks read what
the REST API writes. It then lists the provider modules whose functions run in one forced
lock-mode refresh (``sys.setprofile``).

Measured here (2 cores shared with other work; counts, not timings), per refresh, at 1, 8
and 64 threads (``before claim`` before the change: from the order the counting test in
``tests/tokens/test_airflow_api.py`` saw):

======  =========  ============  ===========  ========  ==========  ==========
        aac reads  before claim  other conns  REST GET  REST PATCH  REST other
======  =========  ============  ===========  ========  ==========  ==========
before  5.00       2             2.25-3.00    1.00      2.00        0.25-1.00
after   3.00       2.00          1.00         0.00      2.00        0.00
======  =========  ============  ===========  ========  ==========  ==========

Run: ``.venv/bin/python bench/connection_reads.py [--mode lock]`` (about a minute each).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_cluster import start_api_server  # noqa: E402
from tests.support.airflow_env import AirflowHome  # noqa: E402

ACCESS_TTL = 4.0
MIN_TTL = 1.0

CALLERS = """
import json, sys, threading, time
from airflow import settings
from sqlalchemy import event
from airflow_provider_aac.hooks.aac import AACHook

import requests
reads = {{"plain": 0, "locked": 0, "before_claim": 0, "other_conns": 0, "rest_get": 0, "rest_patch": 0, "rest_other": 0}}
claimed = [False]
AAC_CONN = {conn_id!r}
API_URL = {api_url!r}

@event.listens_for(settings.engine, "before_cursor_execute")
def count(conn, cursor, statement, parameters, *args):
    if "FROM connection" in statement:
        if AAC_CONN not in repr(parameters):
            reads["other_conns"] += 1
        else:
            reads["locked" if "FOR UPDATE" in statement else "plain"] += 1
            reads["before_claim"] += 0 if claimed[0] else 1

send = requests.Session.send

def counted_send(self, request, **kwargs):
    if API_URL and request.url.startswith(API_URL):
        key = {{"GET": "rest_get", "PATCH": "rest_patch"}}.get(request.method, "rest_other")
        reads[key] += 1
        if request.method == "PATCH":
            claimed[0] = not claimed[0]  # the claim, then the store: one refresh at a time per process
    return send(self, request, **kwargs)

requests.Session.send = counted_send

hook = AACHook({conn_id!r})
hook.get_access_token()
before = hook.tokens.read()[1].generation
for key in reads:
    reads[key] = 0
calls = [0] * {threads}
deadline = time.monotonic() + {seconds}

def caller(index):
    mine = AACHook({conn_id!r})
    while time.monotonic() < deadline:
        mine.get_access_token()
        calls[index] += 1
        time.sleep({pause})

threads = [threading.Thread(target=caller, args=(i,)) for i in range({threads})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
counted = dict(reads)
refreshes = hook.tokens.read()[1].generation - before
modules = set()

def seen(frame, event, arg):
    name = frame.f_globals.get("__name__", "")
    if event == "call" and name.startswith("airflow_provider_aac"):
        modules.add(name)

sys.setprofile(seen)
hook.refresh_tokens(force=True)
sys.setprofile(None)
print(json.dumps({{"calls": sum(calls), "refreshes": refreshes, **counted, "modules": sorted(modules)}}))
"""


LOCK_CONN = "bench_reads_lock"
API_CONN = "bench_reads_api"


def measure(
    home: AirflowHome, threads: int, seconds: float, pause: float, api_url: str | None
) -> dict[str, Any]:
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        conn_id = f"bench_reads_{'lock' if api_url else 'db'}_{threads}"
        if api_url:
            mode = {"refresh_mode": "lock", "lock_conn_id": LOCK_CONN, "airflow_api_conn_id": API_CONN}
        else:
            mode = {"refresh_mode": "metadata_db"}
        home.add_aac_connection(conn_id, sim, min_ttl=MIN_TTL, **mode)
        code = CALLERS.format(
            conn_id=conn_id, threads=threads, seconds=seconds, pause=pause, api_url=api_url or ""
        )
        out = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"}, timeout=seconds + 120)
        counts: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        counts["reuses"] = sim.stats()["reuses"]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the threads call")
    parser.add_argument("--threads", default="1,8,64")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds each thread waits between calls")
    parser.add_argument("--mode", choices=("metadata_db", "lock"), default="metadata_db")
    args = parser.parse_args()
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        if args.mode == "lock":
            with start_api_server(home) as server:
                home.add_lock_connection(LOCK_CONN, "postgres")
                home.add_airflow_api_connection(API_CONN, server.base_url)
                report_lock_mode(home, args, server.base_url)
            return 0
        print(
            f"\nOne process, {args.seconds:.0f} s, access tokens of {ACCESS_TTL:.0f} s (refreshed when "
            f"< {MIN_TTL:.0f} s left); reads of the connection per token lifetime:"
        )
        print(
            f"{'threads':>7} {'calls':>8} {'refreshes':>9} {'plain reads':>13} {'per lifetime':>12} "
            f"{'locked reads':>12} {'per lifetime':>12} {'calls/read':>10} {'reuses':>6}"
        )
        for threads in (int(t) for t in args.threads.split(",")):
            row = measure(home, threads, args.seconds, args.pause, None)
            lifetimes = max(row["refreshes"], 1)
            outside, locked = row["plain"], row["locked"]
            print(
                f"{threads:>7} {row['calls']:>8.0f} {row['refreshes']:>9.0f} {outside:>13.0f} "
                f"{outside / lifetimes:>12.2f} {locked:>12.0f} {locked / lifetimes:>12.2f} "
                f"{row['calls'] / max(outside + locked, 1):>10.0f} {row['reuses']:>6.0f}"
            )
    return 0


def report_lock_mode(home: AirflowHome, args: argparse.Namespace, api_url: str) -> None:
    print(
        f"\nLock mode, one process, {args.seconds:.0f} s, access tokens of {ACCESS_TTL:.0f} s (refreshed when "
        f"< {MIN_TTL:.0f} s left); per refresh:"
    )
    print(
        f"{'threads':>7} {'calls':>8} {'refreshes':>9} {'aac reads':>9} {'before claim':>12} {'other conns':>11} "
        f"{'REST GET':>8} {'REST PATCH':>10} {'REST other':>10} {'reuses':>6}"
    )
    modules: list[str] = []
    for threads in (int(t) for t in args.threads.split(",")):
        row = measure(home, threads, args.seconds, args.pause, api_url)
        modules = row["modules"]
        per = max(row["refreshes"], 1)
        print(
            f"{threads:>7} {row['calls']:>8.0f} {row['refreshes']:>9.0f} "
            f"{(row['plain'] + row['locked']) / per:>9.2f} {row['before_claim'] / per:>12.2f} "
            f"{row['other_conns'] / per:>11.2f} "
            f"{row['rest_get'] / per:>8.2f} {row['rest_patch'] / per:>10.2f} {row['rest_other'] / per:>10.2f} "
            f"{row['reuses']:>6.0f}"
        )
    print(f"\nProvider modules whose functions ran in one forced lock-mode refresh: {len(modules)}")
    print("  " + "\n  ".join(modules))


if __name__ == "__main__":
    sys.exit(main())
