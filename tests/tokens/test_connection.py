"""The ``aac`` connection as configuration: base URL, type, extra keys and options."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.tokens.connection import (
    AACConnectionConfig,
    RefreshMode,
    base_url_of,
    config_from_connection,
    environment_variable_defining,
    refuse_unwritable,
)

PAIR = {"access_token": "header.payload.signature", "refresh_token": "refresh-" + "r" * 20}


def connection(**fields: Any) -> SimpleNamespace:
    values: dict[str, Any] = {
        "conn_id": "aac_cfg",
        "conn_type": "aac",
        "host": "https://us1.alteryxcloud.com",
        "schema": None,
        "port": None,
        "extra": json.dumps(PAIR),
    }
    values.update(fields)
    return SimpleNamespace(**values)


def config(**extra: Any) -> AACConnectionConfig:
    return AACConnectionConfig(conn_id="aac_cfg", base_url="https://us1.alteryxcloud.com", extra=extra)


# --------------------------------------------------------------------------- base_url_of


@pytest.mark.parametrize(
    ("host", "schema", "port", "expected"),
    [
        ("https://us1.alteryxcloud.com", None, None, "https://us1.alteryxcloud.com"),
        ("https://us1.alteryxcloud.com/", None, None, "https://us1.alteryxcloud.com"),
        ("  https://eu1.alteryxcloud.com  ", None, None, "https://eu1.alteryxcloud.com"),
        ("http://127.0.0.1:8080", None, None, "http://127.0.0.1:8080"),
        # scheme in the schema field (the form's "Schema" box)
        ("au1.alteryxcloud.com", "https", None, "https://au1.alteryxcloud.com"),
        ("127.0.0.1", "http", 8080, "http://127.0.0.1:8080"),
        # a scheme in the host wins over the schema field
        ("https://us1.alteryxcloud.com", "http", None, "https://us1.alteryxcloud.com"),
        # port
        ("https://api.us1.alteryxcloud.com", None, 8443, "https://api.us1.alteryxcloud.com:8443"),
        ("https://h.test:9000", None, 8443, "https://h.test:9000"),
        # a trailing /v4 (users paste endpoint URLs)
        ("https://us1.alteryxcloud.com/v4", None, None, "https://us1.alteryxcloud.com"),
        ("https://us1.alteryxcloud.com/v4/", None, None, "https://us1.alteryxcloud.com"),
        ("https://proxy.test/aac/v4", None, None, "https://proxy.test/aac"),
        ("https://h.test/v4", None, 8443, "https://h.test:8443"),
        # a path that only looks like /v4 is kept
        ("https://h.test/v40", None, None, "https://h.test/v40"),
        ("https://v4.h.test", None, None, "https://v4.h.test"),
    ],
)
def test_base_url_variants(host: str, schema: str | None, port: int | None, expected: str) -> None:
    assert base_url_of("aac_cfg", host, schema, port) == expected


@pytest.mark.parametrize("host", [None, "", "   ", "/"])
def test_missing_host_says_what_to_put_there(host: str | None) -> None:
    with pytest.raises(AACConfigError, match=r"'aac_cfg' has no host\. Set it to your AAC API base URL"):
        base_url_of("aac_cfg", host, None, None)


@pytest.mark.parametrize(
    ("host", "schema"),
    [("us1.alteryxcloud.com", None), ("us1.alteryxcloud.com", "postgres"), ("ftp://h.test", None)],
)
def test_host_without_http_scheme_is_a_config_error(host: str, schema: str | None) -> None:
    with pytest.raises(AACConfigError) as info:
        base_url_of("aac_cfg", host, schema, None)
    assert "has no http(s) scheme" in str(info.value)
    assert "https://us1.alteryxcloud.com" in str(info.value)


def test_ipv6_host_with_port_keeps_its_brackets() -> None:
    assert base_url_of("aac_cfg", "http://[::1]", None, 8080) == "http://[::1]:8080"


# --------------------------------------------------------------------------- config_from_connection


def test_config_from_connection_reads_host_and_extra() -> None:
    cfg = config_from_connection(connection(extra=json.dumps({**PAIR, "client_id": "cid"})))
    assert cfg.conn_id == "aac_cfg" and cfg.base_url == "https://us1.alteryxcloud.com"
    assert cfg.text("client_id") == "cid"
    assert cfg.token_state().generation == 0


def test_config_accepts_an_extra_already_parsed() -> None:
    assert config_from_connection(connection(extra=dict(PAIR))).text("refresh_token")


def test_config_from_a_real_airflow_connection() -> None:
    from airflow.sdk import Connection

    conn = Connection(
        conn_id="aac_cfg",
        conn_type="aac",
        host="us1.alteryxcloud.com",
        schema="https",
        extra=json.dumps(PAIR),
    )
    assert config_from_connection(conn).base_url == "https://us1.alteryxcloud.com"


@pytest.mark.parametrize(
    ("host", "schema", "port"),
    [
        ("http://aac.example.com", None, None),
        ("aac.example.com", "http", 8080),
        ("http://10.1.2.3/v4", None, None),
    ],
)
def test_plain_http_to_another_host_is_refused_without_the_opt_in(
    host: str, schema: str | None, port: int | None
) -> None:
    with pytest.raises(
        AACConfigError, match=r"API base URL \(the host\) of connection 'aac_cfg'.*plain http://"
    ):
        config_from_connection(connection(host=host, schema=schema, port=port))
    opted_in = json.dumps({**PAIR, "allow_insecure_http": True})
    assert config_from_connection(connection(host=host, schema=schema, port=port, extra=opted_in)).base_url


def test_plain_http_to_loopback_needs_no_opt_in() -> None:
    assert config_from_connection(connection(host="http://127.0.0.2:9")).base_url == "http://127.0.0.2:9"


@pytest.mark.parametrize("conn_type", ["http", "generic", "", None])
def test_wrong_connection_type(conn_type: str | None) -> None:
    with pytest.raises(AACConfigError) as info:
        config_from_connection(connection(conn_type=conn_type))
    message = str(info.value)
    assert f"Connection 'aac_cfg' has type {conn_type!r}, not 'aac'" in message
    assert "--conn-type aac" in message and "install airflow-provider-aac" in message


@pytest.mark.parametrize(
    ("extra", "match"),
    [("not json", "is not valid JSON"), ("[1, 2]", "must be a JSON object, not list"), ('"x"', "not str")],
)
def test_bad_extra(extra: str, match: str) -> None:
    with pytest.raises(AACConfigError, match=match):
        config_from_connection(connection(extra=extra))


def test_empty_extra_reads_as_no_tokens() -> None:
    cfg = config_from_connection(connection(extra=None))
    assert cfg.extra == {}
    with pytest.raises(AACConfigError, match="has no access_token and no refresh_token"):
        cfg.token_state()


def test_repr_shows_no_extra() -> None:
    text = repr(config_from_connection(connection()))
    assert "refresh-" not in text and "header.payload" not in text
    assert "aac_cfg" in text


# --------------------------------------------------------------------------- prefixed keys


def test_prefixed_keys_from_older_forms_are_read() -> None:
    extra = {
        "extra__aac__access_token": PAIR["access_token"],
        "extra__aac__refresh_token": PAIR["refresh_token"],
        "extra__aac__client_id": "from-prefixed",
        "extra__aac__min_ttl": "60",
    }
    cfg = config_from_connection(connection(extra=json.dumps(extra)))
    assert cfg.text("client_id") == "from-prefixed"
    assert cfg.min_ttl == 60.0
    assert cfg.token_state().refresh_token.startswith("refresh-")


def test_plain_keys_win_over_prefixed_ones_and_empty_prefixed_ones_are_ignored() -> None:
    extra = {
        **PAIR,
        "client_id": "plain",
        "extra__aac__client_id": "prefixed",
        "extra__aac__token_url": "",
        "extra__aac__refresh_mode": None,
    }
    cfg = config_from_connection(connection(extra=json.dumps(extra)))
    assert cfg.text("client_id") == "plain"
    assert cfg.text("token_url") is None
    assert cfg.refresh_mode is RefreshMode.AUTO


def test_other_providers_prefixes_are_not_read() -> None:
    cfg = config_from_connection(connection(extra=json.dumps({**PAIR, "extra__http__client_id": "x"})))
    assert cfg.text("client_id") is None


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("mode", list(RefreshMode))
def test_refresh_modes(mode: RefreshMode) -> None:
    assert config(refresh_mode=mode.value).refresh_mode is mode
    assert config(refresh_mode=f"  {mode.value} ").refresh_mode is mode


def test_refresh_mode_defaults_to_auto() -> None:
    assert config().refresh_mode is RefreshMode.AUTO
    assert config(refresh_mode="").refresh_mode is RefreshMode.AUTO


@pytest.mark.parametrize("raw", ["locking", "AUTO", "metadata-db", "single writer"])
def test_unknown_refresh_mode_lists_the_choices(raw: str) -> None:
    with pytest.raises(AACConfigError) as info:
        config(refresh_mode=raw).refresh_mode  # noqa: B018
    message = str(info.value)
    assert f"refresh_mode {raw!r}" in message
    assert "auto, metadata_db, lock, single_writer" in message


@pytest.mark.parametrize(
    ("raw", "expected"), [(None, None), ("", None), (0, 0.0), ("0", 0.0), (60, 60.0), ("90.5", 90.5)]
)
def test_min_ttl(raw: Any, expected: float | None) -> None:
    extra = {} if raw is None else {"min_ttl": raw}
    assert config(**extra).min_ttl == expected


@pytest.mark.parametrize("raw", ["five minutes", [60], {"s": 60}])
def test_min_ttl_that_is_not_a_number(raw: Any) -> None:
    with pytest.raises(AACConfigError, match="it must be a number of seconds"):
        config(min_ttl=raw).min_ttl  # noqa: B018


@pytest.mark.parametrize("raw", [-1, "-0.5"])
def test_negative_min_ttl(raw: Any) -> None:
    with pytest.raises(AACConfigError, match="use a number of seconds >= 0"):
        config(min_ttl=raw).min_ttl  # noqa: B018


def test_min_ttl_nan_is_rejected() -> None:
    with pytest.raises(AACConfigError):
        config(min_ttl="nan").min_ttl  # noqa: B018


def test_other_options() -> None:
    cfg = config(lock_conn_id=" pg_lock ", airflow_api_conn_id="af_api", refresh_dag_id="")
    assert cfg.lock_conn_id == "pg_lock" and cfg.airflow_api_conn_id == "af_api"
    assert cfg.refresh_dag_id == "aac_token_refresh"


# --------------------------------------------------------------------------- environment variables


def test_connection_from_an_environment_variable_is_refused_for_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AAC_CFG", raising=False)
    assert environment_variable_defining("aac_cfg") is None
    refuse_unwritable("aac_cfg")  # nothing to refuse
    monkeypatch.setenv("AIRFLOW_CONN_AAC_CFG", json.dumps({"conn_type": "aac"}))
    assert environment_variable_defining("aac_cfg") == "AIRFLOW_CONN_AAC_CFG"
    with pytest.raises(AACConfigError) as info:
        refuse_unwritable("aac_cfg")
    message = str(info.value)
    assert "environment variable AIRFLOW_CONN_AAC_CFG" in message
    assert "Nothing was spent" in message
    assert "airflow connections add aac_cfg --conn-type aac" in message
