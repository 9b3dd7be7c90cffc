"""The provider registers itself with Airflow: connection type, form fields, links, triggers."""

from __future__ import annotations

import json

import pytest

from airflow_provider_aac.compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_aac.get_provider_info import get_provider_info
from airflow_provider_aac.testing.airflow_env import AirflowHome


def test_airflow_lists_the_provider_and_keeps_the_connection_type(airflow_sqlite_home: AirflowHome) -> None:
    stdout = airflow_sqlite_home.run_cli("providers", "list", "-o", "json").stdout
    # Airflow 3.0 prints its plugins' log lines before the JSON.
    listed = json.loads(next(line for line in stdout.splitlines() if line.startswith("[{")))
    assert any(p["package_name"] == "airflow-provider-aac" for p in listed)
    airflow_sqlite_home.add_connection("aac_registered", "aac", host="https://us1.alteryxcloud.com")
    stored = airflow_sqlite_home.get_connection("aac_registered")
    assert stored is not None and stored.conn_type == "aac"


def test_form_shows_the_tokens_as_secrets_and_the_host_as_the_api_base_url() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    widgets = manager.connection_form_widgets
    assert widgets["extra__aac__access_token"].is_sensitive
    assert widgets["extra__aac__refresh_token"].is_sensitive
    assert not widgets["extra__aac__client_id"].is_sensitive
    behaviour = manager.field_behaviours["aac"]
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["placeholders"]["host"] == "https://us1.alteryxcloud.com"
    assert {"login", "password", "schema", "port"} <= set(behaviour["hidden_fields"])


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS, reason="the Task SDK has its own providers manager from Airflow 3.2"
)
def test_tasks_find_the_hook_through_the_sdk_providers_manager() -> None:
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["aac"]
    assert hook is not None and hook.hook_name == "Alteryx Analytics Cloud"


def test_links_and_triggers_are_importable() -> None:
    import importlib

    info = get_provider_info()
    for dotted in info["extra-links"]:
        module, _, name = dotted.rpartition(".")
        assert hasattr(importlib.import_module(module), name)
    for trigger in info["triggers"]:
        for module in trigger["python-modules"]:
            assert hasattr(importlib.import_module(module), "AACRunTrigger")
