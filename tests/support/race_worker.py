"""Racing OS processes: many AAC calls through one shared ``aac`` connection.

``race()`` starts the processes (this module run as a script, with an Airflow home's
environment as a server process), releases them together once all are ready, and
collects their counts. Each process waits for the start signal (a file appearing) so
that all of them hit the first expiry together, makes its calls through
``AACHook.request`` (threads share nothing but the connection), and prints one JSON line
of counts. Nothing prints a token.
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
from pathlib import Path
from typing import Any

from tests.support.airflow_env import AirflowHome, poll_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def race(
    home: AirflowHome,
    conn_id: str,
    workdir: Path,
    *,
    processes: int,
    calls: int,
    duration: float,
    threads: int = 1,
    before_start: Callable[[], None] = lambda: None,
) -> list[dict[str, Any]]:
    """Run ``processes`` x ``threads`` callers; ``before_start`` runs once all are ready."""
    go = workdir / f"{conn_id}.go"
    command = [
        sys.executable, "-m", "tests.support.race_worker", "--conn-id", conn_id, "--calls", str(calls),
        "--threads", str(threads), "--duration", str(duration), "--go-file", str(go),
    ]  # fmt: skip
    env = home.env(_AIRFLOW_PROCESS_CONTEXT="server")
    workers = [
        subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    try:
        poll_until(
            lambda: len(list(workdir.glob(f"{go.name}.ready.*"))) == processes or None,
            timeout=180,
            interval=0.05,
            what="racing processes to be ready",
        )
        before_start()
        go.touch()
        outputs = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    results = []
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert out.strip(), f"racing process {worker.pid} printed nothing; stderr:\n{err[-3000:]}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def call_span(results: list[dict[str, Any]]) -> float:
    """Seconds between the first and the last call of all racers: what the lifetimes must cover."""
    return float(max(r["last"] for r in results) - min(r["first"] for r in results))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conn-id", required=True)
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration", type=float, default=0.0, help="spread the calls over this many seconds")
    parser.add_argument("--go-file", required=True)
    parser.add_argument("--start-deadline", type=float, default=120.0)
    parser.add_argument("--endpoint", default="/v4/people/current")
    args = parser.parse_args()

    from airflow_provider_aac.hooks.aac import AACHook

    go = Path(args.go_file)
    Path(f"{args.go_file}.ready.{os.getpid()}").touch()
    deadline = time.monotonic() + args.start_deadline
    while not go.exists():
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no start signal"}), flush=True)
            return 2
        time.sleep(0.01)

    results: dict[str, Any] = {
        "ok": 0,
        "failed": 0,
        "errors": [],
        "seconds": 0.0,
        "first": None,
        "last": None,
    }
    lock = threading.Lock()
    started = time.monotonic()

    def caller() -> None:
        hook = AACHook(args.conn_id)
        interval = args.duration / args.calls if args.calls else 0.0
        for index in range(args.calls):
            due = started + index * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            called_at = time.time()
            with lock:
                results["first"] = min(results["first"] or called_at, called_at)
                results["last"] = max(results["last"] or called_at, called_at)
            try:
                hook.request("GET", args.endpoint)
            except Exception as err:  # the test reports every failure
                with lock:
                    results["failed"] += 1
                    results["errors"].append(f"{type(err).__name__}: {err}"[:500])
            else:
                with lock:
                    results["ok"] += 1

    threads = [threading.Thread(target=caller) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results["seconds"] = time.monotonic() - started
    print(json.dumps(results), flush=True)
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
