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

Run: ``.venv/bin/python bench/connection_reads.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_env import AirflowHome  # noqa: E402

ACCESS_TTL = 4.0
MIN_TTL = 1.0

CALLERS = """
import json, threading, time
from airflow import settings
from sqlalchemy import event
from airflow_provider_aac.hooks.aac import AACHook

reads = {{"plain": 0, "locked": 0}}

@event.listens_for(settings.engine, "before_cursor_execute")
def count(conn, cursor, statement, *args):
    if "FROM connection" in statement:
        reads["locked" if "FOR UPDATE" in statement else "plain"] += 1

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
print(json.dumps({{"calls": sum(calls), "refreshes": refreshes, **counted}}))
"""


def measure(home: AirflowHome, threads: int, seconds: float, pause: float) -> dict[str, float]:
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        conn_id = f"bench_reads_{threads}"
        home.add_aac_connection(conn_id, sim, refresh_mode="metadata_db", min_ttl=MIN_TTL)
        code = CALLERS.format(conn_id=conn_id, threads=threads, seconds=seconds, pause=pause)
        out = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"}, timeout=seconds + 120)
        counts: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        counts["reuses"] = sim.stats()["reuses"]
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long the threads call")
    parser.add_argument("--threads", default="1,8,64")
    parser.add_argument("--pause", type=float, default=0.005, help="seconds each thread waits between calls")
    args = parser.parse_args()
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        print(
            f"\nOne process, {args.seconds:.0f} s, access tokens of {ACCESS_TTL:.0f} s (refreshed when "
            f"< {MIN_TTL:.0f} s left); reads of the connection per token lifetime:"
        )
        print(
            f"{'threads':>7} {'calls':>8} {'refreshes':>9} {'plain reads':>13} {'per lifetime':>12} "
            f"{'locked reads':>12} {'per lifetime':>12} {'calls/read':>10} {'reuses':>6}"
        )
        for threads in (int(t) for t in args.threads.split(",")):
            row = measure(home, threads, args.seconds, args.pause)
            lifetimes = max(row["refreshes"], 1)
            outside, locked = row["plain"], row["locked"]
            print(
                f"{threads:>7} {row['calls']:>8.0f} {row['refreshes']:>9.0f} {outside:>13.0f} "
                f"{outside / lifetimes:>12.2f} {locked:>12.0f} {locked / lifetimes:>12.2f} "
                f"{row['calls'] / max(outside + locked, 1):>10.0f} {row['reuses']:>6.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
