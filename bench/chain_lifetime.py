"""A month in the life of one token chain: 5-minute access tokens, busy weekdays, idle weekends.

Question: over 30 days of the traffic a deployment sees, does the chain stay alive, and
how many refreshes does it take? Time is compressed: the simulator and the provider share
a virtual clock that the calls move forward, so a month runs in about a minute, while every
refresh is a real HTTP exchange with the simulator and a real transaction on a PostgreSQL
metadata DB (metadata-DB mode, in the process that makes the calls).

Traffic: weekdays 07:00-19:00, a burst of calls every few minutes; nights quiet but for a
call an hour; weekends idle but for two calls a day. The refresh token lives 31 days
from "Generate" (AAC's deadline is fixed or sliding; the simulator's is fixed here).

    .venv/bin/python bench/chain_lifetime.py --days 30
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.airflow_env import AirflowHome  # noqa: E402

SCRIPT = textwrap.dedent(
    """
    import json, random, sys, time
    from airflow_provider_aac.hooks.aac import AACHook
    from airflow_provider_aac.testing.simulator import AACSimulator
    from airflow_provider_aac.tokens.manager import TokenManager

    days, conn_id = ARGS
    start = 1_780_272_000.0  # Monday 2026-06-01, 00:00 UTC: in the past, as JWT libraries want iat
    now = [start]
    clock = lambda: now[0]
    def sleep(seconds):
        now[0] += seconds
    rng = random.Random(30)
    with AACSimulator(access_ttl=300, refresh_ttl=31 * 86400, clock=clock) as sim:
        pair = sim.mint_pair()
        from airflow.models.connection import Connection
        from airflow.utils.session import create_session
        with create_session() as session:
            conn = session.query(Connection).filter(Connection.conn_id == conn_id).one()
            conn.host = sim.base_url
            conn.set_extra(json.dumps({"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}))
        hook = AACHook(conn_id)
        hook.tokens = TokenManager(conn_id, clock=clock, sleep=sleep)
        calls = failed = 0
        first_error = None
        started = time.monotonic()
        end = start + days * 86400
        while now[0] < end:
            day, hour = divmod((now[0] - start) % (7 * 86400), 86400)
            weekday, hour = day < 5, hour / 3600
            if weekday and 7 <= hour < 19:
                burst, gap = rng.randint(1, 6), rng.uniform(60, 600)
            elif weekday:
                burst, gap = 1, 3600
            else:
                burst, gap = 1, 43200
            for _ in range(burst):
                calls += 1
                try:
                    hook.request("GET", "/v4/people/current")
                except Exception as err:
                    failed += 1
                    first_error = first_error or f"{type(err).__name__}: {err}"[:400]
            now[0] += gap
        stats = sim.stats()
        stored = hook.tokens.read()[1]
        alive = sim.refresh_token_status(stored.refresh_token) == "live"
        print("RESULT " + json.dumps({
            "days": days, "calls": calls, "failed": failed, "refreshes": stats["refreshes"],
            "reuses": stats["reuses"], "invalid_grant": stats["invalid_grant"], "generation": stored.generation,
            "alive": alive, "seconds": round(time.monotonic() - started, 1), "first_error": first_error,
        }))
    """
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        home.add_connection(
            "aac_month", "aac", host="http://127.0.0.1:1", extra={"access_token": "x", "refresh_token": "y"}
        )
        result = home.run_python(
            SCRIPT.replace("ARGS", f"{args.days!r}, 'aac_month'"),
            env={"_AIRFLOW_PROCESS_CONTEXT": "server"},
            timeout=3600,
        )
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    print("\nA month of one chain: 5-minute access tokens, weekday bursts, idle nights and weekends")
    print(
        f"{'days':>5}{'calls':>8}{'failed':>8}{'refreshes':>11}{'reuses':>8}{'invalid_grant':>15}{'alive':>7}{'wall':>8}"
    )
    print(
        f"{out['days']:>5}{out['calls']:>8}{out['failed']:>8}{out['refreshes']:>11}{out['reuses']:>8}"
        f"{out['invalid_grant']:>15}{out['alive']!s:>7}{out['seconds']:>7}s"
    )
    if out["first_error"]:
        print(f"first failure: {out['first_error']}")
    return 0 if out["alive"] and out["reuses"] == 0 and out["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
