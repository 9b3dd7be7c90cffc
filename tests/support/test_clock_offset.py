"""A clock offset injected from outside shifts a subprocess's wall clock, and nothing else.

The fault suite runs real processes with wrong clocks; if the injection also broke
sleeping, waiting, or the database and HTTP clients, every clock test would fail for the
wrong reason. Python >= 3.11 is the interesting case (see clock_offset's docstring).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.clock_offset import clock_offset_env, faketime_unavailable_reason, require_faketime
from tests.support.private_services import PrivatePostgres, PrivateRedis

_CLOCK_PROBE = textwrap.dedent(
    """
    import asyncio, datetime, json, sys, threading, time
    import psycopg2, redis, requests
    out = {"time": time.time(), "now": datetime.datetime.now(datetime.timezone.utc).timestamp(),
           "monotonic": time.monotonic()}
    started = time.monotonic(); time.sleep(0.05); out["sleep"] = time.monotonic() - started
    started = time.monotonic(); threading.Event().wait(0.05); out["event_wait"] = time.monotonic() - started
    asyncio.run(asyncio.sleep(0.01))
    conn = psycopg2.connect(sys.argv[1], connect_timeout=5)
    with conn.cursor() as cur:
        cur.execute("SELECT extract(epoch FROM now())")
        out["pg_now"] = float(cur.fetchone()[0])
    out["redis"] = redis.Redis.from_url(sys.argv[2], socket_timeout=5).ping()
    out["http"] = requests.get(sys.argv[3], timeout=5).status_code
    print(json.dumps(out))
    """
)


@pytest.mark.parametrize("offset", [30.0, -45.5])
def test_clock_offset_shifts_wall_time_only(
    offset: float, private_postgres: PrivatePostgres, private_redis: PrivateRedis
) -> None:
    require_faketime()
    with AACSimulator() as sim:
        wall, mono = time.time(), time.monotonic()
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _CLOCK_PROBE,
                private_postgres.url,
                private_redis.url,
                f"{sim.base_url}/_sim/stats",
            ],
            env={**os.environ, **clock_offset_env(offset)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["time"] - wall == pytest.approx(offset, abs=3)
    assert out["now"] - wall == pytest.approx(offset, abs=3)
    assert out["monotonic"] - mono == pytest.approx(0, abs=3)  # same clock as ours: not faked
    assert out["pg_now"] - wall == pytest.approx(0, abs=3)  # the server's clock is untouched
    assert 0.04 < out["sleep"] < 1 and 0.04 < out["event_wait"] < 1
    assert (out["redis"], out["http"]) == (True, 200)


def test_children_inherit_the_offset() -> None:
    require_faketime()
    code = "import subprocess, sys; print(subprocess.check_output([sys.executable, '-c', 'import time; print(time.time())']).decode())"
    wall = time.time()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **clock_offset_env(120)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert float(out.stdout) - wall == pytest.approx(120, abs=5), out.stderr


def test_unavailable_reason_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("AAC_TEST_LIBFAKETIME", "/nonexistent/libfaketime.so.1")
    reason = faketime_unavailable_reason()
    assert reason is not None and "apt-get install" in reason
    with pytest.raises(RuntimeError, match="libfaketime is not installed"):
        clock_offset_env(5)
