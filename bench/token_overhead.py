"""What the token lifecycle costs, and how few refreshes it makes under load.

Two questions, answered in one run against the local AAC simulator and a throwaway
Airflow home on PostgreSQL (the metadata DB the connection lives in):

1. Per call: ``AACHook.get_access_token()`` with a fresh stored token, versus the naive
   scripts' way of a refresh POST per task.
2. Refreshes made by N concurrent callers (N = 1, 8, 64; OS processes, 8 threads each
   beyond 8) over a fixed time, versus the minimum the access-token lifetime allows over
   the span in which calls were really made, in metadata-DB mode and in lock mode (Redis
   lock, REST writes to a real api-server); and what naive scripts do, for contrast.

Run: ``make bench`` (or ``.venv/bin/python bench/token_overhead.py``). Prints tables.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.airflow_env import AirflowHome, start_api_server  # noqa: E402
from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.race_worker import call_span, race  # noqa: E402

ACCESS_TTL = 4.0
MIN_TTL = 1.0


def per_call_cost(home: AirflowHome, calls: int) -> list[tuple[str, float]]:
    """Median microseconds per call; the hook runs in subprocesses configured like Airflow's."""
    with AACSimulator(access_ttl=3600) as sim:
        pair = sim.mint_pair()
        extra = {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
        home.add_connection("bench_fresh", "aac", host=sim.base_url, extra=extra)
        env_connection = json.dumps({"conn_type": "aac", "host": sim.base_url, "extra": extra})
        code = f"""
import json, time
from airflow_provider_aac.hooks.aac import AACHook
hook = AACHook("bench_fresh")
hook.get_access_token()
samples = []
for _ in range({calls}):
    t = time.perf_counter(); hook.get_access_token(); samples.append(time.perf_counter() - t)
print(json.dumps(samples))
"""
        in_db = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
        in_env = home.run_python(code, env={"AIRFLOW_CONN_BENCH_FRESH": env_connection})
        refresh_token = sim.mint_pair()["refresh_token"]
        naive: list[float] = []
        session = requests.Session()
        for _ in range(calls):
            started = time.perf_counter()
            answer = session.post(
                sim.token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": sim.client_id,
                },
                timeout=10,
            )
            answer.raise_for_status()
            refresh_token = answer.json()["refresh_token"]
            naive.append(time.perf_counter() - started)
        assert sim.stats()["reuses"] == 0
    return [
        ("get_access_token(), connection in the metadata DB", _median_us(in_db.stdout)),
        ("get_access_token(), connection in an env variable", _median_us(in_env.stdout)),
        ("naive: one refresh POST per call, AAC on 127.0.0.1", statistics.median(naive) * 1e6),
    ]


def _median_us(stdout: str) -> float:
    return float(statistics.median(json.loads(stdout.strip().splitlines()[-1]))) * 1e6


def naive_race(callers: int, seconds: float) -> dict[str, Any]:
    """What scripts that refresh on every run do when they overlap: share a pair, no lock."""
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        stored = dict(sim.mint_pair())
        counts = {"ok": 0, "failed": 0}
        guard = threading.Lock()
        deadline = time.monotonic() + seconds

        def caller() -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                answer = session.post(
                    sim.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": stored["refresh_token"],
                        "client_id": sim.client_id,
                    },
                    timeout=10,
                )
                if answer.status_code == 200:
                    stored.update(answer.json())
                call = session.get(
                    f"{sim.base_url}/v4/people/current",
                    headers={"Authorization": f"Bearer {stored['access_token']}"},
                    timeout=10,
                )
                with guard:
                    counts["ok" if answer.status_code == 200 and call.status_code == 200 else "failed"] += 1
                time.sleep(seconds / 24)

        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = sim.stats()
    return {
        "callers": callers,
        "calls": counts["ok"] + counts["failed"],
        "failed": counts["failed"],
        "refreshes": stats["refreshes"],
        "minimum": math.floor(seconds / (ACCESS_TTL - MIN_TTL)),
        "reuses": stats["reuses"],
        "invalid_grant": stats["invalid_grant"],
    }


def concurrent_refreshes(
    home: AirflowHome, extra: dict[str, Any], callers: int, seconds: float, workdir: Path
) -> dict[str, Any]:
    processes = min(callers, 8)
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        conn_id = f"bench_{callers}_{int(time.time() * 1000)}"
        home.add_aac_connection(conn_id, sim, **extra)
        results = race(
            home,
            conn_id,
            workdir,
            processes=processes,
            threads=callers // processes,
            calls=max(1, int(seconds * 2)),
            duration=seconds,
            before_start=sim.reset_stats,
        )
        stats = sim.stats()
    return {
        "callers": callers,
        "calls": sum(r["ok"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "refreshes": stats["refreshes"],
        "minimum": math.floor(call_span(results) / (ACCESS_TTL - MIN_TTL)),
        "reuses": stats["reuses"],
        "invalid_grant": stats["invalid_grant"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per per-call sample")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each concurrency run")
    parser.add_argument("--callers", default="1,8,64")
    args = parser.parse_args()

    with AirflowHome(backend="postgres") as home, tempfile.TemporaryDirectory() as tmp:
        home.migrate()
        rows = per_call_cost(home, args.calls)
        print(f"\nPer call, median of {args.calls} (microseconds):")
        print(f"{'approach':<58} {'us/call':>10} {'ratio':>8}")
        print("(the naive POST is cheap here only because the simulator is local; it also rotates the chain)")
        base = rows[0][1]
        for name, micros in rows:
            print(f"{name:<58} {micros:>10.0f} {micros / base:>7.1f}x")

        with start_api_server(home) as api:
            home.add_connection(
                "bench_api", "http", host=api.base_url, login=api.username, password=api.password
            )
            home.add_lock_connection("bench_lock", "redis")
            modes = {
                "metadata_db (PostgreSQL row lock)": {"refresh_mode": "metadata_db", "min_ttl": MIN_TTL},
                "lock (Redis lock + REST writes)": {
                    "refresh_mode": "lock",
                    "lock_conn_id": "bench_lock",
                    "airflow_api_conn_id": "bench_api",
                    "min_ttl": MIN_TTL,
                },
            }
            print(
                f"\nRefreshes over {args.seconds:.0f} s with access tokens of {ACCESS_TTL:.0f} s "
                f"(refresh when < {MIN_TTL:.0f} s left):"
            )
            print(
                f"{'mode':<36} {'callers':>7} {'calls':>6} {'failed':>6} {'refreshes':>9} "
                f"{'minimum':>7} {'ratio':>6} {'reuses':>6} {'inv_grant':>9}"
            )
            counts = [int(c) for c in args.callers.split(",")]
            rows = [
                (mode, concurrent_refreshes(home, extra, callers, args.seconds, Path(tmp)))
                for mode, extra in modes.items()
                for callers in counts
            ]
            rows += [
                ("naive: refresh per call, no lock", naive_race(callers, args.seconds)) for callers in (1, 8)
            ]
            for mode, row in rows:
                ratio = row["refreshes"] / max(row["minimum"], 1)
                print(
                    f"{mode:<36} {row['callers']:>7} {row['calls']:>6} {row['failed']:>6} "
                    f"{row['refreshes']:>9} {row['minimum']:>7} {ratio:>5.2f}x {row['reuses']:>6} "
                    f"{row['invalid_grant']:>9}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
