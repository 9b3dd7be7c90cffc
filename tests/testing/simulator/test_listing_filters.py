"""The listing filters of AAC API spec v2025.23.2 (listPlans, listFlows, listWrangledDatasets)."""

from __future__ import annotations

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.testing.simulator.helpers import api


@pytest.fixture
def token(aac_simulator: AACSimulator) -> str:
    aac_simulator.add_plan(7, name="daily SALES")
    aac_simulator.add_plan(8, name="Weekly sales report")
    return str(aac_simulator.mint_pair()["access_token"])


def _names(sim: AACSimulator, token: str, path: str, **params: str) -> list[str]:
    answer = api(sim, "GET", path, token, params=params)
    assert answer.status_code == 200, answer.text
    return [row["name"] for row in answer.json()["data"]]


@pytest.mark.parametrize(
    ("filter_type", "expected"),
    [
        ("exact", ["Daily sales"]),
        ("exactIgnoreCase", ["Daily sales", "daily SALES"]),
        ("contains", ["Daily sales", "daily SALES"]),
    ],
)
def test_filter_types(aac_simulator: AACSimulator, token: str, filter_type: str, expected: list[str]) -> None:
    names = _names(
        aac_simulator, token, "/v4/plans", filter="Daily sales", filterFields="name", filterType=filter_type
    )
    assert names == expected


def test_fuzzy_matches_the_characters_in_order(aac_simulator: AACSimulator, token: str) -> None:
    assert _names(aac_simulator, token, "/v4/plans", filter="wkly rpt", filterType="fuzzy") == [
        "Weekly sales report"
    ]


def test_sort_and_ownership(aac_simulator: AACSimulator, token: str) -> None:
    names = _names(aac_simulator, token, "/v4/plans", sort="-name", ownershipFilter="all")
    assert names == sorted(names, reverse=True) and len(names) == 4
    assert _names(aac_simulator, token, "/v4/plans", ownershipFilter="shared") == []
    assert _names(
        aac_simulator, token, "/v4/flows", flowsFilter="owned", filter="Sales flow", filterType="exact"
    ) == ["Sales flow"]
    assert _names(aac_simulator, token, "/v4/wrangledDatasets", filter="Recipe 100", filterType="exact") == [
        "Recipe 100"
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"filter": "x", "filterType": "regex"}, "filterType"),
        ({"ownershipFilter": "mine"}, "ownershipFilter"),
    ],
)
def test_bad_values_answer_400(
    aac_simulator: AACSimulator, token: str, params: dict[str, str], field: str
) -> None:
    answer = api(aac_simulator, "GET", "/v4/plans", token, params=params)
    assert answer.status_code == 400
    assert answer.json()["exception"]["details"]["field"] == field
