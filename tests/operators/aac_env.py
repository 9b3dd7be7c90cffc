"""In-process helpers for the operator, sensor, trigger and runs tests.

The connection comes from an ``AIRFLOW_CONN_AAC_DEFAULT`` variable holding a pair minted
by the test's own simulator, with a long access-token lifetime: these tests are about
runs, not refreshes, so nothing here may need to spend the refresh token (and with an
environment-variable connection the provider refuses to). Refreshes mid-wait are tested
with a real metadata DB in ``test_aac.py::test_dag_end_to_end_*``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

from airflow_provider_aac.errors import AACError, AACFinalError
from airflow_provider_aac.hooks.aac import AACHook
from airflow_provider_aac.testing.simulator import AACSimulator

T = TypeVar("T")


@pytest.fixture
def aac_conn(monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator) -> AACSimulator:
    """``aac_default`` pointing at the simulator; yields the simulator."""
    pair = aac_simulator.mint_pair(access_ttl=3600)
    conn = {
        "conn_type": "aac",
        "host": aac_simulator.base_url,
        "extra": {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AAC_DEFAULT", json.dumps(conn))
    return aac_simulator


def route_through(monkeypatch: pytest.MonkeyPatch, proxy_url: str) -> None:
    """Point ``aac_default`` (set by ``aac_conn``) at a proxy in front of the simulator, same pair."""
    conn = json.loads(os.environ["AIRFLOW_CONN_AAC_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_AAC_DEFAULT", json.dumps({**conn, "host": proxy_url}))


class MemoryStateStore:
    """Airflow 3.3's task state store accessor (``get``/``set``/``delete``), kept in memory.

    Shared by the tries of one ``FakeTI``, as the real store is shared by a task instance's tries.
    """

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = json.loads(json.dumps(value))  # JSON only, as the real store

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


class FakeTI:
    """The few task-instance attributes the operators and sensors use."""

    def __init__(self, task_id: str = "task", try_number: int = 1) -> None:
        self.dag_id = "aac_tests"
        self.task_id = task_id
        self.run_id = f"manual__{uuid.uuid4()}"
        self.map_index = -1
        self.try_number = try_number
        self.max_tries = 2
        self.xcom: dict[str, Any] = {}
        self.state_store = MemoryStateStore()

    def retry(self) -> None:
        """The next try, as Airflow starts it: XComs cleared, the state store kept."""
        self.try_number += 1
        self.xcom = {}

    def clear(self) -> None:
        """A user clears the task: Airflow raises max_tries and starts a new try."""
        self.max_tries = self.try_number + 2
        self.retry()

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def get_first_reschedule_date(self, context: Any) -> None:
        return None


def context_for(ti: FakeTI | None = None, **extra: Any) -> Any:
    """A minimal task context (typed loosely: a real one is a TypedDict built by the runner)."""
    ti = ti or FakeTI()
    return {"ti": ti, "task_state_store": ti.state_store, **extra}


def start_run(kind: str, target: int) -> int:
    """Start a run the way another system would, for the sensor and trigger tests."""
    hook = AACHook()
    if kind == "plan":
        return int(hook.request("POST", f"/v4/plans/{target}/run").data["planSnapshotRunId"])
    if kind == "flow":
        return int(hook.request("POST", f"/v4/flows/{target}/run").data["flowRunId"])
    return int(hook.request("POST", "/v4/jobGroups", json={"wrangledDataset": {"id": target}}).data["id"])


def status_of(kind: str, run_id: int) -> str:
    from airflow_provider_aac.runs import RunKind, get_status

    return str(get_status(AACHook(), RunKind(kind), run_id).raw)


@contextmanager
def fails_for_good(
    error_type: type[AACError], match: str | None = None
) -> Iterator[pytest.ExceptionInfo[AACFinalError]]:
    """The block ends the task without retries, on an ``error_type`` raised inside (``AACFinalError.error``)."""
    with pytest.raises(AACFinalError, match=match) as caught:
        yield caught
    assert isinstance(caught.value.error, error_type), repr(caught.value.error)
    assert caught.value.__cause__ is caught.value.error
