"""Waiters behind another process's claim wake when the pair is stored, not at their next look.

Each test runs one holder and one waiter on a real metadata DB, in a fresh interpreter
configured for the home (in-process Airflow must not run inside pytest). The holder
claims, then holds its token request until the waiter is waiting; the waiter looks at the
row only every ``poll_interval``. On PostgreSQL that interval is 30 s, far longer than
the deadline the waiter must finish in: only the stored pair's NOTIFY can release it in
time. Without news (SQLite, or a listening connection that dies) the waiter must still
find the pair by looking. No test measures a duration: the deadlines only bound a hang.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome

WAITER_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from airflow import settings
    from sqlalchemy import text
    from airflow_provider_aac.core.refresh import QUICK_LOOKS_FOR, Refresher
    from airflow_provider_aac.tokens.metadata_db import metadata_db_section
    from airflow_provider_aac.tokens.row_changes import row_changes
    from airflow_provider_aac.transport.token_post import requests_token_transport

    conn_id, poll_interval, cut = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "cut"
    DEADLINE = 15.0
    postgres = settings.engine.dialect.name == "postgresql"


    def section():
        return metadata_db_section(conn_id)


    with section() as store:
        generation = store.read()[0].generation
    sending, release = threading.Event(), threading.Event()
    post = requests_token_transport()


    def held_back(url, form, window):
        sending.set()
        release.wait(DEADLINE)
        return post(url, form, window)


    generations = {}


    def refresh(name, refresher, **kwargs):
        state = refresher.with_lease(section, min_ttl=None, stale_generation=generation, **kwargs)
        generations[name] = state.generation


    def listening_backend():
        with settings.engine.connect() as db:
            return db.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
                )
            ).scalar()


    holder = threading.Thread(target=refresh, args=("holder", Refresher(conn_id, held_back, identity="holder:1")))
    holder.start()
    assert sending.wait(DEADLINE), "the holder never sent"
    with row_changes(conn_id) as news:
        signalled = news.signalled
    waiter = threading.Thread(
        target=refresh,
        args=("waiter", Refresher(conn_id, post, identity="waiter:2", poll_interval=poll_interval)),
        kwargs={"changes": lambda: row_changes(conn_id)},
        daemon=True,
    )
    waiter.start()
    if postgres:
        deadline = time.monotonic() + DEADLINE
        while listening_backend() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        backend = listening_backend()
        if cut and backend is not None:
            with settings.engine.connect() as db:
                db.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
    else:
        backend = None
    time.sleep(QUICK_LOOKS_FOR + 0.5)  # past the first second, where a waiter without news looks often
    release.set()
    waiter.join(DEADLINE)
    holder.join(DEADLINE)
    print("RESULT " + json.dumps({
        "signalled": signalled,
        "listened": backend is not None,
        "released": not waiter.is_alive(),
        "before": generation,
        "generations": generations,
    }))
    """
)


def hold_and_wait(
    home: AirflowHome, conn_id: str, *, poll_interval: float, cut: bool = False
) -> dict[str, Any]:
    """Run the holder and the waiter; returns what the script saw and the token requests AAC answered."""
    with AACSimulator() as sim:
        home.add_aac_connection(conn_id, sim, refresh_mode="metadata_db")
        result = home.run_python(
            f"import sys; sys.argv = ['waiter', {conn_id!r}, '{poll_interval}', {'cut' if cut else 'keep'!r}]\n"
            + WAITER_SCRIPT,
            env={"_AIRFLOW_PROCESS_CONTEXT": "server"},
            check=False,
            timeout=120,
        )
        token_requests = sim.stats()["token_requests"]
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    seen: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    seen["token_requests"] = token_requests
    return seen


def assert_waiter_got_the_holders_pair(seen: dict[str, Any]) -> None:
    assert seen["released"], f"the waiter was still waiting after the pair was stored: {seen}"
    stored = seen["before"] + 1
    assert seen["generations"] == {"holder": stored, "waiter": stored}, seen
    assert seen["token_requests"] == 1, "the waiter must not refresh again"


def test_a_stored_pair_releases_a_waiter_long_before_its_next_look(airflow_pg_home: AirflowHome) -> None:
    seen = hold_and_wait(airflow_pg_home, "aac_row_news", poll_interval=30.0)
    assert seen["signalled"] and seen["listened"], seen
    assert_waiter_got_the_holders_pair(seen)


def test_a_waiter_whose_listening_connection_dies_finds_the_pair_by_looking(
    airflow_pg_home: AirflowHome,
) -> None:
    seen = hold_and_wait(airflow_pg_home, "aac_row_news_cut", poll_interval=0.2, cut=True)
    assert seen["listened"], seen
    assert_waiter_got_the_holders_pair(seen)


def test_without_news_on_sqlite_a_waiter_finds_the_pair_by_looking(airflow_sqlite_home: AirflowHome) -> None:
    seen = hold_and_wait(airflow_sqlite_home, "aac_row_polled", poll_interval=0.2)
    assert not seen["signalled"] and not seen["listened"], seen
    assert_waiter_got_the_holders_pair(seen)


LOOK_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading, time
    from airflow_provider_aac.tokens.metadata_db import metadata_db_look, metadata_db_section

    conn_id = sys.argv[1]
    locked, release = threading.Event(), threading.Event()


    def hold_the_row():
        with metadata_db_section(conn_id):
            locked.set()
            release.wait(30.0)


    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(30.0)
    looked = threading.Event()
    seen = {}

    def look():
        seen["generation"] = metadata_db_look(conn_id).generation
        looked.set()

    threading.Thread(target=look, daemon=True).start()
    returned = looked.wait(10.0)
    release.set()
    holder.join(30.0)
    print("RESULT " + json.dumps({"returned_while_locked": returned, "seen": seen}))
    """
)


def test_a_waiters_look_reads_the_row_while_another_transaction_holds_its_lock(
    airflow_pg_home: AirflowHome,
) -> None:
    """A storm's waiters read the committed pair side by side instead of one lock holder after another."""
    with AACSimulator() as sim:
        airflow_pg_home.add_aac_connection("aac_row_look", sim, refresh_mode="metadata_db")
        result = airflow_pg_home.run_python(
            "import sys; sys.argv = ['look', 'aac_row_look']\n" + LOOK_SCRIPT,
            env={"_AIRFLOW_PROCESS_CONTEXT": "server"},
            check=False,
            timeout=120,
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-3000:]
    seen = json.loads(lines[-1].removeprefix("RESULT "))
    assert seen == {"returned_while_locked": True, "seen": {"generation": 0}}, seen
