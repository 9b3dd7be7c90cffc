"""A long-lived refresher for bench/soak.py: one forced refresh per line it reads.

Reads ``round <generation> <writer 0|1>`` from stdin; answers one JSON line per round
with what happened (never a token). ``quit`` ends it. A SIGTERM raises, as Airflow's task
runner did before 3.3; the soak then starts a new worker in its place.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from typing import Any


class Terminated(Exception):
    pass


def _terminate(signum: int, frame: object) -> None:
    raise Terminated("SIGTERM")


def main(conn_id: str) -> int:
    from airflow_provider_aac.hooks.aac import AACHook

    signal.signal(signal.SIGTERM, _terminate)
    hook = AACHook(conn_id)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        generation, writer = int(words[1]), words[2] == "1"
        result: dict[str, Any] = {"ok": False, "error_type": None, "error": None}
        started = time.monotonic()
        try:
            outcome = hook.tokens.refresh(stale_generation=generation, as_writer=writer)
            result.update(ok=True, generation=outcome.generation, refreshed=outcome.refreshed)
        except Terminated:
            result.update(error_type="Terminated")
            print(json.dumps(result), flush=True)
            return 0
        except Exception as err:
            result.update(error_type=type(err).__name__, error=str(err)[:600])
        result["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
