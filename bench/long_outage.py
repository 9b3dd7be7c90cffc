"""A store that is down for minutes right after AAC rotated: is the new pair kept, in every mode?

Question: api-servers restart during deploys and metadata DBs fail over; the new pair
exists only in the refresher's hands until it is stored. With the default
``store_patience`` (10 minutes), does a refresh whose store is down for longer than five
minutes still end with the new pair stored and the chain alive?

Each mode runs at the same time: AAC rotates for real, its answer is held on the way back
while the store goes down, then released. REST modes lose their api-server (connections
refused for the first half of the outage, then 502 as from a load balancer while it
starts); metadata-DB mode loses its PostgreSQL server (a private one, stopped and started).

    .venv/bin/python bench/long_outage.py --minutes 5.5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.faults.scene import Scene, answered, scene, wait_for  # noqa: E402
from tests.support.airflow_env import AirflowHome, ApiServer, start_api_server  # noqa: E402
from tests.support.private_services import PrivatePostgres  # noqa: E402

REST_MODES = ("lock_postgres", "lock_redis", "single_writer")


@dataclass
class Outcome:
    mode: str
    down: str
    seconds: float = 0.0
    refused_writes: str = "-"
    result: str = "?"
    generation: object = None
    chain: str = "?"
    refreshes: int = 0
    reuses: int = 0


def add_lock_connections(home: AirflowHome, prefix: str = "fault") -> None:
    """``{prefix}_lock_postgres`` and ``{prefix}_lock_redis`` on the local servers: the names
    a ``lock_*`` mode's connection points at (``f"{prefix}_{mode}"``)."""
    home.add_lock_connection(f"{prefix}_lock_postgres", "postgres")
    home.add_lock_connection(f"{prefix}_lock_redis", "redis")


def judge(s: Scene, outcome: Outcome, result: dict[str, object]) -> None:
    outcome.result = "ok" if result["ok"] else f"{result['error_type']}"
    stored = s.stored()
    outcome.generation = stored.get("generation")
    outcome.chain = s.sim.refresh_token_status(str(stored["refresh_token"]))
    stats = s.sim.stats()
    outcome.refreshes, outcome.reuses = stats["refreshes"], stats["reuses"]


def api_outage(home: AirflowHome, api: ApiServer, mode: str, minutes: float) -> Outcome:
    outcome = Outcome(mode, "api-server")
    with scene(home, mode, api_server=api) as s:
        assert s.api_proxy is not None
        answer = s.token_rule().hold_response(timeout=120)
        refresher = s.start("writer" if mode == "single_writer" else "force")
        answer.wait_forwarded(timeout=120)  # AAC has rotated
        started = time.monotonic()
        s.api_proxy.refuse()
        answer.release()
        time.sleep(minutes * 30)  # the outage's first half: nothing listens
        s.api_proxy.up()
        s.api_proxy.down(502)
        time.sleep(minutes * 30)  # its second half: a load balancer answers 502
        s.api_proxy.up()
        outcome.seconds = time.monotonic() - started
        outcome.refused_writes = str(answered(s.api_proxy, "down"))
        judge(s, outcome, refresher.result(timeout=600))
    return outcome


def database_outage(minutes: float) -> Outcome:
    outcome = Outcome("metadata_db", "metadata DB")
    with ExitStack() as stack:
        server = stack.enter_context(PrivatePostgres())
        os.environ["AAC_TEST_PG_URL"] = server.url
        home = stack.enter_context(AirflowHome(backend="postgres"))
        home.migrate()
        with scene(home, "metadata_db") as s:
            answer = s.token_rule().hold_response(timeout=120)
            refresher = s.start("force")
            answer.wait_forwarded(timeout=120)
            started = time.monotonic()
            server.stop(mode="immediate")
            answer.release()
            wait_for(lambda: bool(s.held_on_disk()), what="the new pair to be held in the local spool")
            time.sleep(max(0.0, minutes * 60 - (time.monotonic() - started)))
            server.start()
            outcome.seconds = time.monotonic() - started
            judge(s, outcome, refresher.result(timeout=600))
    return outcome


def database_outage_elsewhere(minutes: float) -> Outcome:
    """In a process of its own: its metadata DB is named by the environment, for that process alone."""
    child = [sys.executable, __file__, "--minutes", str(minutes), "--database-only"]
    done = subprocess.run(child, capture_output=True, text=True, timeout=minutes * 60 + 900, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return Outcome("metadata_db", "metadata DB", result=f"exit {done.returncode}: {done.stderr[-300:]}")
    return Outcome(**json.loads(lines[-1]))


def collect(job: Callable[[], Outcome], outcomes: list[Outcome]) -> None:
    try:
        outcomes.append(job())
    except Exception as err:  # a broken run is a row of the table, not a lost thread
        outcomes.append(Outcome("?", "?", result=f"{type(err).__name__}: {str(err)[:200]}"))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=5.5, help="how long the store stays down")
    parser.add_argument("--database-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.database_only:
        print(json.dumps(asdict(database_outage(args.minutes))))
        return 0
    outcomes: list[Outcome] = []
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        add_lock_connections(home)
        with start_api_server(home) as api:
            jobs = [lambda m=m: api_outage(home, api, m, args.minutes) for m in REST_MODES]
            jobs.append(lambda: database_outage_elsewhere(args.minutes))
            runs = [threading.Thread(target=collect, args=(job, outcomes)) for job in jobs]
            for run in runs:
                run.start()
            for run in runs:
                run.join()
    print(
        f"\nA store down for {args.minutes} minutes right after AAC rotated (store_patience: default, 600 s)"
    )
    header = (
        "mode",
        "down",
        "outage",
        "502s",
        "refresh",
        "generation",
        "stored token",
        "refreshes",
        "reuses",
    )
    print("{:<15}{:<13}{:>8}{:>7}  {:<10}{:>11}  {:<14}{:>10}{:>8}".format(*header))
    for o in sorted(outcomes, key=lambda o: o.mode):
        print(
            f"{o.mode:<15}{o.down:<13}{o.seconds:>7.0f}s{o.refused_writes:>7}  {o.result:<10}"
            f"{o.generation!s:>11}  {o.chain:<14}{o.refreshes:>10}{o.reuses:>8}"
        )
    print(
        "\n502s: store writes a load balancer refused in the outage's second half (the first half refused connections)"
    )
    good = all(o.result == "ok" and o.chain == "live" and o.reuses == 0 for o in outcomes)
    return 0 if good and len(outcomes) == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
