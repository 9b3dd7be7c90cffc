"""What Airflow's providers manager learns about this package (the entry point's target)."""

from __future__ import annotations

from typing import Any

from airflow_provider_aac import __version__

# Airflow 3 renders placeholders for the standard fields only, and has no way to mark one
# required: the label says so. Examples for the extra fields live in their descriptions.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port", "login", "password"],
    "relabeling": {"host": "API base URL (required)"},
    "placeholders": {"host": "https://us1.alteryxcloud.com"},
}

MAINTAINED_BY_PROVIDER = "Maintained by the provider (kept as stored, not editable)"
# core.token_state.MAINTAINED_KEYS, spelled out: importing it here would make Airflow's
# providers manager import the token machinery (a test keeps the two equal).
MAINTAINED_KEYS = (
    "generation",
    "access_expires_at",
    "access_lifetime",
    "access_fingerprint",
    "refreshed_at",
    "refreshed_by",
    "refreshed_mode",
    "refresh_in_flight",
    "last_interrupted_refresh",
    "dead_chain",
)


def _text_field(
    label: str, description: str, *, secret: bool = False, required: bool = False
) -> dict[str, Any]:
    # A field whose type admits no null is one the form marks required and will not save empty.
    schema: dict[str, Any] = {"type": "string" if required else ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


def _seconds_field(label: str, description: str) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": ["number", "null"], "minimum": 0}}


def _maintained_field(key: str) -> dict[str, Any]:
    """A key the provider writes at each refresh: kept as stored, never shown as a setting.

    Airflow's form renders a field whose schema has a ``const`` as a hidden input that
    carries the stored value, so saving the form keeps the key as it was; the section
    keeps the hidden inputs out of the settings and names whose they are.
    """
    return {
        "label": key,
        "description": MAINTAINED_BY_PROVIDER,
        "schema": {"const": MAINTAINED_BY_PROVIDER, "section": MAINTAINED_BY_PROVIDER},
    }


REFRESH_MODES: dict[str, str] = {
    "auto": "auto (default): chosen per process from the fields above",
    "metadata_db": "metadata_db: a row lock in Airflow's metadata DB",
    "lock": "lock: the postgres or redis lock connection",
    "single_writer": "single_writer: only the refresh DAG refreshes",
}

CONN_FIELDS: dict[str, Any] = {
    "access_token": _text_field(
        "Access token",
        "Required. The access token (a JWT) from AAC: Preferences > OAuth 2.0 API Tokens > Generate.",
        secret=True,
        required=True,
    ),
    "refresh_token": _text_field(
        "Refresh token",
        "Required. The refresh token generated with it. It rotates on every refresh; the provider stores each new one.",
        secret=True,
        required=True,
    ),
    "client_id": _text_field("Client ID", "Optional. Default: the access token's client_id claim."),
    "token_url": _text_field(
        "Token URL",
        "Optional. Default: the access token's iss claim + '/token', "
        "e.g. https://us1.alteryxcloud.com/oauth2/token.",
    ),
    "lock_conn_id": _text_field(
        "Lock connection ID",
        "Optional. A postgres or redis connection that guards refreshes on workers, e.g. aac_lock_pg.",
    ),
    "airflow_api_conn_id": _text_field(
        "Airflow API connection ID",
        "Optional. An http connection to this Airflow's api-server, used by workers to store rotated tokens, "
        "e.g. airflow_api.",
    ),
    "min_ttl": _seconds_field(
        "Minimum token life (s)",
        "Optional. Refresh when the access token has fewer seconds left (default 300, "
        "never more than half its lifetime).",
    ),
    "refresh_expires_at": _text_field(
        "Refresh token deadline",
        "Optional. The date the refresh token expires (you chose 1 to 365 days in AAC), e.g. 2027-05-31; "
        "the refresh DAG warns, then fails, before it.",
    ),
    "refresh_family_expires_at": _text_field(
        "Token family cap",
        "Optional. The date after which no refresh of this pair's family succeeds, however often it "
        "rotated (a sliding expiry's absolute cap), e.g. 2027-11-29; the refresh DAG warns before it.",
    ),
    "refresh_dag_id": _text_field(
        "Refresh DAG ID", "Optional. Single-writer mode: the DAG that refreshes (default aac_token_refresh)."
    ),
    "publish_wait": _seconds_field(
        "Wait for refresh DAG (s)",
        "Optional. Single-writer mode: how long a task waits for a fresh token (default 120).",
    ),
    "refresh_mode": {
        "label": "Refresh mode",
        "description": "How workers share one token pair safely. Leave auto unless the docs say otherwise.",
        "schema": {
            "type": ["string", "null"],
            "enum": list(REFRESH_MODES),
            "values_display": REFRESH_MODES,
            "default": "auto",
        },
    },
    **{key: _maintained_field(key) for key in MAINTAINED_KEYS},
}


INTEGRATION = "Alteryx Analytics Cloud"
DOCS_URL = "https://airflow-provider-aac.readthedocs.io/"


def _modules(*modules: str) -> list[dict[str, Any]]:
    return [
        {"integration-name": INTEGRATION, "python-modules": [f"airflow_provider_aac.{m}" for m in modules]}
    ]


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-aac",
        "name": INTEGRATION,
        "description": "Run Alteryx Analytics Cloud plans, flows and jobs, with rotating OAuth 2.0 tokens.",
        "versions": [__version__],
        "integrations": [
            {"integration-name": INTEGRATION, "external-doc-url": DOCS_URL, "tags": ["service"]}
        ],
        "operators": _modules("operators.aac", "operators.token_health"),
        "sensors": _modules("sensors.aac"),
        "hooks": _modules("hooks.aac"),
        "triggers": _modules("triggers.aac"),
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_aac.hooks.aac.AACHook",
                "hook-name": INTEGRATION,
                "connection-type": "aac",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": ["airflow_provider_aac.links.aac.AACRunLink"],
        # `airflow aac ...` on Airflow 3.2+; earlier versions ignore the key (use `airflow-aac`).
        "cli": ["airflow_provider_aac.cli.definition.get_cli_commands"],
    }
