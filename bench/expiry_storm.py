"""An expiry storm: 200 callers in 8 processes meet an expired access token together.

Every caller holds the same token in its process's cache; at the moment it stops being
fresh enough, all of them ask for one at once. The question is how many refreshes that
costs (the goal is exactly 1: one thread per process goes to the connection, one process
wins the row's lease, the others find its token stored) and how long the callers wait,
against one refresh round trip measured in the same processes (the goal is a p99 within
2x). Real PostgreSQL metadata DB, the local simulator, metadata-DB mode.

The round trip is a forced refresh of a connection of the process's own, measured one
process at a time while the others sit idle, so that it is the quiet round trip a
caller would see alone; the storm's waits include the contention of 200 callers on the
machine's cores, which is part of what the ratio measures.

``--token-delay 0.1`` holds every token request that long at the simulator, to measure
the waits behind a refresh round trip like a real tenant's (about 100 ms) rather than
the local simulator's few milliseconds.

Run: ``.venv/bin/python bench/expiry_storm.py [--token-delay 0.1]`` (under a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_env import AirflowHome, poll_until  # noqa: E402

ACCESS_TTL = 60.0
MIN_TTL = 5.0
# The storm's pair is minted once every process has measured its round trips, living this
# much longer than MIN_TTL: the time the processes have to read it before it goes stale.
STORM_LEAD = 20.0
ROUND_TRIPS = 5

CALLER = """
import json, pathlib, sys, threading, time
from airflow_provider_aac.hooks.aac import AACHook

conn_id, reference, threads, workdir, index = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]


def signal(name):
    pathlib.Path(workdir, name).touch()


def wait_for(name):
    deadline = time.monotonic() + 600
    while not pathlib.Path(workdir, name).exists():
        if time.monotonic() > deadline:
            sys.exit(f"no {{name}} signal")
        time.sleep(0.01)


reference_hook = AACHook(reference)
signal(f"imported.{{index}}")
wait_for(f"measure.{{index}}")  # one process at a time, the others idle: a quiet round trip
round_trips = []
for _ in range({round_trips}):
    started = time.perf_counter()
    reference_hook.refresh_tokens(force=True)
    round_trips.append(time.perf_counter() - started)
signal(f"measured.{{index}}")
wait_for("stormy")
hook = AACHook(conn_id)
held = hook.get_access_token()
stale_at = hook.tokens.read()[1].expires_at() - {min_ttl}
signal(f"ready.{{index}}")
wait_for("go")
waits, renewed = [], []
start = threading.Barrier(threads)

def caller():
    mine = AACHook(conn_id)
    start.wait()
    time.sleep(max(0.0, stale_at + 0.01 - time.time()))
    asked = time.perf_counter()
    token = mine.get_access_token()
    waits.append(time.perf_counter() - asked)
    renewed.append(token != held)

workers = [threading.Thread(target=caller) for _ in range(threads)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps({{"waits": waits, "renewed": sum(renewed), "round_trips": round_trips}}))
"""


def storm(
    home: AirflowHome, processes: int, threads: int, workdir: Path, token_delay: float
) -> dict[str, float]:
    """Start the processes, measure their round trips one at a time, then mint a pair that expires on them all."""
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        if token_delay > 0:
            sim.slow_token_endpoint(token_delay, times=1_000_000)
        for index in range(processes):
            home.add_aac_connection(f"bench_storm_ref_{index}", sim, refresh_mode="metadata_db")
        code = CALLER.format(min_ttl=MIN_TTL, round_trips=ROUND_TRIPS)
        callers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    code,
                    "bench_storm",
                    f"bench_storm_ref_{index}",
                    str(threads),
                    str(workdir),
                    str(index),
                ],
                env=home.env(_AIRFLOW_PROCESS_CONTEXT="server"),
                cwd=REPO_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in range(processes)
        ]

        def signalled(name: str, timeout: float, what: str) -> None:
            poll_until(lambda: (workdir / name).exists() or None, timeout=timeout, what=what)

        try:
            for index in range(processes):
                signalled(f"imported.{index}", 300, "a storm process to start")
            for index in range(processes):
                (workdir / f"measure.{index}").touch()
                signalled(f"measured.{index}", 120, "a storm process to measure its round trips")
            home.add_aac_connection(
                "bench_storm",
                sim,
                access_ttl=MIN_TTL + STORM_LEAD,
                refresh_mode="metadata_db",
                min_ttl=MIN_TTL,
            )
            (workdir / "stormy").touch()
            for index in range(processes):
                signalled(f"ready.{index}", STORM_LEAD - 5, "the storm's processes to hold the token")
            refreshes_before = sim.stats()["refreshes"]
            (workdir / "go").touch()
            results = []
            for caller in callers:
                out, err = caller.communicate(timeout=STORM_LEAD + 120)
                if caller.returncode != 0:
                    raise RuntimeError(f"a storm process failed:\n{err[-3000:]}")
                results.append(json.loads(out.strip().splitlines()[-1]))
            stats = sim.stats()
        finally:
            for caller in callers:  # a failed run leaves no process waiting for its start
                if caller.poll() is None:
                    caller.kill()
    waits = sorted(w for r in results for w in r["waits"])
    return {
        "callers": len(waits),
        "renewed": sum(r["renewed"] for r in results),
        "refreshes": stats["refreshes"] - refreshes_before,
        "reuses": stats["reuses"],
        "p50": statistics.median(waits),
        "p99": waits[min(len(waits) - 1, round(0.99 * (len(waits) - 1)))],
        "max": waits[-1],
        "round_trip": statistics.median(t for r in results for t in r["round_trips"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=25, help="callers per process")
    parser.add_argument(
        "--token-delay", type=float, default=0.0, help="seconds the simulator holds every token request"
    )
    args = parser.parse_args()
    with AirflowHome(backend="postgres") as home, tempfile.TemporaryDirectory() as tmp:
        home.migrate()
        started = time.monotonic()
        row = storm(home, args.processes, args.threads, Path(tmp), args.token_delay)
        print(f"\nExpiry storm ({time.monotonic() - started:.0f} s), metadata-DB mode, milliseconds:")
        print(
            f"{'processes':>9} {'callers':>7} {'renewed':>7} {'refreshes':>9} {'reuses':>6} "
            f"{'round trip':>10} {'p50 wait':>8} {'p99 wait':>8} {'max':>7} {'p99/trip':>8}"
        )
        trip = row["round_trip"]
        print(
            f"{args.processes:>9} {row['callers']:>7} {row['renewed']:>7} {row['refreshes']:>9} "
            f"{row['reuses']:>6} {trip * 1e3:>10.1f} {float(row['p50']) * 1e3:>8.1f} "
            f"{float(row['p99']) * 1e3:>8.1f} {float(row['max']) * 1e3:>7.1f} "
            f"{float(row['p99']) / trip:>7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
