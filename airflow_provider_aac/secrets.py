"""Registering tokens with Airflow's secrets masker, so no log line can show them."""

from __future__ import annotations


def mask(*values: str | None) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow without the task SDK
        return
    for value in values:
        if value:
            mask_secret(value)
