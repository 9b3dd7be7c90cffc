"""One refresh (or a few calls) in a process of its own, for the fault tests to pause and kill.

Run as ``python -m tests.faults.refresher CONN_ID ACTION`` in an Airflow home's environment.
It prints one JSON line (``RESULT {...}``) with what a user would see: whether it worked,
the error's type and words, and the stored generation. It never prints a token.

A SIGTERM raises ``Terminated`` here, as Airflow's task runner raised
``AirflowTaskTerminated`` before 3.3 (3.3 calls ``on_kill`` and lets the supervisor
follow with SIGKILL): either way, what matters is what the refresh does before it.

Actions: ``token`` (``get_access_token``), ``force`` (``refresh_tokens(force=True)``),
``writer`` (a forced refresh as the refresh DAG's task makes it, the single writer),
``calls:N`` (N ``request`` calls, each error counted), ``timeout:S`` (``force`` under
Airflow's own ``execution_timeout`` machinery, SIGALRM after S seconds).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from typing import Any


class Terminated(Exception):
    pass


def _terminate(signum: int, frame: object) -> None:
    raise Terminated("SIGTERM")


def main(conn_id: str, action: str) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    from airflow_provider_aac.hooks.aac import AACHook

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("airflow_provider_aac").addHandler(handler)
    logging.getLogger("airflow_provider_aac").setLevel(logging.INFO)

    hook = AACHook(conn_id)
    result: dict[str, Any] = {"ok": False, "error_type": None, "error": None, "errors": []}
    started = time.monotonic()
    try:
        if action == "token":
            hook.get_access_token()
        elif action == "force":
            hook.refresh_tokens(force=True)
        elif action == "writer":
            hook.tokens.refresh(force=True, as_writer=True)
        elif action.startswith("calls:"):
            for _ in range(int(action.split(":", 1)[1])):
                try:
                    hook.request("GET", "/v4/people/current")
                except Exception as err:
                    result["errors"].append(f"{type(err).__name__}: {err}")
        elif action.startswith("timeout:"):
            from airflow.sdk.execution_time.timeout import timeout

            with timeout(int(action.split(":", 1)[1])):
                hook.refresh_tokens(force=True)
        else:
            raise SystemExit(f"unknown action {action!r}")
        result["ok"] = not result["errors"]
    except BaseException as err:  # the test reads what the user would see
        result["error_type"] = type(err).__name__
        result["error"] = str(err)
    result["seconds"] = round(time.monotonic() - started, 3)
    try:
        result["generation"] = hook.tokens.read()[1].generation
    except Exception as err:
        result["generation"] = f"unreadable: {type(err).__name__}"
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
