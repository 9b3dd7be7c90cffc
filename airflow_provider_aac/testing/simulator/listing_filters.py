"""The filters and sort order AAC's ``/v4`` listings take, applied to the simulator's rows.

AAC API spec v2025.23.2 (operationIds listPlans, listFlows, listWrangledDatasets): ``filter``
is matched against the comma-separated ``filterFields`` (the spec names no default; the
simulator uses ``name``) by ``filterType`` ``exact``, ``exactIgnoreCase``, ``contains`` or
``fuzzy``; ``sort`` names a field, ``-`` first for descending; flows take ``flowsFilter``
and plans ``ownershipFilter`` (``all``, ``shared``, ``owned``). What ``fuzzy`` matches is
not documented: here, the filter's characters in order. Every simulated object is owned by
the simulator's one user, so ``shared`` lists nothing and ``all`` / ``owned`` everything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_aac.testing.simulator.wire import ApiError

FILTER_TYPES: dict[str, Callable[[str, str], bool]] = {
    "exact": lambda value, wanted: value == wanted,
    "exactIgnoreCase": lambda value, wanted: value.casefold() == wanted.casefold(),
    "contains": lambda value, wanted: wanted.casefold() in value.casefold(),
    "fuzzy": lambda value, wanted: _in_order(wanted.casefold(), value.casefold()),
}
OWNERSHIP_VALUES = ("all", "shared", "owned")
OWNERSHIP_PARAMS = {"plan": "ownershipFilter", "flow": "flowsFilter"}


def _in_order(wanted: str, value: str) -> bool:
    rest = iter(value)
    return all(char in rest for char in wanted)


def _sort_key(value: Any) -> tuple[bool, Any]:
    return (value is None, value if isinstance(value, int | float) else str(value or ""))


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def filtered(rows: list[dict[str, Any]], query: dict[str, list[str]], kind: str) -> list[dict[str, Any]]:
    """The rows the listing's query selects, in its sort order; a bad value answers 400."""
    ownership_param = OWNERSHIP_PARAMS.get(kind)
    ownership = _one(query, ownership_param) if ownership_param else None
    if ownership is not None:
        if ownership not in OWNERSHIP_VALUES:
            raise ApiError(
                400,
                f"{ownership_param} must be one of {', '.join(OWNERSHIP_VALUES)}",
                details={"field": ownership_param},
            )
        if ownership == "shared":
            rows = []
    wanted = _one(query, "filter")
    if wanted is not None:
        filter_type = _one(query, "filterType") or "fuzzy"
        match = FILTER_TYPES.get(filter_type)
        if match is None:
            raise ApiError(
                400, f"filterType must be one of {', '.join(FILTER_TYPES)}", details={"field": "filterType"}
            )
        fields = [f.strip() for f in (_one(query, "filterFields") or "name").split(",") if f.strip()]
        rows = [row for row in rows if any(match(str(row.get(f, "")), wanted) for f in fields)]
    sort = _one(query, "sort")
    if sort:
        key = sort.lstrip("-")
        rows = sorted(rows, key=lambda row: _sort_key(row.get(key)), reverse=sort.startswith("-"))
    return rows
