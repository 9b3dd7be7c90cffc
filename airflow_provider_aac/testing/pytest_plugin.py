"""pytest fixtures that give each test its own local AAC simulator.

Registered as the ``aac_simulator`` pytest11 entry point, so anyone who installs the
provider gets these fixtures in their own DAG tests. pytest loads this module in every
session, even ones that never use it, so it imports the simulator only when a fixture
is first requested and never imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_provider_aac.testing.simulator import AACSimulator

MARKER = "aac_simulator"

# Short runs keep tests fast; a long access-token lifetime keeps tests that are not about
# expiry from refreshing by accident.
DEFAULT_OPTIONS: dict[str, Any] = {"access_ttl": 300.0, "run_duration": 1.0}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): keyword arguments for the AACSimulator built by the "
        f"{MARKER} fixture, e.g. @pytest.mark.{MARKER}(access_ttl=1, run_duration=0.2)",
    )


def _simulator_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options = dict(DEFAULT_OPTIONS)
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    return options


@pytest.fixture
def aac_simulator(request: pytest.FixtureRequest) -> Iterator[AACSimulator]:
    """A started simulator on a free localhost port, private to the test."""
    from airflow_provider_aac.testing.simulator import AACSimulator

    with AACSimulator(**_simulator_options(request)) as simulator:
        yield simulator


@pytest.fixture
def aac_token_pair(aac_simulator: AACSimulator) -> dict[str, Any]:
    """A fresh token family, as if the user had pressed "Generate" in the AAC UI."""
    return aac_simulator.mint_pair()
