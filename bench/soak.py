"""Soak: rounds in which several processes meet a due refresh together, under random faults.

Question: over thousands of refreshes with faults drawn at random (slow, dripped, refused
and failed token answers; 502s and outages of the api-server during the store; answers
without an access token; SIGTERM and SIGKILL at the claim, in flight and while storing),
does any refresh token get presented twice, and is any pair lost that physics did not
take? Physics takes a pair when AAC rotated and nobody received the answer (an answer
lost in transit, a process killed after AAC answered); each such loss must be diagnosed
by the next refresh's error, which presents the dead token once to find out.

Real parts: a PostgreSQL metadata DB, a real api-server, the simulator behind a fault
proxy, a second proxy in front of the api-server, PostgreSQL and Redis locks, and
``--processes`` long-lived refresher processes (bench/soak_worker.py).

    .venv/bin/python bench/soak.py --rounds 1000 --processes 4
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from airflow_provider_aac.testing.simulator import AACSimulator  # noqa: E402
from bench.long_outage import add_lock_connections  # noqa: E402
from tests.support.airflow_env import AirflowHome, ApiServer, start_api_server  # noqa: E402
from tests.support.fault_proxy import FaultProxy, Rule  # noqa: E402

MODES = ("metadata_db", "lock_postgres", "lock_redis", "single_writer")
REST_MODES = frozenset({"lock_postgres", "lock_redis", "single_writer"})
TOKEN = ("POST", "/as/token")
REFRESH = "grant_type=refresh_token"
LEASE = 6.0
# Faults and how often they are drawn; "physics" ones lose the pair by nature.
FAULTS: dict[str, float] = {
    "none": 30,
    "token_delay": 8,
    "token_drip": 6,
    "token_503": 6,
    "token_429": 6,
    "token_refused": 6,
    "no_access_token": 4,
    "store_502": 8,
    "api_outage": 6,
    "sigterm_in_flight": 4,
    "sigkill_at_claim": 1,
    "sigkill_while_storing": 2,
    "answer_lost": 0.5,
    "sigkill_after_answer": 0.5,
}
PHYSICS = frozenset({"answer_lost", "sigkill_after_answer"})
REST_ONLY = frozenset({"store_502", "api_outage", "sigkill_while_storing"})


class Worker:
    def __init__(self, home: AirflowHome, conn_id: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO / "bench" / "soak_worker.py"), conn_id],
            env=home.env(_AIRFLOW_PROCESS_CONTEXT="server"),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.lines.get(timeout=120)
        assert ready and ready.get("ready"), "a soak worker did not start"

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def result(self, timeout: float = 180.0) -> dict[str, Any] | None:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return {"ok": False, "error_type": "SoakTimeout", "error": "no answer"}

    def kill(self, signum: int = signal.SIGKILL) -> None:
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(30)


@dataclass
class Tally:
    mode: str
    rounds: int = 0
    refreshes: int = 0
    reuses: int = 0
    diagnostic_reuses: int = 0
    lost_physics: int = 0
    lost_other: int = 0
    undiagnosed: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Soak:
    def __init__(
        self, home: AirflowHome, api: ApiServer, sim: AACSimulator, mode: str, processes: int
    ) -> None:
        self.home, self.api, self.sim, self.mode = home, api, sim, mode
        self.token_proxy = FaultProxy(sim.base_url)
        self.api_proxy = FaultProxy(api.base_url)
        self.conn_id = f"aac_soak_{mode}_{uuid.uuid4().hex[:6]}"
        api_conn = f"{self.conn_id}_api"
        home.add_connection(
            api_conn, "http", host=self.api_proxy.base_url, login=api.username, password=api.password
        )
        extra: dict[str, Any] = {
            "token_url": self.token_proxy.base_url + "/as/token",
            "refresh_lease": LEASE,
            "store_patience": 60,
            "publish_wait": 30,
            "trigger_refresh_dag": False,
        }
        if mode == "metadata_db":
            extra["refresh_mode"] = "metadata_db"
        elif mode == "single_writer":
            extra.update(refresh_mode="single_writer", airflow_api_conn_id=api_conn)
        else:
            extra.update(refresh_mode="lock", lock_conn_id=f"soak_{mode}", airflow_api_conn_id=api_conn)
        home.add_aac_connection(self.conn_id, sim, **extra)
        self.workers = [Worker(home, self.conn_id) for _ in range(processes)]
        self.tally = Tally(mode)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.token_proxy.stop()
        self.api_proxy.stop()

    def stored(self) -> dict[str, Any]:
        return self.home.get_connection_extra(self.conn_id)

    def draw(self, rng: random.Random) -> str:
        choices = [f for f in FAULTS if self.mode in REST_MODES or f not in REST_ONLY]
        return rng.choices(choices, weights=[FAULTS[f] for f in choices])[0]

    def round(self, rng: random.Random) -> None:
        fault = self.draw(rng)
        self.tally.faults[fault] += 1
        before = self.stored()
        generation = int(before.get("generation", 0))
        reuses_before = self.sim.stats()["reuses"]
        rule = self._arm(fault)
        for index, worker in enumerate(self.workers):
            writer = self.mode != "single_writer" or index == 0
            worker.send(f"round {generation} {1 if writer else 0}")
        victim = self._strike(fault, rule)
        results = [worker.result() for worker in self.workers]
        self.token_proxy.clear_rules()
        self.api_proxy.clear_rules()
        self.api_proxy.up()
        for index, worker in enumerate(self.workers):
            if worker is victim or worker.process.poll() is not None:
                worker.stop()
                self.workers[index] = Worker(self.home, self.conn_id)
        self.tally.rounds += 1
        reused = self.sim.stats()["reuses"] - reuses_before
        if fault in PHYSICS:  # another process of the round presented the lost pair's token once
            self.tally.diagnostic_reuses += reused
        else:
            self.tally.reuses += reused
        self._judge(fault, generation, results)

    def _arm(self, fault: str) -> Rule | None:
        token = self.token_proxy.on(*TOKEN, body_contains=REFRESH, times=1)
        if fault == "token_delay":
            return token.delay_response(0.5)
        if fault == "token_drip":
            return token.drip(chunk_bytes=64, interval=0.01)
        if fault == "token_503":
            return token.respond(503, {"error": "temporarily_unavailable"})
        if fault == "token_429":
            return token.respond(429, {"error": "slow_down"}, headers={"x-retry-after": "0.2"})
        if fault == "token_refused":
            return token.close_before_forward()
        if fault == "no_access_token":
            return token.strip_json_field("access_token")
        if fault == "answer_lost":
            return token.close_after_forward()
        if fault in ("sigterm_in_flight", "sigkill_after_answer"):
            return token.hold_response(timeout=30)
        if fault == "sigkill_at_claim":
            return token.hold_request(timeout=30)
        if fault == "store_502":
            self.api_proxy.on("PATCH", times=2).respond(502, {"detail": "bad gateway"})
        if fault == "sigkill_while_storing":
            self.api_proxy.on("PATCH", times=1).forward()
            return self.api_proxy.on("PATCH", times=1).hold_request(timeout=30)
        if fault == "api_outage":
            return token.forward()
        return None

    def _strike(self, fault: str, rule: Rule | None) -> Worker | None:
        """Act on the process whose refresh the rule caught; returns it when it was killed."""
        if rule is None or fault in ("token_delay", "token_drip", "token_503", "token_429"):
            return None
        if fault in ("token_refused", "no_access_token", "answer_lost"):
            return None
        if fault == "api_outage":
            rule.wait_seen(timeout=60)
            self.api_proxy.down(503)
            time.sleep(3.0)  # the outage's length
            self.api_proxy.up()
            return None
        rule.wait_seen(timeout=120)
        if fault == "sigkill_after_answer":
            rule.wait_forwarded(timeout=60)
        victim = self._sender()
        if victim is None:
            rule.release()
            return None
        victim.kill(signal.SIGTERM if fault == "sigterm_in_flight" else signal.SIGKILL)
        if fault == "sigkill_at_claim" or fault == "sigkill_while_storing":
            rule.discard()
        else:
            rule.release()
        return victim  # a terminated worker reports, then exits: replaced like a killed one

    def _sender(self) -> Worker | None:
        """The worker whose refresh is in flight: the stored claim names its pid."""
        marker = self.stored().get("refresh_in_flight") or {}
        pid = str(marker.get("by", "")).rsplit(":", 1)[-1]
        return next((w for w in self.workers if str(w.process.pid) == pid), None)

    def _judge(self, fault: str, generation: int, results: list[dict[str, Any] | None]) -> None:
        if fault == "sigkill_while_storing":
            self._refresh_once(generation)  # the next refresh completes the pair the victim held
        stored = self.stored()
        status = self.sim.refresh_token_status(stored["refresh_token"])
        if status == "live":
            if int(stored.get("generation", 0)) > generation:
                self.tally.refreshes += 1
            return
        if fault in PHYSICS:
            self.tally.lost_physics += 1
        else:
            self.tally.lost_other += 1
            errors = [r.get("error_type") for r in results if r]
            self.tally.problems.append(
                f"round {self.tally.rounds} ({fault}): chain {status}, errors {errors}"
            )
        diagnosis = self._diagnosis()
        if diagnosis is not None:
            self.tally.undiagnosed += 1
            self.tally.problems.append(f"round {self.tally.rounds} ({fault}): undiagnosed: {diagnosis}")
        self._reseed()

    def _refresh_once(self, generation: int) -> dict[str, Any]:
        return self.workers[0].send(f"round {generation} 1") or self.workers[0].result() or {}

    def _diagnosis(self) -> str | None:
        """One refresh presents the dead token once; its error must say what happened (None: it does)."""
        reuses = self.sim.stats()["reuses"]
        result = self._refresh_once(int(self.stored().get("generation", 0)))
        self.tally.diagnostic_reuses += self.sim.stats()["reuses"] - reuses
        words = str(result.get("error", ""))
        said = result.get("error_type") == "AACTokenChainBrokenError" and (
            "interrupted" in words or "lost in transit" in words or "not presented again" in words
        )
        return None if said else f"{result.get('error_type')}: {words[:300]}"

    def _reseed(self) -> None:
        """A person generates a new pair in AAC and pastes it, as the error tells them to."""
        pair = self.sim.mint_pair()
        shown = self.api.request_ok("GET", f"/api/v2/connections/{self.conn_id}")
        extra = {
            **json.loads(shown["extra"]),
            "access_token": pair["access_token"],
            "refresh_token": pair["refresh_token"],
        }
        self.api.request_ok(
            "PATCH",
            f"/api/v2/connections/{self.conn_id}",
            json={"connection_id": self.conn_id, "conn_type": "aac", "extra": json.dumps(extra)},
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="stop each mode's rounds after this long (the table says how many ran)",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tallies = []
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        add_lock_connections(home, prefix="soak")
        with start_api_server(home) as api, AACSimulator(access_ttl=300) as sim:
            for mode in args.modes.split(","):
                soak = Soak(home, api, sim, mode, args.processes)
                started = time.monotonic()
                budget = started + args.minutes * 60 if args.minutes else float("inf")
                try:
                    while soak.tally.rounds < args.rounds and time.monotonic() < budget:
                        soak.round(rng)
                        if soak.tally.rounds % 50 == 0:
                            spent = time.monotonic() - started
                            print(
                                f"  {mode}: {soak.tally.rounds} rounds, {spent:.0f} s",
                                file=sys.stderr,
                                flush=True,
                            )
                finally:
                    soak.tally.seconds = time.monotonic() - started
                    soak.close()
                tallies.append(soak.tally)
                print_table([soak.tally])
    if len(tallies) > 1:
        print_table(tallies)
    return 0 if all(t.reuses == 0 and t.lost_other == 0 for t in tallies) else 1


def print_table(tallies: list[Tally]) -> None:
    print(f"\nSoak: {LEASE:.0f} s leases; faults drawn at random each round (weights in bench/soak.py)")
    header = (
        "mode",
        "rounds",
        "refreshes",
        "reuses",
        "diag.",
        "lost:physics",
        "lost:other",
        "undiagnosed",
        "wall",
        "s/round",
    )
    print("{:<14}{:>8}{:>10}{:>8}{:>7}{:>14}{:>12}{:>13}{:>9}{:>9}".format(*header))
    for t in tallies:
        print(
            f"{t.mode:<14}{t.rounds:>8}{t.refreshes:>10}{t.reuses:>8}{t.diagnostic_reuses:>7}"
            f"{t.lost_physics:>14}{t.lost_other:>12}{t.undiagnosed:>13}{t.seconds:>8.0f}s"
            f"{t.seconds / max(t.rounds, 1):>9.1f}"
        )
    print("\nreuses: presentations of a spent token outside the one diagnostic refresh after a physical loss")
    for t in tallies:
        print(f"faults in {t.mode}: " + ", ".join(f"{k} {v}" for k, v in sorted(t.faults.items())))
        for problem in t.problems[:10]:
            print(f"  PROBLEM {problem}")


if __name__ == "__main__":
    sys.exit(main())
