"""``refresh CONN_ID [--force]``: one refresh, through the same path every process takes.

The CLI has the metadata DB, so it refreshes as the api-server would: through the locked
connection row (and the connection's lock, if it names one). In single-writer mode it
never spends the refresh token either: it asks the refresh DAG for a run, as a task
would, and waits for the new pair; without an Airflow API connection to ask through, it
refuses and prints the ``airflow dags trigger`` command that does the same.
"""

from __future__ import annotations

import argparse
import json
import time

from airflow_provider_aac.cli.output import duration, fail, say, when
from airflow_provider_aac.compat import AAC_CLI
from airflow_provider_aac.errors import AACError, AACTokenChainBrokenError
from airflow_provider_aac.tokens.connection import RefreshMode
from airflow_provider_aac.tokens.publication import FORCE_GENERATION_CONF


def run(args: argparse.Namespace) -> int:
    from airflow_provider_aac.tokens.manager import TokenManager

    conn_id: str = args.conn_id
    try:
        manager = TokenManager(conn_id)
        config, state = manager.read()
        mode = manager.mode(config)
        conf = json.dumps({FORCE_GENERATION_CONF: state.generation}) if args.force else "{}"
        trigger = f"airflow dags trigger {config.refresh_dag_id} --conf '{conf}'"
        if mode is RefreshMode.SINGLE_WRITER:
            if not config.airflow_api_conn_id:
                return fail(
                    "refresh",
                    f"Connection {conn_id!r} is in single-writer mode: only the refresh DAG "
                    f"{config.refresh_dag_id!r} may spend its refresh token, and the connection names no "
                    f"'airflow_api_conn_id' to ask it through. Ask it yourself: {trigger}",
                )
            say(
                f"Single-writer mode: asking the refresh DAG {config.refresh_dag_id!r} for a refresh and "
                "waiting for it to publish the new pair."
            )
        outcome = manager.refresh(force=args.force)
    except AACTokenChainBrokenError as err:
        return fail("refresh", f"{err} With the new pair, the shortest way is: {AAC_CLI} connect {conn_id}")
    except AACError as err:
        return fail("refresh", err)
    left = None if outcome.access_expires_at is None else outcome.access_expires_at - time.time()
    if outcome.refreshed:
        say(
            f"Refreshed connection {conn_id!r} in {outcome.mode} mode: generation {state.generation} -> "
            f"{outcome.generation}; the access token is valid until {when(outcome.access_expires_at)} "
            f"({duration(left)})."
        )
        return 0
    if args.force:
        return fail(
            "refresh",
            f"The refresh DAG {config.refresh_dag_id!r} published no new pair for connection {conn_id!r} in "
            f"time (still generation {outcome.generation}). Check that it is unpaused and its pool has a free "
            f"slot, then run: {trigger}",
        )
    say(
        f"No refresh needed: the access token of connection {conn_id!r} has {duration(left)} left "
        f"(generation {outcome.generation}). Pass --force to refresh anyway."
    )
    return 0
