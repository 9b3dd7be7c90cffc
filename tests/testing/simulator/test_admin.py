"""The /_sim admin endpoints: stats, minting and reset."""

from __future__ import annotations

import requests

from airflow_provider_aac.testing.simulator import STAT_KEYS, AACSimulator
from tests.testing.simulator.helpers import TIMEOUT, refresh


def test_stats_admin_endpoints_and_reset(aac_simulator: AACSimulator) -> None:
    assert aac_simulator.stats() == dict.fromkeys(STAT_KEYS, 0)
    minted = requests.post(
        f"{aac_simulator.base_url}/_sim/mint", json={"access_ttl": 60}, timeout=TIMEOUT
    ).json()
    assert minted["expires_in"] == 60
    assert refresh(aac_simulator, minted["refresh_token"]).status_code == 200

    over_http = requests.get(f"{aac_simulator.base_url}/_sim/stats", timeout=TIMEOUT).json()
    reset = requests.post(f"{aac_simulator.base_url}/_sim/reset", timeout=TIMEOUT).json()

    assert over_http == {**dict.fromkeys(STAT_KEYS, 0), "refreshes": 1, "token_requests": 1}
    assert reset == dict.fromkeys(STAT_KEYS, 0)
    assert aac_simulator.stats() == dict.fromkeys(STAT_KEYS, 0)
