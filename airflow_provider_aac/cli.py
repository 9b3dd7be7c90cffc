"""``airflow-aac``: commands for the people who run the provider.

``restore CONN_ID`` stores a token pair that a refresh received but could not store
(an api-server or metadata DB outage that outlasted its retries). The next refresh of
the connection does the same on its own; this is for doing it now, by hand.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airflow_provider_aac.errors import AACError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow-aac", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    restore = commands.add_parser("restore", help="store a token pair held back by a refresh")
    restore.add_argument("conn_id", help="the aac connection, e.g. aac_default")
    args = parser.parse_args(argv)
    return _restore(args.conn_id)


def _restore(conn_id: str) -> int:
    from airflow_provider_aac.tokens.manager import TokenManager

    try:
        stored = TokenManager(conn_id).restore()
    except AACError as err:
        print(f"airflow-aac restore: {err}", file=sys.stderr)
        return 1
    if stored is None:
        print(
            f"No token pair is held for connection {conn_id!r} (on this machine or in its lock backend) that "
            "replaces its stored refresh token; nothing to restore."
        )
        return 0
    print(f"Stored the held token pair in connection {conn_id!r}: generation {stored.generation}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
