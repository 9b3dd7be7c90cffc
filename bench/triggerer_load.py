"""Can one triggerer process hold 1,000 deferred AAC waits without stalling its event loop?

One process (like an Airflow triggerer) runs 1,000 ``AACRunTrigger.run()`` generators on a
single asyncio loop, each waiting on a plan run that stays running on the local AAC
simulator (access tokens of 5 s, so the span covers several token lifetimes), with the
poll interval compressed from 30 s to 3 s. A probe coroutine sleeps 10 ms in a loop and
records how late each wake-up is. Reported:

* event-loop lag p50 / p99 / max (goal: p99 <= 50 ms);
* process CPU time per poll (a poll is one status GET the simulator answered);
* reads of the connection from the metadata DB (PostgreSQL), per access-token lifetime:
  the process-wide token cache serves tokens from memory while fresh, so the connection
  should be read only when the token goes stale, not per poll;
* refreshes and refresh-token reuses at the simulator (reuses must be 0).

The simulator runs in this process and competes with the trigger process for the same
cores, so on a small machine the numbers are pessimistic.

Run: ``.venv/bin/python bench/triggerer_load.py`` (``--triggers``, ``--seconds``, ``--poll``).
Prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from tests.support.airflow_home import AirflowHome  # noqa: E402

ACCESS_TTL = 5.0
MIN_TTL = 1.0
PLAN_ID = 900
CONN_ID = "bench_triggerer"
LAG_GOAL_MS = 50.0
PROBE_INTERVAL = 0.010

# Runs in a fresh interpreter configured for the Airflow home (server context): the
# triggers, the lag probe and the connection-read counter share one process and one loop.
TRIGGERER_SCRIPT = """
import asyncio, json, time

import httpx
from airflow import settings
from sqlalchemy import event

from airflow_provider_aac.triggers.aac import AACRunTrigger

CONFIG = json.loads(__CONFIG__)
reads = [0]


@event.listens_for(settings.engine, "before_cursor_execute")
def count_connection_reads(conn, cursor, statement, *args):
    if "FROM connection" in statement:
        reads[0] += 1


async def probe(lags, interval):
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(time.perf_counter() - started - interval)


async def drive(trigger, delay, events):
    await asyncio.sleep(delay)
    async for fired in trigger.run():
        events.append(fired.payload)


async def main():
    n, poll, seconds = CONFIG["triggers"], CONFIG["poll"], CONFIG["seconds"]
    triggers = [
        AACRunTrigger("plan", run_id, aac_conn_id=CONFIG["conn_id"], poll_interval=poll)
        for run_id in CONFIG["run_ids"]
    ]
    lags, events = [], []
    async with httpx.AsyncClient() as admin:
        stats_url = CONFIG["base_url"] + "/_sim/stats"
        before = (await admin.get(stats_url)).json()
        reads_before, cpu_before, t0 = reads[0], time.process_time(), time.perf_counter()
        lag_task = asyncio.create_task(probe(lags, CONFIG["probe"]))
        tasks = [
            asyncio.create_task(drive(trigger, i * poll / n, events))
            for i, trigger in enumerate(triggers)
        ]
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu_before, time.perf_counter() - t0
        connection_reads = reads[0] - reads_before
        after = (await admin.get(stats_url)).json()
        lag_task.cancel()
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(lag_task, *tasks, return_exceptions=True)
    crashed = [
        repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
    ]
    print("RESULT " + json.dumps({
        "wall": wall,
        "cpu": cpu,
        "polls": after["api_calls"] - before["api_calls"],
        "unauthorized": after["api_unauthorized"] - before["api_unauthorized"],
        "connection_reads": connection_reads,
        "lags": lags,
        "ramp": poll,
        "events": events[:5],
        "event_count": len(events),
        "crashed": crashed[:5],
    }))


