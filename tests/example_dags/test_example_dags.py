"""Every example DAG parses without touching the database, and runs against the simulator.

Users copy these files and edit the constants, so the files carry nothing simulator-
specific: the test points the real ``aac_default`` connection of a throw-away
AIRFLOW_HOME (whose DAGs folder IS the package's ``example_dags/``) at a simulator started here. Only
on the loaded DAG objects does it shorten the examples' production poll intervals, and
it makes every simulated run outlast its first status check, so the deferrable plan
really defers, the sensor really reschedules and the recipe job really polls.

All six DAGs run in one fresh interpreter with ``dag.test()`` (the real task runner,
templates, XComArgs, the deferrable path with its trigger run inline), one after the
other; each DAG's result, XComs and the simulator's counters around it are printed as
one JSON line, so every DAG still gets its own test and its own failure message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "airflow_provider_aac" / "example_dags"
POOL = "aac_token_refresh"
RUN_SECONDS = 1.0
FAST_INTERVAL = 0.2
EXPECTED_DAGS = {
    "aac_token_refresh": "aac_token_refresh.py",
    "aac_example_run_plan": "aac_run_plan.py",
    "aac_example_run_flow_and_wait": "aac_run_flow_and_wait.py",
    "aac_example_run_recipe_job": "aac_run_recipe_job.py",
    "aac_example_call_api": "aac_call_api.py",
    "aac_example_hook_in_task": "aac_hook_in_task.py",
}

PARSE_SCRIPT = """
import json, os
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.supervisor import block_orm_access

# As in the dag-processor: DAG files are parsed with the metadata DB out of reach, so a
# file that reads a Variable or queries the DB at parse time fails here.
block_orm_access()
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
dags = {}
for dag_id, dag in bag.dags.items():
    dags[dag_id] = {
        "file": dag.fileloc.rsplit("/", 1)[-1],
        "max_active_runs": dag.max_active_runs,
        "catchup": dag.catchup,
        "tasks": {t.task_id: {"pool": t.pool, "pool_slots": t.pool_slots, "type": type(t).__name__}
                  for t in dag.tasks},
    }
print("PARSE_RESULT " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": dags}))
"""

RUN_SCRIPT = """
import importlib.util, json, os, sys, time, urllib.request
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

stats_url = os.environ["AAC_TEST_STATS_URL"]
fast = float(os.environ["AAC_TEST_INTERVAL"])

def stats():
    with urllib.request.urlopen(stats_url, timeout=10) as answer:
        return json.load(answer)

for dag_id, path in json.loads(os.environ["AAC_TEST_DAGS"]).items():
    for stream in (sys.stdout, sys.stderr):
        print(f"=== BEGIN {dag_id}", file=stream, flush=True)
    spec = importlib.util.spec_from_file_location(f"example_{dag_id}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The examples carry production intervals (30-60 s); the test shortens them on the
    # loaded objects, so the files stay exactly what a user copies.
    for task in module.dag.tasks:
        for name in ("poll_interval", "poke_interval"):
            if hasattr(task, name):
                setattr(task, name, fast)
    before = stats()
    started = time.monotonic()
    run = module.dag.test()
    seconds = time.monotonic() - started
    after = stats()
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id)
        }
        xcoms = {}
        for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id):
            xcoms.setdefault(row.task_id, {})[row.key] = XComModel.deserialize_value(row)
        run_state = str(session.query(DagRun).filter_by(dag_id=dag_id, run_id=run.run_id).one().state)
    delta = {key: after[key] - before[key] for key in after}
    for stream in (sys.stdout, sys.stderr):
        print(f"=== END {dag_id}", file=stream, flush=True)
    result = {"dag_id": dag_id, "run_state": run_state, "states": states, "xcoms": xcoms, "stats": delta,
              "seconds": round(seconds, 1)}
    print("RUN_RESULT " + json.dumps(result, default=str), flush=True)
