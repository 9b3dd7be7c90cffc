"""What the token lifecycle costs, and how few refreshes it makes under load.

Two questions, answered in one run against the local AAC simulator and a throwaway
Airflow home on PostgreSQL (the metadata DB the connection lives in):

1. Per call: ``AACHook.get_access_token()`` with a token held in memory, a read of the
   connection (what every call cost before the token cache), and one refresh round trip
   (to the simulator, and with 10 ms added to each token answer as a stand-in for the
   internet). The goal is at least 1000x between the first and the refreshes.
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
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_env import AirflowHome, start_api_server  # noqa: E402
from tests.support.airflow_home import minted_aac_extra  # noqa: E402
from tests.support.race_worker import call_span, race  # noqa: E402

ACCESS_TTL = 4.0
MIN_TTL = 1.0
WAN_LATENCY = 0.010  # added to each token answer: a stand-in for AAC over the internet


def per_call_cost(home: AirflowHome, calls: int, refreshes: int) -> list[tuple[str, float]]:
    """Median microseconds per call; the hook runs in subprocesses configured like Airflow's."""
    with AACSimulator(access_ttl=3600) as sim:
        home.add_aac_connection("bench_fresh", sim, refresh_mode="metadata_db")
        env_connection = json.dumps(
            {"conn_type": "aac", "host": sim.base_url, "extra": minted_aac_extra(sim)}
        )
        timed = """
import json, time
from airflow_provider_aac.hooks.aac import AACHook
hook = AACHook("bench_fresh")
hook.get_access_token()
def median_of(n, call):
    samples = []
    for _ in range(n):
        t = time.perf_counter(); call(); samples.append(time.perf_counter() - t)
    samples.sort()
    return samples[len(samples) // 2]
"""
        each = (
            f"{timed}print(json.dumps([median_of({calls}, hook.get_access_token), "
            f"median_of({calls}, hook.tokens.read), "
            f"median_of({refreshes}, lambda: hook.refresh_tokens(force=True))]))"
        )
        server = {"_AIRFLOW_PROCESS_CONTEXT": "server"}
        cached, read, refresh = _medians_us(home.run_python(each, env=server).stdout)
        reads_only = f"{timed}print(json.dumps([0, median_of({calls}, hook.tokens.read), 0]))"
        _, env_read, _ = _medians_us(
            home.run_python(reads_only, env={"AIRFLOW_CONN_BENCH_FRESH": env_connection}).stdout
        )
        sim.slow_token_endpoint(WAN_LATENCY, times=refreshes + 2)
        only_refresh = f"{timed}print(json.dumps([0, 0, median_of({refreshes}, lambda: hook.refresh_tokens(force=True))]))"
        _, _, far_refresh = _medians_us(home.run_python(only_refresh, env=server).stdout)
        assert sim.stats()["reuses"] == 0
    return [
        ("get_access_token(), token held in memory", cached),
        ("a read of the connection, metadata DB", read),
        ("a read of the connection, env variable", env_read),
        ("one refresh, metadata-DB mode, AAC on 127.0.0.1", refresh),
        (f"one refresh, AAC {WAN_LATENCY * 1000:.0f} ms away", far_refresh),
    ]


def _medians_us(stdout: str) -> list[float]:
    return [float(m) * 1e6 for m in json.loads(stdout.strip().splitlines()[-1])]


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
    parser.add_argument("--refreshes", type=int, default=50, help="refreshes per per-call sample")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each concurrency run")
    parser.add_argument("--callers", default="1,8,64")
    args = parser.parse_args()

    with AirflowHome(backend="postgres") as home, tempfile.TemporaryDirectory() as tmp:
        home.migrate()
        rows = per_call_cost(home, args.calls, args.refreshes)
        print(f"\nPer call, median of {args.calls} ({args.refreshes} for refreshes), microseconds:")
        print(f"{'what':<52} {'us/call':>10} {'x cached':>10}")
        base = rows[0][1]
        for name, micros in rows:
            print(f"{name:<52} {micros:>10.1f} {micros / base:>9.0f}x")

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
