"""The same commands under ``airflow aac`` (the provider info's ``cli`` entry) and ``airflow-aac``."""

from __future__ import annotations

import importlib

from airflow_provider_aac.cli.definition import COMMANDS
from airflow_provider_aac.get_provider_info import get_provider_info
from tests.cli.conftest import ENTRY_POINTS, aac
from tests.support.airflow_env import AirflowHome


def test_the_provider_info_names_a_function_that_gives_airflow_the_aac_group() -> None:
    (dotted,) = get_provider_info()["cli"]
    module, _, name = dotted.rpartition(".")
    (group,) = getattr(importlib.import_module(module), name)()
    assert group.name == "aac"
    assert [command.name for command in group.subcommands] == [command.name for command in COMMANDS]


def test_both_entry_points_offer_every_command_with_the_same_options(
    airflow_sqlite_home: AirflowHome,
) -> None:
    for command in COMMANDS:
        helps = {
            entry: aac(airflow_sqlite_home, command.name, "--help", entry=entry) for entry in ENTRY_POINTS
        }
        for entry, result in helps.items():
            assert result.returncode == 0, (entry, result.stderr[-2000:])
            for option in command.options:
                shown = option.flags[0] if option.flags[0].startswith("-") else option.settings["metavar"]
                assert shown in result.stdout, (entry, command.name, shown)