"""


def _segment(text: str, dag_id: str) -> str:
    match = re.search(rf"=== BEGIN {re.escape(dag_id)}\n(.*?)=== END {re.escape(dag_id)}\n", text, re.S)
    return match.group(1) if match else ""


@pytest.fixture(scope="module")
def example_home() -> Iterator[AirflowHome]:
    """A migrated SQLite home whose DAGs folder is ``airflow_provider_aac/example_dags/``."""
    with AirflowHome(
        backend="sqlite", dags_folder=EXAMPLES, extra_env={"PYTHONDONTWRITEBYTECODE": "1"}
    ) as home:
        home.migrate()
        yield home


@pytest.fixture(scope="module")
def parsed(example_home: AirflowHome) -> dict[str, Any]:
    result = example_home.run_python(PARSE_SCRIPT, check=False, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"parsing example_dags/ crashed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    line = next(x for x in result.stdout.splitlines() if x.startswith("PARSE_RESULT "))
    return dict(json.loads(line[len("PARSE_RESULT ") :]))


@pytest.fixture(scope="module")
def example_runs(example_home: AirflowHome) -> Iterator[dict[str, Any]]:
    """Every example DAG run once with ``dag.test()``; results keyed by dag id."""
    with AACSimulator(access_ttl=3600) as sim:
        # Every run outlives its first status check, so the plan defers, the sensor
        # reschedules and the recipe job polls, each a few times at FAST_INTERVAL.
        sim.add_plan(1, name="Daily sales", duration=RUN_SECONDS)
        sim.add_flow(10, name="Sales flow", duration=RUN_SECONDS)
        sim.add_wrangled_dataset(100, duration=RUN_SECONDS)
        pair = sim.mint_pair()
        example_home.add_connection(
            "aac_default",
            "aac",
            host=sim.base_url,
            extra={"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]},
        )
        example_home.run_cli("pools", "set", POOL, "1", "AAC token refresh")
        order = {dag_id: str(EXAMPLES / name) for dag_id, name in EXPECTED_DAGS.items()}
        result = example_home.run_python(
            RUN_SCRIPT,
            check=False,
            env={
                "AAC_TEST_STATS_URL": f"{sim.base_url}/_sim/stats",
                "AAC_TEST_DAGS": json.dumps(order),
                "AAC_TEST_INTERVAL": str(FAST_INTERVAL),
            },
            timeout=600,
        )
        runs = {
            json.loads(x[len("RUN_RESULT ") :])["dag_id"]: json.loads(x[len("RUN_RESULT ") :])
            for x in result.stdout.splitlines()
            if x.startswith("RUN_RESULT ")
        }
        stored = example_home.get_connection_extra("aac_default")
        yield {
            "runs": runs,
            "stdout": result.stdout,
            "stderr": result.stderr,
            "returncode": result.returncode,
            "stats": sim.stats(),
            "tokens": {
                pair["access_token"],
                pair["refresh_token"],
                stored["access_token"],
                stored["refresh_token"],
            },
        }


def _run(example_runs: dict[str, Any], dag_id: str) -> dict[str, Any]:
    run = example_runs["runs"].get(dag_id)
    if run is None:
        pytest.fail(
            f"{dag_id} did not finish (exit {example_runs['returncode']}):\n"
            f"{example_runs['stdout'][-4000:]}\n{example_runs['stderr'][-4000:]}"
        )
    return dict(run)


def _log(example_runs: dict[str, Any], dag_id: str) -> str:
    return _segment(example_runs["stdout"], dag_id) + _segment(example_runs["stderr"], dag_id)


def _assert_succeeded(example_runs: dict[str, Any], dag_id: str) -> dict[str, Any]:
    run = _run(example_runs, dag_id)
    failed = {task: state for task, state in run["states"].items() if state != "success"}
    assert run["run_state"] == "success" and not failed, (
        f"{dag_id}: run {run['run_state']}, tasks {run['states']}\n{_log(example_runs, dag_id)[-6000:]}"
    )
    return run


# --------------------------------------------------------------------------- parsing


def test_every_example_dag_parses_without_the_database(parsed: dict[str, Any]) -> None:
    assert parsed["errors"] == {}
    assert {dag_id: info["file"] for dag_id, info in parsed["dags"].items()} == EXPECTED_DAGS
    files = {path.name for path in EXAMPLES.glob("*.py")} - {"__init__.py"}
    assert files == set(EXPECTED_DAGS.values()), "every example file defines exactly one DAG, and is tested"


def test_the_refresh_example_is_the_factory_dag(parsed: dict[str, Any]) -> None:
    refresh = parsed["dags"]["aac_token_refresh"]
    assert refresh["max_active_runs"] == 1 and refresh["catchup"] is False
    assert refresh["tasks"]["refresh_token"] == {
        "pool": POOL,
        "pool_slots": 1,
        "type": "AACRefreshTokenOperator",
    }
    assert refresh["tasks"]["check_token_health"]["type"] == "AACTokenHealthOperator"


# --------------------------------------------------------------------------- runs


def test_run_plan_example_defers_and_succeeds(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_example_run_plan")
    xcoms = run["xcoms"]["run_plan"]
    assert xcoms["return_value"] == xcoms["run_id"]
    assert run["stats"]["runs_started"] == 1
    log = _log(example_runs, "aac_example_run_plan")
    assert "new_state=deferred" in log and "[DAG TEST] Trigger completed" in log
    assert f"AAC plan run {xcoms['run_id']} ended Complete" in log


def test_flow_and_sensor_example_hands_the_run_id_over(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_example_run_flow_and_wait")
    started = run["xcoms"]["run_flow"]["return_value"]
    assert run["xcoms"]["wait_for_flow"]["run_id"] == started
    assert run["xcoms"]["run_flow"]["flow_id"] == 10, "the flow was found by its name"
    assert run["stats"]["runs_started"] == 1
    log = _log(example_runs, "aac_example_run_flow_and_wait")
    assert "marking task as UP_FOR_RESCHEDULE" in log  # it waited in reschedule mode, as the example says
    assert f"AAC flow run {started} is Complete" in log


def test_recipe_job_example_succeeds(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_example_run_recipe_job")
    assert run["xcoms"]["run_recipe_job"]["return_value"] == run["xcoms"]["run_recipe_job"]["run_id"]
    assert run["stats"]["runs_started"] == 1
    assert run["stats"]["api_calls"] >= 3  # the start, and status checks until Complete


def test_api_example_returns_aacs_answer(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_example_call_api")
    answer = run["xcoms"]["list_plans"]["return_value"]
    assert [plan["id"] for plan in answer["data"]] == [1, 2]
    assert run["stats"]["api_calls"] == 1 and run["stats"]["runs_started"] == 0


def test_hook_example_reports_user_and_flows(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_example_hook_in_task")
    report = run["xcoms"]["summarize_workspace"]["return_value"]
    assert report == {"user": "sim@example.com", "flows": ["Sales flow", "Broken flow"]}
    assert run["stats"]["api_calls"] == 2


def test_refresh_example_leaves_a_fresh_token_alone(example_runs: dict[str, Any]) -> None:
    run = _assert_succeeded(example_runs, "aac_token_refresh")
    outcome = run["xcoms"]["refresh_token"]["return_value"]
    assert outcome["refreshed"] is False and outcome["mode"] == "metadata_db"
    assert outcome["seconds_left"] > outcome["refresh_below"] == pytest.approx(3600 * 2 / 3, abs=5)
    assert run["stats"]["token_requests"] == 0
    health = run["xcoms"]["check_token_health"]["return_value"]
    assert health["level"] == "unknown"
    assert "refresh_expires_at" in _log(example_runs, "aac_token_refresh")


def test_examples_never_show_a_token_and_never_refresh_needlessly(example_runs: dict[str, Any]) -> None:
    assert len(example_runs["runs"]) == len(EXPECTED_DAGS)
    output = example_runs["stdout"] + example_runs["stderr"]
    for token in example_runs["tokens"]:
        assert token not in output
        assert token not in json.dumps(example_runs["runs"])
    stats = example_runs["stats"]
    assert stats["token_requests"] == 0 and stats["api_unauthorized"] == 0 and stats["reuses"] == 0
