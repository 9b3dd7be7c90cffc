"""The token endpoint's request checks: client ids, grant types and form posts."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.testing.simulator.helpers import TIMEOUT, refresh


def test_wrong_or_missing_client_id_is_invalid_client_and_spends_nothing(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    other_client = aac_simulator.mint_pair(client_id="another-client")
    wrong = refresh(aac_simulator, aac_token_pair["refresh_token"], client_id="another-client")
    missing = requests.post(
        aac_simulator.token_url,
        data={"grant_type": "refresh_token", "refresh_token": aac_token_pair["refresh_token"]},
        timeout=TIMEOUT,
    )
    unknown = refresh(aac_simulator, other_client["refresh_token"], client_id="nobody")

    for response in (wrong, missing, unknown):
        assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert refresh(aac_simulator, aac_token_pair["refresh_token"]).status_code == 200
    assert aac_simulator.stats()["invalid_client"] == 3


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"refresh_token": "x", "client_id": "aac-sim-client"}, "invalid_request"),
        (
            {"grant_type": "password", "refresh_token": "x", "client_id": "aac-sim-client"},
            "unsupported_grant_type",
        ),
        ({"grant_type": "refresh_token", "client_id": "aac-sim-client"}, "invalid_request"),
    ],
)
def test_malformed_token_requests(aac_simulator: AACSimulator, form: dict[str, str], error: str) -> None:
    response = requests.post(aac_simulator.token_url, data=form, timeout=TIMEOUT)

    assert (response.status_code, response.json()["error"]) == (400, error)


def test_token_endpoint_wants_a_form_post(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    as_json = requests.post(
        aac_simulator.token_url,
        json={"grant_type": "refresh_token", "refresh_token": aac_token_pair["refresh_token"]},
        timeout=TIMEOUT,
    )
    as_get = requests.get(aac_simulator.token_url, timeout=TIMEOUT)

    assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
    assert as_get.status_code == 405
    assert aac_simulator.stats()["refreshes"] == 0
