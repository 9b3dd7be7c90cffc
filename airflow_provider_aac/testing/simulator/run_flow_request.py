"""What a runFlow request may carry, checked as AAC API spec v2025.23.2 describes it.

operationId runFlow: body schema flowRunRequest (``wrangledDatasetIds``: the recipes whose
outputs to run, all when empty or absent; ``overrides`` keyed by recipe name;
``sparkOptions``: a list of ``{"key", "value"}``), query ``runAsync`` (a queue runs the job
groups and the call returns at once; default false).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_aac.testing.simulator.wire import ApiError, Request, is_int


def run_flow_recipe_ids(body: dict[str, Any] | None) -> list[int] | None:
    ids = None if body is None else body.get("wrangledDatasetIds")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(is_int(i) for i in ids):
        raise ApiError(
            400, "'wrangledDatasetIds' must be a list of recipe ids", details={"field": "wrangledDatasetIds"}
        )
    return [int(i) for i in ids]


def run_flow_spark_options(body: dict[str, Any] | None) -> None:
    options = None if body is None else body.get("sparkOptions")
    if options is None:
        return
    if not isinstance(options, list) or not all(
        isinstance(o, dict) and isinstance(o.get("key"), str) and isinstance(o.get("value"), str)
        for o in options
    ):
        raise ApiError(
            400,
            '\'sparkOptions\' must be a list of {"key": ..., "value": ...} objects with string values',
            details={"field": "sparkOptions"},
        )


def run_async_flag(request: Request) -> bool:
    values = request.query.get("runAsync")
    value = values[-1].lower() if values else "false"
    if value not in ("true", "false"):
        raise ApiError(400, "runAsync must be true or false", details={"field": "runAsync"})
    return value == "true"
