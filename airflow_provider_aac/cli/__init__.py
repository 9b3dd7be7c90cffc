"""``airflow aac`` and ``airflow-aac``: commands for the people who run the provider.

One set of commands, two ways in: Airflow 3.2+ lists them under ``airflow aac`` (the
provider info's ``cli`` entry); the ``airflow-aac`` console script has the same commands
on every Airflow version. See docs/cli.md.
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The ``airflow-aac`` console script."""
    from airflow_provider_aac.cli.definition import run_console_script

    return run_console_script(argv)
