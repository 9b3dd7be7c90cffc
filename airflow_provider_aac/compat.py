"""Every difference between the Airflow 3 releases the provider supports, in one place.

The provider runs on Airflow 3.0 to 3.3. Names moved into the Task SDK release by
release, connection forms became declarative in 3.2 (``conn-fields`` in the provider
info), and 3.3 added the task state store and a triggerer that calls ``on_kill`` only
when a user stops the task. The rest of the package takes these from here, never with
a ``try``/``except ImportError`` of its own, so dropping a release means deleting its
lines in this module. One difference needs no switch and lives where it is handled: before
3.2 the triggerer serves a connection read only to a thread asgiref started, so token work
always runs through asgiref (``tokens/token_cache.py``).

Moved names load on first use (PEP 562): importing one costs only its own module.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow import __version__ as _airflow_version
from packaging.version import Version

if TYPE_CHECKING:
    from airflow.sdk import BaseHook
    from airflow.sdk.configuration import conf
    from airflow.sdk.crypto import get_fernet
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout
    from airflow.sdk.execution_time.xcom import XCom

__all__ = [
    "AIRFLOW_V_3_1_PLUS",
    "AIRFLOW_V_3_2_PLUS",
    "AIRFLOW_V_3_3_PLUS",
    "DECLARATIVE_CONNECTION_FORM",
    "TRIGGERER_CALLS_ON_KILL",
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "BaseHook",
    "XCom",
    "airflow_stats",
    "conf",
    "connection_form_widgets",
    "connection_tested_as",
    "get_fernet",
    "metrics_legacy_names_on",
    "task_state_store",
    "ui_field_behaviour",
]

AIRFLOW_VERSION = Version(Version(_airflow_version).base_version)
AIRFLOW_V_3_1_PLUS = Version("3.1.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_2_PLUS = Version("3.2.0") <= AIRFLOW_VERSION
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= AIRFLOW_VERSION

#: From 3.2 the UI reads ``conn-fields`` from the provider info; before, it asks the hook.
DECLARATIVE_CONNECTION_FORM = AIRFLOW_V_3_2_PLUS
#: From 3.3 the triggerer calls ``on_kill`` only for a user's stop, not for a triggerer restart.
TRIGGERER_CALLS_ON_KILL = AIRFLOW_V_3_3_PLUS
#: The provider's commands as fix texts name them: ``airflow aac`` from 3.2 (the provider info's
#: ``cli`` entry); before, only the ``airflow-aac`` script that pip installs.
AAC_CLI = "airflow aac" if AIRFLOW_V_3_2_PLUS else "airflow-aac"

# Where each moved name lives, the newest home first.
_HOMES: dict[str, tuple[str, ...]] = {
    "BaseHook": ("airflow.sdk", "airflow.hooks.base"),  # the SDK from 3.1
    "AirflowException": ("airflow.sdk.exceptions", "airflow.exceptions"),  # 3.1
    "AirflowFailException": ("airflow.sdk.exceptions", "airflow.exceptions"),  # 3.1
    "AirflowSensorTimeout": ("airflow.sdk.exceptions", "airflow.exceptions"),  # 3.2
    "conf": ("airflow.sdk.configuration", "airflow.configuration"),  # 3.2
    "get_fernet": ("airflow.sdk.crypto", "airflow.models.crypto"),  # 3.2
    "XCom": ("airflow.sdk.execution_time.xcom", "airflow.models.xcom"),  # 3.0.1
}


def __getattr__(name: str) -> Any:
    homes = _HOMES.get(name)
    if homes is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for home in homes:
        try:
            module = importlib.import_module(home)
        except ImportError:
            continue
        if hasattr(module, name):
            value = getattr(module, name)
            globals()[name] = value
            return value
    raise ImportError(
        f"{name} is in none of {', '.join(homes)}; airflow-provider-aac needs Airflow 3.0 or later."
    )


def task_state_store(context: Mapping[str, Any]) -> Any | None:
    """Airflow 3.3+: the task's own state store, which Airflow expires; None before 3.3."""
    return context.get("task_state_store")