asyncio.run(main())
"""


def start_runs(sim: AACSimulator, count: int) -> list[int]:
    """``count`` plan runs that stay running for the whole measurement."""
    sim.add_plan(PLAN_ID, duration=3600.0, name="Bench: long plan")
    sim.runs.set_rate_limits(enabled=False)  # AAC allows 30 runPlan a minute; only the polls matter
    token = sim.mint_pair(access_ttl=3600.0)["access_token"]
    session = requests.Session()
    run_ids = []
    for _ in range(count):
        answer = session.post(
            f"{sim.base_url}/v4/plans/{PLAN_ID}/run",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        answer.raise_for_status()
        run_ids.append(int(answer.json()["planSnapshotRunId"]))
    return run_ids


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(triggers: int, seconds: float, poll: float) -> dict[str, Any]:
    with AACSimulator(access_ttl=ACCESS_TTL) as sim, AirflowHome(backend="postgres") as home:
        home.migrate()
        home.add_aac_connection(CONN_ID, sim, refresh_mode="metadata_db", min_ttl=MIN_TTL)
        run_ids = start_runs(sim, triggers)
        config = {
            "triggers": triggers,
            "seconds": seconds,
            "poll": poll,
            "probe": PROBE_INTERVAL,
            "conn_id": CONN_ID,
            "base_url": sim.base_url,
            "run_ids": run_ids,
        }
        script = TRIGGERER_SCRIPT.replace("__CONFIG__", repr(json.dumps(config)))
        sim.reset_stats()
        result = home.run_python(script, env={"_AIRFLOW_PROCESS_CONTEXT": "server"}, timeout=seconds + 300.0)
        stats = sim.stats()
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"the trigger process printed no result:\n{result.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    out["refreshes"] = stats["refreshes"]
    out["reuses"] = stats["reuses"]
    out["invalid_grant"] = stats["invalid_grant"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=1000, help="deferred waits on one loop")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement span")
    parser.add_argument("--poll", type=float, default=3.0, help="trigger poll interval (30 s in production)")
    args = parser.parse_args()

    row = measure(args.triggers, args.seconds, args.poll)
    lags_ms = sorted(lag * 1000 for lag in row["lags"])
    steady_ms = sorted(lag * 1000 for lag in row["lags"][int(len(row["lags"]) * row["ramp"] / row["wall"]) :])
    lifetimes = row["wall"] / ACCESS_TTL
    cpu_ms_per_poll = row["cpu"] * 1000 / max(row["polls"], 1)
    p99 = percentile(lags_ms, 0.99)

    print(
        f"\n{args.triggers} AACRunTriggers on one event loop, polling every {args.poll:g} s for "
        f"{row['wall']:.1f} s; access tokens of {ACCESS_TTL:g} s (refresh when < {MIN_TTL:g} s "
        f"left), metadata_db mode on PostgreSQL; lag probe every {PROBE_INTERVAL * 1000:.0f} ms:"
    )
    rows = [
        ("triggers", f"{args.triggers}"),
        ("seconds", f"{row['wall']:.1f}"),
        ("polls (status GETs answered)", f"{row['polls']}"),
        ("polls per second", f"{row['polls'] / row['wall']:.1f}"),
        ("lag samples", f"{len(lags_ms)}"),
        ("loop lag p50, ms", f"{percentile(lags_ms, 0.50):.1f}"),
        ("loop lag p99, ms", f"{p99:.1f}"),
        ("loop lag max, ms", f"{lags_ms[-1] if lags_ms else float('nan'):.1f}"),
        (f"loop lag p99 after the {row['ramp']:g} s ramp, ms", f"{percentile(steady_ms, 0.99):.1f}"),
        ("CPU per poll, ms (trigger process)", f"{cpu_ms_per_poll:.2f}"),
        ("trigger process CPU, % of one core", f"{row['cpu'] * 100 / row['wall']:.0f}"),
        ("connection reads", f"{row['connection_reads']}"),
        ("token lifetimes in the span", f"{lifetimes:.1f}"),
        ("connection reads per lifetime", f"{row['connection_reads'] / lifetimes:.2f}"),
        ("refreshes", f"{row['refreshes']}"),
        ("reuses (must be 0)", f"{row['reuses']}"),
        ("invalid_grant", f"{row['invalid_grant']}"),
        ("401 answers", f"{row['unauthorized']}"),
        ("trigger events fired (should be 0)", f"{row['event_count']}"),
    ]
    print(f"{'what':<44} {'value':>10}")
    for name, value in rows:
        print(f"{name:<44} {value:>10}")
    verdict = "meets" if p99 <= LAG_GOAL_MS else "MISSES"
    print(f"\nloop lag p99 {p99:.1f} ms {verdict} the goal of <= {LAG_GOAL_MS:.0f} ms.")
    for event in row["events"]:
        print(f"event: {event}")
    for crash in row["crashed"]:
        print(f"crashed: {crash}")
    return 0 if row["reuses"] == 0 and not row["crashed"] else 1


if __name__ == "__main__":
    sys.exit(main())
