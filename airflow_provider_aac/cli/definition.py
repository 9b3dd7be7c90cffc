"""The commands, defined once and offered both as ``airflow aac`` and as ``airflow-aac``.

Each command is a function of the parsed arguments that returns its exit status. Airflow
imports this module for every ``airflow`` command line, so it imports nothing heavy: the
command modules load only when their command runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.cli.cli_config import CLICommand

GROUP_HELP = (
    "Alteryx Analytics Cloud: connect a token pair, check and refresh the token chain, check the tenant's API"
)
CONN_ID_HELP = "the aac connection, e.g. aac_default"


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    runner: str
    options: tuple[Option, ...]

    def run(self, args: argparse.Namespace) -> int:
        module, _, function = self.runner.rpartition(".")
        # Like Airflow's own connection commands: the CLI reads and writes the metadata DB.
        os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "server"
        from airflow_provider_aac.cli.output import logs_to_stderr

        logs_to_stderr()
        result: int = getattr(import_module(module), function)(args)
        return result


CONN_ID = Option(("conn_id",), {"metavar": "CONN_ID", "help": CONN_ID_HELP})
WARN_DAYS = Option(
    ("--warn-days",),
    {"type": float, "default": 14.0, "help": "days before the refresh-token deadline that count as degraded"},
)
FAIL_DAYS = Option(
    ("--fail-days",),
    {"type": float, "default": 3.0, "help": "days before the deadline from which the refresh DAG fails"},
)

COMMANDS = (
    Command(
        "connect",
        "store a token pair generated in AAC and check it, without spending the refresh token",
        "airflow_provider_aac.cli.connect.run",
        (
            CONN_ID,
            Option(("--host",), {"help": "the API base URL, e.g. https://us1.alteryxcloud.com"}),
            Option(("--stdin",), {"action": "store_true", "help": "read the two tokens from standard input"}),
            Option(
                ("--from-file",),
                {"metavar": "PATH", "help": "read the two tokens from a file (JSON, or one token per line)"},
            ),
            Option(
                ("--refresh-expires-at",),
                {"metavar": "DATE", "help": "the refresh token's deadline chosen in AAC, e.g. 2027-05-31"},
            ),
            Option(
                ("--refresh-family-expires-at",),
                {
                    "metavar": "DATE",
                    "help": "the token family's absolute cap, when AAC caps a sliding expiry, e.g. 2027-11-29",
                },
            ),
            Option(("--lock-conn-id",), {"metavar": "ID", "help": "set lock_conn_id in the extra"}),
            Option(
                ("--airflow-api-conn-id",), {"metavar": "ID", "help": "set airflow_api_conn_id in the extra"}
            ),
            Option(
                ("--refresh-mode",),
                {"choices": ["auto", "metadata_db", "lock", "single_writer"], "help": "set refresh_mode"},
            ),
            Option(
                ("--skip-check",),
                {"action": "store_true", "help": "store the pair without calling GET /v4/people/current"},
            ),
        ),
    ),
    Command(
        "status",
        "the token chain of one aac connection, or of all: generation, expiries, markers, verdict",
        "airflow_provider_aac.cli.status.run",
        (
            Option(
                ("conn_id",), {"nargs": "?", "metavar": "CONN_ID", "help": "default: every aac connection"}
            ),
            Option(("--json",), {"action": "store_true", "help": "print JSON instead of a table"}),
            WARN_DAYS,
            FAIL_DAYS,
        ),
    ),
    Command(
        "refresh",
        "refresh once, safely, in the mode the connection uses (only when due, unless --force)",
        "airflow_provider_aac.cli.refresh.run",
        (
            CONN_ID,
            Option(
                ("--force",), {"action": "store_true", "help": "refresh even if the access token is fresh"}
            ),
        ),
    ),
    Command(
        "doctor",
        "check the tenant's API spec (GET /v4/open-api-spec) for everything the provider relies on, "
        "and the token chain as status does; spends no refresh token",
        "airflow_provider_aac.cli.doctor.run",
        (
            CONN_ID,
            Option(("--json",), {"action": "store_true", "help": "print JSON instead of text"}),
            WARN_DAYS,
            FAIL_DAYS,
        ),
    ),
    Command(
        "restore",
        "store a token pair that a refresh received but could not store",
        "airflow_provider_aac.cli.restore.run",
        (CONN_ID,),
    ),
)


def build_parser(prog: str = "airflow-aac") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=GROUP_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        sub = commands.add_parser(command.name, help=command.help, description=command.help)
        for option in command.options:
            sub.add_argument(*option.flags, **option.settings)
        sub.set_defaults(run=command.run)
    return parser


def run_console_script(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


def get_cli_commands() -> list[CLICommand]:
    """``airflow aac ...``: the provider info's ``cli`` entry (Airflow 3.2 and later)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand

    return [
        GroupCommand(
            name="aac",
            help=GROUP_HELP,
            subcommands=[
                ActionCommand(
                    name=command.name,
                    help=command.help,
                    func=_exiting(command),
                    args=[Arg(option.flags, **option.settings) for option in command.options],
                )
                for command in COMMANDS
            ],
        )
    ]


def _exiting(command: Command) -> Callable[[argparse.Namespace], None]:
    """Airflow ignores what a command returns, so the status leaves as the exit code."""

    def run(args: argparse.Namespace) -> None:
        status = command.run(args)
        if status:
            sys.exit(status)

    run.__name__ = command.name
    return run
