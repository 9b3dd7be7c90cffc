"""What Airflow's providers manager learns about this package (the entry point's target)."""

from __future__ import annotations

from typing import Any

from airflow_provider_aac import __version__

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "password"],
    "relabeling": {"host": "API base URL"},
    "placeholders": {
        "host": "https://us1.alteryxcloud.com",
        "access_token": "the access token from AAC (Preferences > OAuth 2.0 API Tokens)",
        "refresh_token": "the refresh token generated with it",
        "client_id": "optional: read from the access token",
        "token_url": "optional: the access token's issuer + /token",
        "lock_conn_id": "optional: a postgres or redis connection id",
        "airflow_api_conn_id": "optional: an http connection to Airflow's api-server",
    },
}


def _text_field(label: str, description: str, *, secret: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


CONN_FIELDS: dict[str, Any] = {
    "access_token": _text_field("Access token", "The access token (a JWT) generated in AAC.", secret=True),
    "refresh_token": _text_field(
        "Refresh token", "The refresh token generated with it. It rotates on every refresh.", secret=True
    ),
    "client_id": _text_field("Client ID", "Optional. Default: the access token's client_id claim."),
    "token_url": _text_field("Token URL", "Optional. Default: the access token's iss claim + '/token'."),
    "lock_conn_id": _text_field(
        "Lock connection ID", "Optional. A postgres or redis connection that guards refreshes on workers."
    ),
    "airflow_api_conn_id": _text_field(
        "Airflow API connection ID",
        "Optional. An http connection to this Airflow's api-server, used by workers to store rotated tokens.",
    ),
    "min_ttl": {
        "label": "Minimum token life (s)",
        "description": "Optional. Refresh when the access token has fewer seconds left (default 300, "
        "never more than half its lifetime).",
        "schema": {"type": ["number", "null"]},
    },
    "refresh_expires_at": _text_field(
        "Refresh token deadline",
        "Optional. The date the refresh token expires (you chose 1 to 365 days in AAC), e.g. 2027-05-31; "
        "the refresh DAG warns, then fails, before it.",
    ),
    "refresh_dag_id": _text_field(
        "Refresh DAG ID", "Optional. Single-writer mode: the DAG that refreshes (default aac_token_refresh)."
    ),
    "publish_wait": {
        "label": "Wait for refresh DAG (s)",
        "description": "Optional. Single-writer mode: how long a task waits for a fresh token (default 120).",
        "schema": {"type": ["number", "null"]},
    },
    "refresh_mode": {
        "label": "Refresh mode",
        "description": "auto (default), metadata_db, lock or single_writer.",
        "schema": {
            "type": ["string", "null"],
            "enum": ["auto", "metadata_db", "lock", "single_writer", None],
        },
    },
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-aac",
        "name": "Alteryx Analytics Cloud",
        "description": "Run Alteryx Analytics Cloud plans, flows and jobs, with rotating OAuth 2.0 tokens.",
        "versions": [__version__],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_aac.hooks.aac.AACHook",
                "hook-name": "Alteryx Analytics Cloud",
                "connection-type": "aac",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "hook-class-names": ["airflow_provider_aac.hooks.aac.AACHook"],
        "extra-links": ["airflow_provider_aac.links.aac.AACRunLink"],
        "triggers": [
            {
                "integration-name": "Alteryx Analytics Cloud",
                "python-modules": ["airflow_provider_aac.triggers.aac"],
            }
        ],
        # `airflow aac ...` on Airflow 3.2+; earlier versions ignore the key (use `airflow-aac`).
        "cli": ["airflow_provider_aac.cli.definition.get_cli_commands"],
    }
