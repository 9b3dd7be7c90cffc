"""The provider registers itself with Airflow: connection type, form fields, links, triggers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_aac.compat import AIRFLOW_V_3_2_PLUS
from airflow_provider_aac.core import token_state
from airflow_provider_aac.core.token_state import TokenState
from airflow_provider_aac.get_provider_info import CONN_FIELDS, MAINTAINED_KEYS, get_provider_info
from airflow_provider_aac.tokens.connection import AACConnectionConfig, RefreshMode
from tests.support.airflow_env import AirflowHome


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
    assert behaviour["relabeling"]["host"] == "API base URL (required)"
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


def test_the_provider_info_is_valid_by_airflows_own_schema() -> None:
    """The schema Airflow's providers manager validates against, from the installed Airflow."""
    import airflow
    import jsonschema

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    deprecated = {key for key, spec in schema["properties"].items() if "deprecated" in spec}
    assert not deprecated & set(info), f"deprecated keys: {deprecated & set(info)}"


def test_every_module_list_names_a_declared_integration_and_exists() -> None:
    import importlib

    info = get_provider_info()
    declared = {entry["integration-name"] for entry in info["integrations"]}
    assert all(entry["external-doc-url"].startswith("https://") for entry in info["integrations"])
    for section in ("operators", "sensors", "hooks", "triggers"):
        for entry in info[section]:
            assert entry["integration-name"] in declared, section
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_the_form_hides_exactly_the_keys_the_provider_maintains() -> None:
    assert MAINTAINED_KEYS == token_state.MAINTAINED_KEYS
    for key in MAINTAINED_KEYS:
        # Airflow's form renders a field with a const as a hidden input carrying the stored value.
        assert CONN_FIELDS[key]["schema"].get("const")
    settings = {k: v for k, v in CONN_FIELDS.items() if k not in MAINTAINED_KEYS}
    assert not any(field["schema"].get("const") for field in settings.values())


def test_refresh_mode_offers_the_modes_with_a_labelled_default_and_no_null() -> None:
    schema = CONN_FIELDS["refresh_mode"]["schema"]
    assert schema["enum"] == [mode.value for mode in RefreshMode]
    assert schema["default"] == RefreshMode.AUTO.value
    assert set(schema["values_display"]) == set(schema["enum"])
    assert schema["values_display"]["auto"].startswith("auto (default)")


def test_only_the_tokens_are_required() -> None:
    required = {k for k, v in CONN_FIELDS.items() if "null" not in v["schema"].get("type", ["null"])}
    assert required == {"access_token", "refresh_token"}


def test_an_extra_saved_by_the_form_reads_as_a_fresh_pair() -> None:
    """The form stores every declared key, null when left empty: that is a pasted pair, generation 0."""
    extra = dict.fromkeys(CONN_FIELDS) | {"access_token": "a", "refresh_token": "r", "refresh_mode": "auto"}
    state = TokenState.from_extra(extra, conn_id="aac_form")
    assert (state.generation, state.in_flight, state.dead_chain, state.refreshed_at) == (0, None, None, None)
    config = AACConnectionConfig(conn_id="aac_form", base_url="https://us1.alteryxcloud.com", extra=extra)
    assert config.refresh_mode is RefreshMode.AUTO and config.min_ttl is None and config.lock_conn_id is None
    assert set(state.merged_into(extra)) == set(extra) - set(MAINTAINED_KEYS) | {"generation"}
