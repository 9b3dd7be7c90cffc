"""The simulator's ``/v4`` answers against AAC's OpenAPI spec, v2025.23.2.

The spec is the package's transcription (``airflow_provider_aac/testing/simulator/openapi/
aac-v4-subset.json``) of the vendor's OpenAPI spec v2025.23.2 as shipped in a client
generated from it with swagger-codegen (github.com/jupiterbak/OpenOne,
``src/client/legacy_*_api.py`` and ``src/client/legacy_models/*.py``); error names that
only live probes show are marked ``x-source: live-probe`` there. Each test drives a real
simulator over HTTP and validates every answer with a JSON-schema validator against the
schema the spec gives for that operation and status code, so a status outside a
resource's enum (``Pending``), a missing required field or an error body of the wrong
shape fails here.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs, urlencode

import pytest
import requests
from jsonschema import Draft202012Validator

from airflow_provider_aac.core.api_contract import RELIED_ON, SPEC_VERSION, relied_on
from airflow_provider_aac.core.spec_check import check
from airflow_provider_aac.operators.run_requests import flow_run_field
from airflow_provider_aac.run_targets import LISTINGS, lookup_params
from airflow_provider_aac.runs import RunKind
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.testing.simulator.openapi import load_spec, operation_ids
from tests.support.processes import poll_until
from tests.testing.simulator.helpers import api

SPEC = load_spec()
RUN_STATUSES = {"Created", "InProgress", "Complete", "Failed", "Canceled"}
EPOCH_MS = 1e12
LOOKUP_OPERATIONS = {
    RunKind.PLAN: "listPlans",
    RunKind.FLOW: "listFlows",
    RunKind.JOB_GROUP: "listWrangledDatasets",
}


class Contract:
    """Sends a request as one spec operation and validates the answer against that operation.

    The request is checked too: its query names, and (unless it is meant to be refused) its
    query enum values and its JSON body against the operation's request schema.
    """

    def __init__(self, simulator: AACSimulator, token: str) -> None:
        self.simulator = simulator
        self.token = token
        self.checked: set[tuple[str, str]] = set()  # (operationId, status code)

    def call(self, operation_id: str, path: str, *, expect: int, **kwargs: Any) -> requests.Response:
        method, template, operation = _operation(operation_id)
        route, _, query = path.partition("?")
        assert re.fullmatch(re.sub(r"\{\w+\}", r"[^/]+", template), route), (path, template)
        declared = {_parameter(p)["name"]: _parameter(p)["schema"] for p in operation["parameters"]}
        for name, values in parse_qs(query).items():
            assert name in declared, f"{operation_id} takes no {name}"
            allowed = declared[name].get("enum")
            assert expect >= 400 or not allowed or set(values) <= set(allowed), (name, values, allowed)
        if expect < 400 and kwargs.get("json") is not None and "requestBody" in operation:
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            errors = list(_schema_validator(schema).iter_errors(kwargs["json"]))
            assert not errors, f"{operation_id} request body: {errors[0].message}"
        token = kwargs.pop("token", self.token)
        response = api(self.simulator, method, path, token, **kwargs)
        assert response.status_code == expect, (operation_id, response.status_code, response.text[:300])
        validate_answer(operation, response)
        self.checked.add((operation_id, str(response.status_code)))
        return response


def _operation(operation_id: str) -> tuple[str, str, dict[str, Any]]:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return method.upper(), path, operation
    raise AssertionError(f"{operation_id} is not in the spec")


def _parameter(parameter: dict[str, Any]) -> dict[str, Any]:
    name = parameter["$ref"].rsplit("/", 1)[-1] if "$ref" in parameter else None
    return SPEC["components"]["parameters"][name] if name else parameter


def _schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({"components": SPEC["components"], "allOf": [schema]})


def validate_answer(operation: dict[str, Any], response: requests.Response) -> None:
    """The answer's body (and rate-limit headers) as the operation's response for this code says."""
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, f"{operation['operationId']} documents no {response.status_code} answer"
    content = declared.get("content")
    if content is None:
        assert not response.content, "an answer the spec gives no body has one"
        return
    media = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert media in content, f"{media!r} is not among {sorted(content)}"
    body: Any = response.json() if media == "application/json" else response.text
    errors = sorted(_schema_validator(content[media]["schema"]).iter_errors(body), key=str)
    assert not errors, f"{operation['operationId']} {response.status_code}: " + "; ".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in errors[:5]
    )
    for name in declared.get("headers", {}):
        if name.endswith("-reset") and name in response.headers:
            assert float(response.headers[name]) > EPOCH_MS, f"{name} is not epoch milliseconds"


@pytest.fixture
def contract(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> Contract:
    return Contract(aac_simulator, aac_token_pair["access_token"])


def _follow(contract: Contract, operation_id: str, path: str, *, cancel: str | None = None) -> list[str]:
    """Every status a run shows until it ends (each answer validated); ``cancel`` once it runs."""
    seen: list[str] = []

    def status() -> str | None:
        answer = contract.call(operation_id, path, expect=200).json()
        value = answer if isinstance(answer, str) else answer["status"]
        if not seen or seen[-1] != value:
            seen.append(value)
        if cancel and value == "InProgress":
            contract.call(cancel.split()[0], cancel.split()[1], expect=200)
        return value if value in ("Complete", "Failed", "Canceled") else None

    poll_until(status, timeout=10, interval=0.03, what="the run to end")
    return seen


@pytest.mark.aac_simulator(run_duration=0.6)
def test_plan_snapshot_runs_answer_as_the_spec_says(contract: Contract, aac_simulator: AACSimulator) -> None:
    contract.call("getCurrentPerson", "/v4/people/current", expect=200)
    seen: list[str] = []
    for plan_id in (1, 2):
        started = contract.call("runPlan", f"/v4/plans/{plan_id}/run", expect=201).json()
        assert started["validationStatus"] == "Valid"
        run = started["planSnapshotRunId"]
        seen += _follow(contract, "getPlanSnapshotRun", f"/v4/planSnapshotRuns/{run}")
    run = contract.call("runPlan", "/v4/plans/1/run", expect=201).json()["planSnapshotRunId"]
    seen += _follow(
        contract,
        "getPlanSnapshotRun",
        f"/v4/planSnapshotRuns/{run}",
        cancel=f"cancelPlanSnapshotRun /v4/planSnapshotRuns/{run}/cancel",
    )
    repeat = {"x-execution-id": "contract-1"}
    contract.call("runPlan", "/v4/plans/1/run", expect=201, headers=repeat)
    contract.call("runPlan", "/v4/plans/1/run", expect=304, headers=repeat)

    assert set(seen) == RUN_STATUSES


@pytest.mark.aac_simulator(run_duration=0.6)
def test_job_groups_answer_as_the_spec_says(contract: Contract) -> None:
    seen: list[str] = []
    for dataset in (100, 101):
        body = {"wrangledDataset": {"id": dataset}}
        group = contract.call("runJobGroup", "/v4/jobGroups", expect=201, json=body).json()["id"]
        seen += _follow(contract, "getJobGroupStatus", f"/v4/jobGroups/{group}/status")
        detail = contract.call("getJobGroup", f"/v4/jobGroups/{group}?embed=jobs", expect=200).json()
        assert detail["jobs"]["data"][0]["status"] == seen[-1]
        inputs = contract.call("getJobGroupInputs", f"/v4/jobGroups/{group}/inputs", expect=200).json()
        assert inputs["data"][0]["name"] and inputs["data"][0]["inputs"]
        contract.call("getJobGroupOutputs", f"/v4/jobGroups/{group}/outputs", expect=200)
    group = contract.call(
        "runJobGroup", "/v4/jobGroups", expect=201, json={"wrangledDataset": {"id": 100}}
    ).json()["id"]
    seen += _follow(contract, "getJobGroup", f"/v4/jobGroups/{group}")
    canceled = contract.call(
        "runJobGroup", "/v4/jobGroups", expect=201, json={"wrangledDataset": {"id": 100}}
    ).json()["id"]
    answer = contract.call("cancelJobGroup", f"/v4/jobGroups/{canceled}/cancel", expect=200).json()
    seen += _follow(contract, "getJobGroup", f"/v4/jobGroups/{canceled}")

    assert answer["jobgroupId"] == canceled
    assert set(seen) >= {"Created", "Complete", "Failed", "Canceled"}
    assert set(seen) <= RUN_STATUSES


@pytest.mark.aac_simulator(run_duration=0.6)
def test_flow_runs_answer_as_the_spec_says(contract: Contract) -> None:
    seen: list[str] = []
    for flow_id in (10, 11):
        started = contract.call("runFlow", f"/v4/flows/{flow_id}/run", expect=201, json={}).json()
        run = started["flowRunId"]
        seen += _follow(contract, "getFlowRunStatus", f"/v4/flowRuns/{run}/status")
        contract.call("getFlowRun", f"/v4/flowRuns/{run}", expect=200)
        groups = contract.call("getFlowRunJobGroups", f"/v4/flowRuns/{run}/jobGroups", expect=200).json()
        assert [group["id"] for group in groups["data"]] == [group["id"] for group in started["data"]]

    assert set(seen) == {"Created", "Complete", "Failed"}


def test_listings_page_and_count_as_the_spec_says(contract: Contract, aac_simulator: AACSimulator) -> None:
    for flow_id in range(12, 42):
        aac_simulator.add_flow(flow_id)

    default = contract.call("listFlows", "/v4/flows", expect=200).json()
    counted = contract.call("listFlows", "/v4/flows?includeCount=true&limit=5&offset=28", expect=200).json()
    plans = contract.call("listPlans", "/v4/plans?includeCount=false", expect=200).json()

    assert len(default["data"]) == 25 and "count" not in default
    assert (len(counted["data"]), counted["count"]) == (4, 32)
    assert "count" not in plans


@pytest.mark.aac_simulator(run_duration=5)
def test_errors_have_the_names_and_bodies_aac_sends(contract: Contract, aac_simulator: AACSimulator) -> None:
    def name(response: requests.Response) -> str:
        return str(response.json()["exception"]["name"])

    bad = contract.call("runJobGroup", "/v4/jobGroups", expect=400, json={"wrangledDataset": {}})
    unauthorized = contract.call("getCurrentPerson", "/v4/people/current", expect=401, token="not.a.jwt")
    aac_simulator.fail_api(403, path_prefix="/v4/planSnapshotRuns")
    aac_simulator.fail_api(410, path_prefix="/v4/flowRuns")
    forbidden = contract.call("cancelPlanSnapshotRun", "/v4/planSnapshotRuns/1/cancel", expect=403)
    gone = contract.call("getFlowRun", "/v4/flowRuns/1", expect=410)
    missing = contract.call("getJobGroup", "/v4/jobGroups/424242", expect=404)
    no_route = api(aac_simulator, "GET", "/v4/noSuchThing", contract.token)
    aac_simulator.runs.set_rate_limits(runPlan=(1, 60))
    contract.call("runPlan", "/v4/plans/1/run", expect=201)
    limited = contract.call("runPlan", "/v4/plans/1/run", expect=429)
    reset_ms = int(limited.headers["x-rate-limit-user-reset"])

    assert name(bad) == "ValidationFailed"
    assert unauthorized.text == "Unauthorized"
    assert (name(forbidden), name(gone)) == ("AccessControlException", "GoneException")
    assert name(missing) == "DataNotFoundException"
    assert (no_route.status_code, name(no_route)) == (404, "RouteNotFoundException")
    assert name(limited) == "TooManyRequestsException"
    assert 0 < reset_ms / 1000 - time.time() <= 61


def test_the_simulator_serves_its_spec(contract: Contract) -> None:
    served = contract.call("getOpenApiSpec", "/v4/open-api-spec", expect=200).json()

    assert served == SPEC
    assert served["info"]["version"] == SPEC_VERSION


def test_a_simulator_started_without_an_operation_neither_serves_nor_lists_it() -> None:
    with AACSimulator(without_operations=("runFlow", "getJobGroupInputs")) as simulator:
        token = simulator.mint_pair()["access_token"]
        run = api(simulator, "POST", "/v4/flows/10/run", token, json={})
        served = api(simulator, "GET", "/v4/open-api-spec", token).json()
        still = api(simulator, "GET", "/v4/flowRuns/1/status", token)

    assert (run.status_code, run.json()["exception"]["name"]) == (404, "RouteNotFoundException")
    assert "/v4/flows/{id}/run" not in served["paths"]
    assert "getJobGroupInputs" not in operation_ids(served)
    assert set(operation_ids(SPEC)) - set(operation_ids(served)) == {"runFlow", "getJobGroupInputs"}
    assert still.status_code == 404 and still.json()["exception"]["name"] == "DataNotFoundException"
    with pytest.raises(ValueError, match="unknown operations"):
        AACSimulator(without_operations=("runFlowz",))


def test_everything_the_provider_relies_on_is_in_the_spec() -> None:
    reports = check(SPEC)

    assert {report.entry.operation_id for report in reports} <= set(operation_ids(SPEC))
    assert [report.as_dict() for report in reports if not report.ok] == []
    assert len(reports) == len(RELIED_ON)
    read_headers = {name for entry in RELIED_ON for name in entry.response_headers}
    assert read_headers <= set(SPEC["components"]["headers"])


def test_the_spec_says_where_it_came_from() -> None:
    info = SPEC["info"]

    assert info["version"] == "v2025.23.2"
    assert "jupiterbak/OpenOne" in info["description"] and "swagger-codegen" in info["description"]
    assert all(operation in info["description"] for operation in operation_ids(SPEC))
    live = [name for name, schema in SPEC["components"]["schemas"].items() if schema.get("x-source")]
    assert {"AccessControlError", "NotFoundError", "GoneError", "Unauthorized"} <= set(live)
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


@pytest.mark.aac_simulator(run_duration=0.6)
def test_run_flow_answers_as_the_spec_says_with_and_without_run_async(
    contract: Contract, aac_simulator: AACSimulator
) -> None:
    aac_simulator.add_flow(50, outputs=2)
    options = {
        "run_parameters": {"overrides": {"data": [{"key": "region", "value": "EU"}]}},
        "wrangled_dataset_ids": [50002],
        "overrides": {"Orders": {"profiler": True}},
        "spark_options": {"spark.executor.memory": "4GB", "spark.executor.cores": 2},
    }
    body: dict[str, Any] = {}
    for name, value in options.items():
        body.update(flow_run_field(name, value))  # what AACRunFlowOperator sends
    assert set(body) == set(relied_on("runFlow").body)

    subset = contract.call("runFlow", "/v4/flows/50/run", expect=201, json=body).json()
    plain = contract.call("runFlow", "/v4/flows/50/run?runAsync=false", expect=201, json={}).json()
    queued = contract.call("runFlow", "/v4/flows/50/run?runAsync=true", expect=201, json=body).json()
    listed = contract.call(
        "getFlowRunJobGroups", f"/v4/flowRuns/{queued['flowRunId']}/jobGroups", expect=200
    ).json()
    seen = _follow(contract, "getFlowRunStatus", f"/v4/flowRuns/{queued['flowRunId']}/status")

    assert len(subset["data"]) == 1 and len(plain["data"]) == 2
    assert queued["data"] == [] and len(listed["data"]) == 1
    assert set(seen) <= RUN_STATUSES and seen[-1] == "Complete"
    bad = contract.call("runFlow", "/v4/flows/50/run", expect=400, json={"wrangledDatasetIds": [1]})
    assert bad.json()["exception"]["name"] == "ValidationFailed"


def test_name_lookups_and_listing_filters_answer_as_the_spec_says(
    contract: Contract, aac_simulator: AACSimulator
) -> None:
    aac_simulator.add_plan(60, name="Weekly stock")
    aac_simulator.add_flow(61, name="Weekly stock")
    aac_simulator.add_wrangled_dataset(62, name="Weekly stock", flow_id=61)
    found: dict[RunKind, list[dict[str, Any]]] = {}
    for kind, listing in LISTINGS.items():
        operation = LOOKUP_OPERATIONS[kind]
        query = lookup_params(kind, "Weekly stock")  # what a name lookup sends
        assert set(query) == set(relied_on(operation).query)
        found[kind] = contract.call(operation, f"{listing.path}?{urlencode(query)}", expect=200).json()[
            "data"
        ]
    sorted_flows = contract.call(
        "listFlows",
        "/v4/flows?filter=flow&filterFields=name&filterType=contains&sort=-id&flowsFilter=owned",
        expect=200,
    ).json()["data"]
    shared = contract.call(
        "listPlans", "/v4/plans?ownershipFilter=shared&includeCount=true", expect=200
    ).json()
    fuzzy = contract.call(
        "listWrangledDatasets", "/v4/wrangledDatasets?filter=rcp&filterType=fuzzy", expect=200
    )

    ids = {kind: [(row["id"], row["name"]) for row in rows] for kind, rows in found.items()}
    assert list(ids.values()) == [[(60, "Weekly stock")], [(61, "Weekly stock")], [(62, "Weekly stock")]]
    recipe = found[RunKind.JOB_GROUP][0]
    assert (recipe["flow"], recipe["wrangled"]) == ({"id": 61}, True)
    assert [row["id"] for row in sorted_flows] == sorted((row["id"] for row in sorted_flows), reverse=True)
    assert len(sorted_flows) >= 2
    assert (shared["data"], shared["count"]) == ([], 0)
    assert {row["id"] for row in fuzzy.json()["data"]} >= {100, 101}
    contract.call("listFlows", "/v4/flows?flowsFilter=everything", expect=400)


@pytest.mark.aac_simulator(run_duration=0.6)
def test_plans_aac_will_not_run_and_cancels_that_leave_jobs_answer_as_the_spec_says(
    contract: Contract, aac_simulator: AACSimulator
) -> None:
    aac_simulator.add_plan(70, missing_flow_references=True)
    aac_simulator.add_plan(71, jobs_survive_cancel=True)

    refused = contract.call("runPlan", "/v4/plans/70/run", expect=201).json()
    run = refused["planSnapshotRunId"]
    waiting = contract.call("getPlanSnapshotRun", f"/v4/planSnapshotRuns/{run}", expect=200).json()
    canceled = contract.call("cancelPlanSnapshotRun", f"/v4/planSnapshotRuns/{run}/cancel", expect=200).json()
    after = contract.call("getPlanSnapshotRun", f"/v4/planSnapshotRuns/{run}", expect=200).json()
    stuck = contract.call("runPlan", "/v4/plans/71/run", expect=201).json()["planSnapshotRunId"]
    partial = contract.call(
        "cancelPlanSnapshotRun", f"/v4/planSnapshotRuns/{stuck}/cancel", expect=200
    ).json()

    assert refused["validationStatus"] == "MissingFlowReferences"
    assert waiting["status"] == "Created" and after["status"] == "Canceled"
    assert canceled.get("failedToCancelSomeJobs") is not True
    assert partial["failedToCancelSomeJobs"] is True