def connection_form_widgets(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Before 3.2: the ``conn-fields`` declaration as the WTForms fields the UI asks the hook for.

    Airflow's api-server swaps WTForms for stand-ins that turn each field back into a
    schema, so the form matches the one 3.2+ builds from ``conn-fields`` directly.
    """
    from wtforms import IntegerField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for name, field in fields.items():
        schema = field.get("schema", {})
        if "const" in schema:
            continue  # the provider's bookkeeping: 3.2+ keep it hidden; older forms leave it in the extra
        kinds = schema.get("type", "string")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        validators: list[Any] = [Optional()] if "null" in kinds else []
        choices = [choice for choice in schema.get("enum", []) if choice is not None]
        if choices:
            validators.append(any_of(choices))
        if "number" in kinds or "integer" in kinds:
            field_class: Any = IntegerField
        elif schema.get("format") == "password":
            field_class = PasswordField
        else:
            field_class = StringField
        widgets[name] = field_class(
            field.get("label", name),
            validators=validators,
            description=field.get("description", ""),
            default=schema.get("default"),
        )
    return widgets


def ui_field_behaviour(behaviour: Mapping[str, Any]) -> dict[str, Any]:
    """Before 3.2: the provider info's ``ui-field-behaviour`` in the hook method's spelling."""
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


# Airflow's REST test (POST /api/v2/connections/test) runs the hook on a copy of the
# connection stored under a random id; the route's locals hold both ids.
_REST_TEST_MODULE = "airflow.api_fastapi.core_api.routes.public.connections"
_REST_TEST_FRAME_DEPTH = 40


def connection_tested_as(conn_id: str) -> str | None:
    """The user's connection id when ``conn_id`` is the temporary copy of Airflow's REST test.

    None anywhere else, including Airflow versions whose test route keeps other names.
    """
    frame = sys._getframe(1)
    for _ in range(_REST_TEST_FRAME_DEPTH):
        if frame.f_back is None:
            return None
        frame = frame.f_back
        if frame.f_globals.get("__name__") != _REST_TEST_MODULE:
            continue
        body = frame.f_locals.get("test_body")
        tested = getattr(body, "connection_id", None)
        if frame.f_locals.get("transient_conn_id") == conn_id and isinstance(tested, str):
            return tested
    return None


def airflow_stats() -> Any:
    """Airflow's own ``Stats``, sending wherever ``[metrics]`` says (StatsD, Datadog, OpenTelemetry).

    Airflow 3.3 has two ``Stats``: the core's, which its components configure at start, and
    the Task SDK's (``airflow.sdk.observability.stats``), the one for provider code, which a
    task's runner configures and ``airflow.sdk`` configures when its serializers load. Should
    nothing in this process have configured it yet, it is configured here, from ``[metrics]``,
    as the task runner does, rather than dropping what is sent. 3.2 has
    ``airflow.observability.stats``; 3.0 and 3.1 have ``airflow.stats``, which configures
    itself from ``[metrics]`` on first use.
    """
    try:
        from airflow.sdk.observability import stats as sdk_stats
    except ImportError:
        pass
    else:
        _configure_sdk_stats(sdk_stats)
        return sdk_stats.Stats
    import importlib

    try:
        return importlib.import_module("airflow.observability.stats").Stats
    except ImportError:
        return importlib.import_module("airflow.stats").Stats


def _configure_sdk_stats(sdk_stats: Any) -> None:
    try:
        from airflow.sdk._shared.observability.metrics import stats as shared
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:
        return
    conf = __getattr__("conf")
    if getattr(shared, "_factory", None) is not None:
        return

    sdk_stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
    )


def metrics_legacy_names_on() -> bool:
    """``[metrics] legacy_names_on`` (3.2+; before 3.2 every metric name carried its variables)."""
    return __getattr__("conf").getboolean("metrics", "legacy_names_on", fallback=True)
