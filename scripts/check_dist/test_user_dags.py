"""A user's own test: the provider's pytest fixtures, found through the installed entry point."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aac.hooks.aac import AACHook


def test_my_hook_call_reaches_the_simulator(
    aac_simulator: Any, aac_token_pair: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = {
        "conn_type": "aac",
        "host": aac_simulator.base_url,
        "extra": {
            "access_token": aac_token_pair["access_token"],
            "refresh_token": aac_token_pair["refresh_token"],
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AAC_DEFAULT", json.dumps(connection))
    assert AACHook("aac_default").request("GET", "/v4/people/current").data["id"] == 1
    assert aac_simulator.stats()["api_authorized"] == 1
