"""HTTP helpers the simulator's tests share (none of them compares or prints tokens)."""

from __future__ import annotations

import time
from typing import Any, TypeVar

import requests

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.processes import poll_until

T = TypeVar("T")
TIMEOUT = 5.0
TERMINAL = ("Complete", "Failed", "Canceled")


def refresh(sim: AACSimulator, refresh_token: str, client_id: str | None = None) -> requests.Response:
    data = {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id or sim.client_id,
    }
    return requests.post(sim.token_url, data=data, timeout=TIMEOUT)


def api(sim: AACSimulator, method: str, path: str, access_token: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {access_token}", **kwargs.pop("headers", {})}
    return requests.request(method, sim.base_url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def exception_name(response: requests.Response) -> str:
    name: str = response.json()["exception"]["name"]
    return name


def final_status(sim: AACSimulator, path: str, token: str) -> dict[str, Any]:
    def terminal() -> dict[str, Any] | None:
        body: dict[str, Any] = api(sim, "GET", path, token).json()
        return body if body["status"] in TERMINAL else None

    return poll_until(terminal, timeout=TIMEOUT, interval=0.02, what=f"{path} to end")
