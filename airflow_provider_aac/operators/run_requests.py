"""What the run operators send to AAC and what AAC's start answer may refuse.

Facts from AAC API spec v2025.23.2: operationId runPlan answers ``validationStatus``
``Valid`` or ``MissingFlowReferences`` (some flows or outputs the plan's tasks reference
were deleted; both fields required, so a ``planSnapshotRunId`` comes with either value);
operationId runFlow takes the body schema flowRunRequest (``runParameters``,
``wrangledDatasetIds``: the recipes whose outputs to run, ``overrides`` keyed by recipe
name, ``sparkOptions``: a list of ``{"key", "value"}``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from airflow_provider_aac.errors import AACConfigError, AACPlanInvalidError
from airflow_provider_aac.operators.parameters import is_templated, positive_int

VALID_PLAN = "Valid"
MISSING_FLOW_REFERENCES = "MissingFlowReferences"

FLOW_RUN_OPTIONS = ("run_parameters", "wrangled_dataset_ids", "overrides", "spark_options")
_WIRE_NAMES = {
    "run_parameters": "runParameters",
    "wrangled_dataset_ids": "wrangledDatasetIds",
    "overrides": "overrides",
    "spark_options": "sparkOptions",
}


def refuse_missing_flow_references(plan_id: int, plan_name: str | None, run_id: int, canceled: bool) -> None:
    """Raise the final error for a plan AAC will not run; ``canceled``: its snapshot run was."""
    plan = f"AAC plan {plan_id}" + (f" ({plan_name!r})" if plan_name else "")
    after = (
        f"Airflow canceled its snapshot run {run_id}, which would never have started."
        if canceled
        else f"Its snapshot run {run_id} could not be canceled (see the log above): cancel it in AAC."
    )
    raise AACPlanInvalidError(
        f"{plan} cannot run: AAC answered validationStatus MissingFlowReferences, which means some of "
        f"the plan's tasks reference flows or outputs that were deleted. {after} Open the plan in AAC, "
        "fix or remove the tasks that name deleted flows or outputs, then clear this task. Retrying "
        "without that fix gives the same answer, so the task was not retried."
    )


def check_flow_run_field(name: str, value: Any) -> None:
    """At DAG parse time: what is already a value must be a valid one; templates wait for rendering."""
    if is_templated(value) and not isinstance(value, Mapping | list | tuple):
        return
    if name == "wrangled_dataset_ids" and isinstance(value, list | tuple):
        value = [1 if is_templated(item) else item for item in value]
    flow_run_field(name, value)


def flow_run_field(name: str, value: Any) -> dict[str, Any]:
    """``{wire name: value}`` for a set runFlow option (``{}`` when None); raises for a bad value."""
    if value is None:
        return {}
    wire = _WIRE_NAMES[name]
    if name == "run_parameters":
        if not isinstance(value, Mapping):
            raise AACConfigError(
                f"run_parameters must be a dict, e.g. {{'overrides': {{'data': [{{'key': 'region', "
                f"'value': 'EU'}}]}}}}, not {value!r}."
            )
        return {wire: dict(value)}
    if name == "wrangled_dataset_ids":
        if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or not value:
            raise AACConfigError(
                "wrangled_dataset_ids must be a non-empty list of recipe ids whose outputs to run, "
                f"e.g. [2, 3], not {value!r}. Leave it out to run every output of the flow."
            )
        return {wire: [positive_int(item, "each of wrangled_dataset_ids") for item in value]}
    if name == "overrides":
        if not isinstance(value, Mapping) or not all(
            isinstance(recipe, str) and recipe.strip() and isinstance(settings, Mapping)
            for recipe, settings in value.items()
        ):
            raise AACConfigError(
                "overrides must map recipe names to that output's settings, e.g. "
                f"{{'my recipe': {{'profiler': True}}}}, not {value!r}."
            )
        return {wire: {recipe: dict(settings) for recipe, settings in value.items()}}
    return {wire: _spark_options(value)}


def _spark_options(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, Mapping) or not value:
        raise AACConfigError(
            "spark_options must be a non-empty dict of Spark settings, e.g. "
            f"{{'spark.executor.memory': '4GB'}}, not {value!r}."
        )
    options = []
    for key, setting in value.items():
        if not isinstance(key, str) or not re.fullmatch(r"[\w.\-]+", key) or isinstance(setting, bool):
            raise AACConfigError(
                f"spark_options has {key!r}: {setting!r}; keys are Spark setting names such as "
                "'spark.executor.memory' and values strings or numbers."
            )
        if not isinstance(setting, str | int | float):
            raise AACConfigError(f"spark_options[{key!r}] must be a string or a number, not {setting!r}.")
        options.append({"key": key, "value": str(setting)})
    return options
