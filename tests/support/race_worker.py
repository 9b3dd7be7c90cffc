"""One racing OS process: many AAC calls through one shared ``aac`` connection.

Started by the race tests and the benchmark with an Airflow home's environment. It waits
for a start signal (a file appearing) so that all processes hit the first expiry
together, then makes its calls through ``AACHook.request`` (threads share nothing but
the connection), and prints one JSON line of counts. It never prints a token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any


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
