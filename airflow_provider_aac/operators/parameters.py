"""Checks of the run operators' and sensors' arguments, made when the DAG is parsed where it can be.

A value still to be rendered (a Jinja string, an XComArg) is checked when the task runs.
"""

from __future__ import annotations

import math
import re
from typing import Any

from airflow_provider_aac.errors import AACConfigError


def positive_int(value: Any, name: str) -> int:
    """An AAC id as an int; templates render ``"42"``, which counts."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value) and int(value) > 0:
        return int(value)
    raise AACConfigError(
        f"{name} must be a positive integer AAC id, not {value!r}. Use the number AAC shows for the "
        f"object (e.g. {name}=42), or a template that renders to one."
    )


def positive_seconds(value: Any, name: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf:
        return float(value)
    raise AACConfigError(f"{name} must be a number of seconds greater than 0, not {value!r}.")


def is_templated(value: Any) -> bool:
    """True for what only becomes a value at render time: Jinja strings, XComArgs."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return not isinstance(value, int | float | bool | type(None))


def check_id_or_name(id_value: Any, name: Any, id_field: str, name_field: str) -> None:
    """Exactly one of the two, each valid unless it is a template still to be rendered."""
    if (id_value is None) == (name is None):
        raise AACConfigError(
            f"Give exactly one of {id_field} and {name_field}, not "
            f"{'both' if id_value is not None else 'neither'}: e.g. {id_field}=42 or {name_field}='Daily sales'."
        )
    if id_value is not None and not is_templated(id_value):
        positive_int(id_value, id_field)
    if name is not None and not is_templated(name):
        check_name(name, name_field)


def check_name(name: Any, name_field: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AACConfigError(
            f"{name_field} must be the non-empty name AAC shows for the object, not {name!r}."
        )
    return name
