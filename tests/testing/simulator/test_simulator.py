"""The simulator front as the pytest fixture sets it up."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator


@pytest.mark.aac_simulator(access_ttl=7, run_duration=0.05)
def test_marker_configures_the_fixture(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    assert aac_simulator.run_duration == 0.05
    assert aac_token_pair["expires_in"] == 7
