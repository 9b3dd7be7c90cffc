"""AACRunLink: what the "AAC run" button opens, and that Airflow can find it.

The value the UI really reads (``_link_AACRunLink``, stored by the task runner) is
checked in ``tests/operators/test_aac.py::test_dag_end_to_end_xcoms_and_links``.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.get_provider_info import get_provider_info
from airflow_provider_aac.links import aac as links
from airflow_provider_aac.links.aac import AACRunLink
from airflow_provider_aac.operators.aac import AACRunFlowOperator, AACRunJobGroupOperator, AACRunPlanOperator
from airflow_provider_aac.sensors.aac import AACFlowRunSensor, AACJobGroupSensor, AACPlanRunSensor


class _Key:
    dag_id, task_id, run_id, map_index, try_number = "d", "t", "r", -1, 1


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """XComs as the link would read them, keyed by XCom key."""
    values: dict[str, Any] = {}
    seen: list[tuple[Any, str]] = []

    def get_value(*, ti_key: Any, key: str) -> Any:
        seen.append((ti_key, key))
        return values.get(key)

    monkeypatch.setattr(links.XCom, "get_value", get_value)
    values["__seen__"] = seen
    return values


def test_link_opens_the_run_url(stored: dict[str, Any]) -> None:
    stored["run_url"] = "https://us1.alteryxcloud.com/plan-runs/5001"
    op = AACRunPlanOperator(task_id="run", plan_id=1)
    key = _Key()
    assert AACRunLink().get_link(op, ti_key=key) == "https://us1.alteryxcloud.com/plan-runs/5001"  # type: ignore[arg-type]
    assert stored["__seen__"] == [(key, "run_url")]


def test_link_is_empty_before_the_run_started(stored: dict[str, Any]) -> None:
    op = AACRunPlanOperator(task_id="run", plan_id=1)
    assert AACRunLink().get_link(op, ti_key=_Key()) == ""  # type: ignore[arg-type]
    stored["run_url"] = 42
    assert AACRunLink().get_link(op, ti_key=_Key()) == ""  # type: ignore[arg-type]


def test_link_name_and_storage_key() -> None:
    assert AACRunLink().name == "AAC run"
    assert AACRunLink().xcom_key == "_link_AACRunLink"


@pytest.mark.parametrize(
    "cls",
    [
        AACRunPlanOperator,
        AACRunFlowOperator,
        AACRunJobGroupOperator,
        AACPlanRunSensor,
        AACFlowRunSensor,
        AACJobGroupSensor,
    ],
)
def test_every_run_task_carries_the_link(cls: Any) -> None:
    assert any(isinstance(link, AACRunLink) for link in cls.operator_extra_links)


def test_link_and_trigger_are_registered_with_airflow() -> None:
    info = get_provider_info()
    assert info["extra-links"] == ["airflow_provider_aac.links.aac.AACRunLink"]
    modules = [module for entry in info["triggers"] for module in entry["python-modules"]]
    assert modules == ["airflow_provider_aac.triggers.aac"]


def test_providers_manager_finds_the_link() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    manager.initialize_providers_extra_links()
    assert "airflow_provider_aac.links.aac.AACRunLink" in manager.extra_links_class_names
