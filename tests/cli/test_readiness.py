"""What ``connect`` and ``status`` say about the Airflow API connection's host, without a server.

The connections are ``AIRFLOW_CONN_<ID>`` variables; the rule is the one the refresh
applies before it sends anything (``tests/tokens/test_airflow_api_cleartext.py``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aac.cli.readiness import api_host_refused
from airflow_provider_aac.tokens.connection import AACConnectionConfig

API = "airflow_api_readiness"
ENV = "AIRFLOW_CONN_AIRFLOW_API_READINESS"


def config(**extra: Any) -> AACConnectionConfig:
    return AACConnectionConfig(
        conn_id="aac_readiness",
        base_url="https://us1.alteryxcloud.com",
        extra={"access_token": "a.b.c", "refresh_token": "r" * 20, "airflow_api_conn_id": API, **extra},
    )


def define(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> None:
    monkeypatch.setenv(ENV, json.dumps({"conn_type": "http", "host": host, "extra": extra}))


def test_a_plain_http_api_server_elsewhere_is_reported_with_the_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    define(monkeypatch, "http://airflow-apiserver.invalid:8080")
    refused = api_host_refused(config())
    assert refused is not None
    assert "connection 'airflow_api_readiness'" in refused and "plain http://" in refused
    assert '"allow_insecure_http": true' in refused


def test_the_aac_connections_opt_in_does_not_cover_the_api_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each opt-in vouches for the path to its own host: AAC's is not the api-server's."""
    define(monkeypatch, "http://airflow-apiserver.invalid:8080")
    assert api_host_refused(config(allow_insecure_http=True)) is not None


@pytest.mark.parametrize(
    ("host", "extra"),
    [
        ("http://airflow-apiserver.invalid:8080", {"allow_insecure_http": True}),
        ("https://airflow-apiserver.invalid", {}),
        ("http://127.0.0.1:8080", {}),
    ],
)
def test_an_accepted_host_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, host: str, extra: dict[str, Any]
) -> None:
    define(monkeypatch, host, **extra)
    assert api_host_refused(config()) is None


def test_no_api_connection_named_is_not_this_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert api_host_refused(config(airflow_api_conn_id=None)) is None
