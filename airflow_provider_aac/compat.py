"""What differs between Airflow 3.0, 3.1, 3.2 and 3.3, in one place.

Each difference is one small, named function or constant; the rest of the provider
imports from here instead of trying one import path after another itself.
"""

from __future__ import annotations

from typing import Any


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
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability.metrics import stats_utils
    except ImportError:
        return
    if getattr(shared, "_factory", None) is not None:
        return

    sdk_stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
    )


def metrics_legacy_names_on() -> bool:
    """``[metrics] legacy_names_on`` (3.2+; before 3.2 every metric name carried its variables)."""
    try:
        from airflow.sdk.configuration import conf
    except ImportError:
        from airflow.configuration import conf
    return conf.getboolean("metrics", "legacy_names_on", fallback=True)
