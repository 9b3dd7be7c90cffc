"""Checking an OpenAPI document for what the provider relies on: each kind of drift, named."""

from __future__ import annotations

import copy
from typing import Any

from airflow_provider_aac.core.api_contract import relied_on
from airflow_provider_aac.core.spec_check import (
    MISSING,
    NOTE,
    check,
    check_operation,
    spec_from_answer,
    summary,
)
from airflow_provider_aac.testing.simulator.openapi import load_spec

SPEC = load_spec()


def drifted() -> dict[str, Any]:
    return copy.deepcopy(SPEC)


def findings(document: dict[str, Any], operation_id: str) -> list[tuple[str, str]]:
    return [(f.severity, f.text) for f in check_operation(document, relied_on(operation_id)).findings]


def test_a_path_matches_whatever_its_variable_is_called() -> None:
    document = drifted()
    item = document["paths"].pop("/v4/planSnapshotRuns/{id}")
    document["paths"]["/v4/planSnapshotRuns/{planSnapshotRunId}"] = item

    assert check_operation(document, relied_on("getPlanSnapshotRun")).ok


def test_each_kind_of_drift_is_named() -> None:
    document = drifted()
    run_flow = document["paths"]["/v4/flows/{id}/run"]["post"]
    run_flow["parameters"] = [p for p in run_flow["parameters"] if "executionId" not in p["$ref"]]
    del document["components"]["schemas"]["FlowRunRequest"]["properties"]["runParameters"]
    del document["components"]["schemas"]["RunFlowResult"]["properties"]["flowRunId"]
    document["components"]["parameters"]["filterType"]["name"] = "matchType"
    document["components"]["schemas"]["JobGroupStatus"]["enum"] = ["Created", "Running", "Complete", "Failed"]

    assert findings(document, "runFlow") == [
        (MISSING, "header 'x-execution-id'"),
        (MISSING, "request body field 'runParameters'"),
        (MISSING, "answer field 'flowRunId'"),
    ]
    assert findings(document, "listPlans") == [(MISSING, "query parameter 'filterType'")]
    assert findings(document, "getJobGroupStatus") == [
        (MISSING, "status 'Canceled' is not among the answer's values"),
        (NOTE, "the answer may be Running, which the provider treats as still running"),
    ]
    assert [report.entry.operation_id for report in check(document) if not report.ok] == [
        "listPlans",
        "listFlows",
        "listWrangledDatasets",  # every name lookup filters by filterType
        "runFlow",
        "getJobGroupStatus",  # getJobGroup shares JobGroupStatus, but its status is not read
    ]


def test_headers_match_in_any_case_and_a_missing_operation_says_so() -> None:
    document = drifted()
    for parameter in document["paths"]["/v4/plans/{id}/run"]["post"]["parameters"]:
        if parameter["$ref"].endswith("executionId"):
            parameter.clear()
            parameter.update({"name": "X-Execution-Id", "in": "header", "schema": {"type": "string"}})
    del document["paths"]["/v4/jobGroups/{id}/cancel"]

    assert check_operation(document, relied_on("runPlan")).ok
    assert findings(document, "cancelJobGroup") == [
        (MISSING, "POST /v4/jobGroups/{id}/cancel is not in the spec")
    ]


def test_the_spec_may_come_wrapped_and_the_summary_names_what_lacks() -> None:
    document = drifted()
    del document["paths"]["/v4/jobGroups"]

    assert spec_from_answer({"spec": document}) is document
    assert spec_from_answer({"error": "no"}) is None and spec_from_answer("text") is None
    assert summary(check(SPEC), "v1").startswith("AAC's API spec v1 has every endpoint")
    assert summary(check(document), None) == (
        "AAC's API spec lacks what the provider needs: POST /v4/jobGroups (runJobGroup): "
        "POST /v4/jobGroups is not in the spec."
    )
