"""``restore CONN_ID``: store a token pair that a refresh received but could not store.

That happens when an api-server or metadata DB outage outlasts the refresh's retries:
the pair is held in the rescue places (the lock backend, this machine's spool). The next
refresh of the connection completes it on its own; this is for doing it now, by hand.
"""

from __future__ import annotations

import argparse

from airflow_provider_aac.cli.output import fail, say
from airflow_provider_aac.errors import AACError


def run(args: argparse.Namespace) -> int:
    from airflow_provider_aac.tokens.manager import TokenManager

    conn_id: str = args.conn_id
    try:
        stored = TokenManager(conn_id).restore()
    except AACError as err:
        return fail("restore", err)
    if stored is None:
        say(
            f"No token pair is held for connection {conn_id!r} (on this machine or in its lock backend) that "
            "replaces its stored refresh token; nothing to restore."
        )
        return 0
    say(f"Stored the held token pair in connection {conn_id!r}: generation {stored.generation}.")
    return 0
