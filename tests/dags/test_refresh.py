"""The refresh DAG: its shape, its parse-time checks, and its runs against the simulator.

The long test keeps one token chain alive over many short access-token lifetimes with
the DAG as the single writer (``refresh_mode: single_writer``, storing each new pair
through the real api-server's REST API), checking every run's decision against the
numbers it saw: what would fail if the feature broke is a reuse (the family revoked),
a lost pair (stored generation behind the refreshes made), a refresh of a fresh token,
or no refresh of an old one.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aac.dags import refresh as refresh_dag
from airflow_provider_aac.dags.refresh import (
    DEFAULT_POOL,
    create_refresh_dag,
    schedule_interval_seconds,
)
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.operators.aac import AACRefreshTokenOperator
from airflow_provider_aac.operators.token_health import AACTokenHealthOperator
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.operators.aac_env import context_for
from tests.support.airflow_env import AirflowHome, ApiServer

JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.")

# --------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize(
    ("schedule", "seconds"),
    [
        (timedelta(minutes=1), 60.0),
        ("*/5 * * * *", 300.0),
        ("@hourly", 3600.0),
        ("0 9-17 * * *", 16 * 3600.0),  # the longest gap counts, not the usual one
        (None, 0.0),
        ("@once", None),
    ],
)
def test_schedule_interval(schedule: Any, seconds: float | None) -> None:
    assert schedule_interval_seconds(schedule) == seconds


# --------------------------------------------------------------------------- the factory


def test_default_dag_shape() -> None:
    dag = create_refresh_dag()
    assert dag.dag_id == "aac_token_refresh"
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert dag.is_paused_upon_creation is False
    assert dag.dagrun_timeout == timedelta(minutes=15)
    assert dag.schedule == timedelta(minutes=1)
    refresh = dag.get_task("refresh_token")
    health = dag.get_task("check_token_health")
    assert isinstance(refresh, AACRefreshTokenOperator)
    assert isinstance(health, AACTokenHealthOperator)
    assert (refresh.pool, refresh.pool_slots) == (DEFAULT_POOL, 1)
    assert refresh.aac_conn_id == health.aac_conn_id == "aac_default"
    assert refresh.min_ttl is None and refresh.force is False and refresh.run_interval == 60.0
    assert (health.warn_days, health.fail_days, health.refresh_dag_id) == (14, 3, "aac_token_refresh")
    assert refresh.retries == health.retries == 0
    # Independent leaves: either failing fails the run, and a failed refresh still gets a health report.
    assert refresh.downstream_task_ids == set() == health.upstream_task_ids
    assert "airflow pools set aac_token_refresh 1" in (dag.doc_md or "")


def test_arguments_reach_the_tasks() -> None:
    dag = create_refresh_dag(
        "refresh_other",
        aac_conn_id="aac_other",
        schedule="*/5 * * * *",
        refresh_min_ttl=120,
        pool="other_pool",
        warn_days=30,
        fail_days=7,
    )
    refresh = dag.get_task("refresh_token")
    health = dag.get_task("check_token_health")
    assert isinstance(refresh, AACRefreshTokenOperator)
    assert isinstance(health, AACTokenHealthOperator)
    assert (refresh.aac_conn_id, refresh.min_ttl, refresh.pool, refresh.run_interval) == (
        "aac_other",
        120,
        "other_pool",
        300.0,
    )
    assert (health.aac_conn_id, health.warn_days, health.fail_days, health.refresh_dag_id) == (
        "aac_other",
        30,
        7,
        "refresh_other",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pool": 0}, "pool must be the name of a pool with one slot, not 0"),
        ({"pool": ""}, "airflow pools set aac_token_refresh 1"),
        ({"schedule": timedelta(0)}, "schedule must be a positive interval"),
        ({"refresh_min_ttl": 0}, "refresh_min_ttl must be a number of seconds greater than 0"),
        ({"refresh_min_ttl": "300"}, "refresh_min_ttl must be a number"),
        ({"warn_days": 2, "fail_days": 3}, "warn_days (2) must be at least fail_days (3)"),
        ({"fail_days": -1}, "fail_days must be a number of days >= 0"),
        ({"aac_conn_id": ""}, "aac_conn_id must be a non-empty string"),
        ({"start_date": "2024-01-01"}, "start_date must be a datetime"),
    ],
)
def test_bad_arguments_fail_at_parse(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(AACConfigError) as caught:
        create_refresh_dag(**kwargs)
    assert message in str(caught.value)


BAD_DAG = """
from airflow_provider_aac.dags.refresh import create_refresh_dag

dag = create_refresh_dag("aac_refresh_bad_pool", pool=0)
"""

PARSE_SCRIPT = """
import json, os
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.execution_time.supervisor import block_orm_access

block_orm_access()
bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
print("PARSE_RESULT " + json.dumps({"errors": {k: str(v) for k, v in bag.import_errors.items()},
                                    "dags": sorted(bag.dag_ids)}))
"""


@pytest.fixture(scope="module")
def parsed_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A DAGs folder with a bad refresh DAG and the one-line file the CLI's fix text gives."""
    dags = tmp_path_factory.mktemp("dags")
    (dags / "bad_refresh.py").write_text(BAD_DAG)
    (dags / "one_line_refresh.py").write_text(
        refresh_dag.REFRESH_DAG_FILE.format(dag_id="aac_refresh_one_line", conn_id="aac_default") + "\n"
    )
    with AirflowHome(backend="sqlite", dags_folder=dags) as home:  # parsing needs no migrated DB
        result = home.run_python(PARSE_SCRIPT, timeout=120)
    line = next(x for x in result.stdout.splitlines() if x.startswith("PARSE_RESULT "))
    return dict(json.loads(line[len("PARSE_RESULT ") :]))


def test_a_bad_argument_is_an_import_error_with_the_message(parsed_files: dict[str, Any]) -> None:
    error = next(v for k, v in parsed_files["errors"].items() if "bad_refresh" in k)
    assert "AACConfigError: pool must be the name of a pool with one slot, not 0" in error
    assert "aac_refresh_bad_pool" not in parsed_files["dags"]


def test_the_fix_texts_one_line_file_is_a_refresh_dag(parsed_files: dict[str, Any]) -> None:
    """``airflow aac connect`` tells pip users to write this line: it must parse as the DAG."""
    assert not [k for k in parsed_files["errors"] if "one_line_refresh" in k], parsed_files["errors"]
    assert parsed_files["dags"] == ["aac_refresh_one_line"]


# --------------------------------------------------------------------------- the operator, in-process


@pytest.fixture
def env_connection(monkeypatch: pytest.MonkeyPatch, aac_simulator: AACSimulator) -> Any:
    """Define ``aac_env`` in an environment variable, with a fresh pair from the simulator."""

    def define(conn_type: str = "aac", **extra: Any) -> AACSimulator:
        pair = aac_simulator.mint_pair(access_ttl=3600)
        body = {
            "conn_type": conn_type,
            "host": aac_simulator.base_url,
            "extra": {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"], **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_AAC_ENV", json.dumps(body))
        return aac_simulator

    return define


def _refresh_op(**kwargs: Any) -> AACRefreshTokenOperator:
    return AACRefreshTokenOperator(task_id="refresh_token", aac_conn_id="aac_env", **kwargs)


def test_refresh_task_refuses_an_unwritable_connection_even_while_fresh(env_connection: Any) -> None:
    sim = env_connection()
    with pytest.raises(AACConfigError, match="defined by the environment variable AIRFLOW_CONN_AAC_ENV"):
        _refresh_op(run_interval=60).execute(context_for())
    assert sim.stats()["token_requests"] == 0


FIRST_RUN_SCRIPT = """
import json, sys
from airflow_provider_aac.errors import AACConfigError
from airflow_provider_aac.operators.aac import AACRefreshTokenOperator

out = {}
for conn_id in sys.argv[1:]:
    try:
        outcome = AACRefreshTokenOperator(task_id="refresh_token", aac_conn_id=conn_id, run_interval=60).execute({})
        out[conn_id] = {k: outcome[k] for k in ("refreshed", "mode")}
    except AACConfigError as err:
        out[conn_id] = {"refused": str(err)}
print("FIRST_RUN " + json.dumps(out))
"""


def test_refresh_task_needs_the_api_connection_on_its_first_run(airflow_sqlite_home: AirflowHome) -> None:
    """In single-writer mode the new pair goes through REST: say so before the token is old."""
    home, suffix = airflow_sqlite_home, uuid.uuid4().hex[:8]
    without, named = f"aac_first_run_{suffix}", f"aac_first_run_api_{suffix}"
    with AACSimulator() as sim:
        home.add_aac_connection(without, sim, access_ttl=3600, refresh_mode="single_writer")
        home.add_aac_connection(
            named, sim, access_ttl=3600, refresh_mode="single_writer", airflow_api_conn_id="airflow_api"
        )
        code = FIRST_RUN_SCRIPT.replace("sys.argv[1:]", repr([without, named]))
        result = home.run_python(code, env={"_AIRFLOW_PROCESS_CONTEXT": "server"})
        token_requests = sim.stats()["token_requests"]
    line = next(x for x in result.stdout.splitlines() if x.startswith("FIRST_RUN "))
    out = json.loads(line.removeprefix("FIRST_RUN "))
    assert "REST API, but it has no 'airflow_api_conn_id'" in out[without]["refused"]
    assert out[named] == {"refreshed": False, "mode": "single_writer"}
    assert token_requests == 0


def test_refresh_task_fails_clearly_on_a_connection_of_another_type(env_connection: Any) -> None:
    env_connection(conn_type="http")
    with pytest.raises(
        AACConfigError, match=r"has type 'http', not 'aac'\. Recreate it with --conn-type aac"
    ):
        _refresh_op().execute(context_for())


# --------------------------------------------------------------------------- runs

RUN_DAGS_SCRIPT = """
import importlib.util, json, os
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

for dag_id, path in json.loads(os.environ["AAC_TEST_DAGS"]).items():
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    run = module.dag.test()
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id)
        }
        xcoms = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, key="return_value")
        }
    print("RUN_RESULT " + json.dumps({"dag_id": dag_id, "state": str(run.state), "states": states,
                                      "xcoms": xcoms}, default=str), flush=True)
"""

REFRESH_DAG_FILE = """
from datetime import timedelta
from airflow_provider_aac.dags.refresh import create_refresh_dag

dag = create_refresh_dag({dag_id!r}, aac_conn_id={conn_id!r}, schedule={schedule}, refresh_min_ttl={min_ttl!r},
                         pool={pool!r})
"""


def _write_refresh_dag(
    home: AirflowHome, dag_id: str, conn_id: str, *, schedule: str = "None", min_ttl: float | None = None
) -> Path:
    pool = f"{dag_id}_pool"
    home.run_cli("pools", "set", pool, "1", "AAC token refresh (test)")
    path = home.dags_folder / f"{dag_id}.py"
    path.write_text(
        textwrap.dedent(
            REFRESH_DAG_FILE.format(
                dag_id=dag_id, conn_id=conn_id, schedule=schedule, min_ttl=min_ttl, pool=pool
            )
        )
    )
    return path


def _results(stdout: str, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)]


@pytest.fixture(scope="module")
def failing_runs(airflow_sqlite_home: AirflowHome) -> Iterator[dict[str, Any]]:
    """Two refresh DAGs that must fail: one on an ``http`` connection, one near its deadline."""
    home = airflow_sqlite_home
    suffix = uuid.uuid4().hex[:8]
    wrong_conn, near_conn = f"aac_wrong_type_{suffix}", f"aac_near_deadline_{suffix}"
    wrong_dag, near_dag = f"aac_refresh_wrong_{suffix}", f"aac_refresh_near_{suffix}"
    with AACSimulator(access_ttl=3600) as sim:
        pair = sim.mint_pair()
        home.add_connection(
            wrong_conn, "http", host=sim.base_url, extra={"access_token": pair["access_token"]}
        )
        deadline = datetime.now(timezone.utc) + timedelta(days=1)
        home.add_connection(
            near_conn,
            "aac",
            host=sim.base_url,
            extra={
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
                "refresh_expires_at": deadline.isoformat(),
                "refresh_dag_id": near_dag,
            },
        )
        paths = [
            _write_refresh_dag(home, wrong_dag, wrong_conn),
            _write_refresh_dag(home, near_dag, near_conn),
        ]
        try:
            result = home.run_python(
                RUN_DAGS_SCRIPT,
                check=False,
                env={"AAC_TEST_DAGS": json.dumps({wrong_dag: str(paths[0]), near_dag: str(paths[1])})},
                timeout=300,
            )
        finally:
            for path in paths:
                path.unlink()
        runs = {run["dag_id"]: run for run in _results(result.stdout, "RUN_RESULT ")}
        yield {
            "wrong": runs.get(wrong_dag),
            "near": runs.get(near_dag),
            "output": result.stdout + result.stderr,
            "stats": sim.stats(),
            "tokens": [pair["access_token"], pair["refresh_token"]],
            "wrong_conn": wrong_conn,
        }


def test_wrong_connection_type_fails_both_tasks_with_the_fix(failing_runs: dict[str, Any]) -> None:
    run = failing_runs["wrong"]
    assert run is not None, failing_runs["output"][-5000:]
    assert run["state"] == "failed"
    assert run["states"] == {"refresh_token": "failed", "check_token_health": "failed"}
    output = failing_runs["output"]
    # The CLI stores an unknown type (http, without its provider) as "generic": either way, not aac.
    expected = re.compile(
        rf"AACConfigError: Connection {failing_runs['wrong_conn']!r} has type '\w+', not 'aac'\. "
        r"Recreate it with --conn-type aac"
    )
    assert len(expected.findall(output)) == 2, output[-5000:]  # each task's failure carries it
    assert failing_runs["stats"]["token_requests"] == 0


def test_deadline_within_fail_days_fails_the_run_but_not_the_refresh(failing_runs: dict[str, Any]) -> None:
    run = failing_runs["near"]
    assert run is not None, failing_runs["output"][-5000:]
    assert run["states"] == {"refresh_token": "success", "check_token_health": "failed"}
    assert run["state"] == "failed"  # the health check is a leaf: its failure is the run's, so alerts fire
    assert run["xcoms"]["refresh_token"]["refreshed"] is False
    assert (
        "Generate a new token pair in AAC under Preferences > OAuth 2.0 API Tokens" in failing_runs["output"]
    )
    for token in failing_runs["tokens"]:
        assert token not in failing_runs["output"]


# --------------------------------------------------------------------------- alerts

ALERTING_DAG_FILE = """
import json
from airflow.sdk import BaseNotifier
from airflow_provider_aac.dags.refresh import create_refresh_dag


class FileNotifier(BaseNotifier):
    \"\"\"Stands for SlackNotifier or SmtpNotifier: a templated message, delivered to a file.\"\"\"

    template_fields = ("message",)

    def __init__(self, path, message):
        super().__init__()
        self.path, self.message = path, message

    def notify(self, context):
        health = context.get("aac_token_health") or {{}}
        with open(self.path, "a") as out:
            out.write(json.dumps({{
                "message": self.message,
                "level": health.get("level"),
                "source": health.get("refresh_expires_at_source"),
                "exception": type(context.get("exception")).__name__ if context.get("exception") else None,
            }}) + "\\n")


dag = create_refresh_dag(
    {dag_id!r}, aac_conn_id={conn_id!r}, schedule=None, pool={pool!r},
    on_failure_callback=FileNotifier({failed!r}, "{{{{ ti.task_id }}}} failed in {{{{ dag.dag_id }}}}"),
    on_health_warning=[FileNotifier({warned!r}, "{{{{ ti.task_id }}}} warns")],
)
"""


@pytest.fixture(scope="module")
def alerting_runs(
    airflow_sqlite_home: AirflowHome, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Two refresh DAGs with notifiers: one whose health check fails, one whose check warns.

    The failing one records its deadline in the extra; the warning one records none, and
    its refresh token is a JWT whose ``exp`` is 10 days away.
    """
    home = airflow_sqlite_home
    suffix = uuid.uuid4().hex[:8]
    out = tmp_path_factory.mktemp("alerts")
    runs: dict[str, Any] = {}
    paths: dict[str, str] = {}
    with (
        AACSimulator(access_ttl=3600) as sim,
        AACSimulator(access_ttl=3600, refresh_ttl=10 * 86400, refresh_token_format="jwt") as jwt_sim,
    ):
        for case, simulator, extra in (
            (
                "fails",
                sim,
                {"refresh_expires_at": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()},
            ),
            ("warns", jwt_sim, {}),
        ):
            conn_id, dag_id, pool = (
                f"aac_alert_{case}_{suffix}",
                f"aac_alert_{case}_{suffix}",
                f"alert_{suffix}",
            )
            home.add_aac_connection(conn_id, simulator, refresh_dag_id=dag_id, **extra)
            home.run_cli("pools", "set", pool, "1", "AAC token refresh (test)")
            path = home.dags_folder / f"{dag_id}.py"
            path.write_text(
                ALERTING_DAG_FILE.format(
                    dag_id=dag_id,
                    conn_id=conn_id,
                    pool=pool,
                    failed=str(out / f"{case}.failed"),
                    warned=str(out / f"{case}.warned"),
                )
            )
            paths[dag_id] = str(path)
            runs[case] = dag_id
        try:
            result = home.run_python(
                RUN_DAGS_SCRIPT, check=False, env={"AAC_TEST_DAGS": json.dumps(paths)}, timeout=300
            )
        finally:
            for path_text in paths.values():
                Path(path_text).unlink()
    by_dag = {run["dag_id"]: run for run in _results(result.stdout, "RUN_RESULT ")}

    def alerts(name: str) -> list[dict[str, Any]]:
        file = out / name
        return [json.loads(line) for line in file.read_text().splitlines()] if file.exists() else []

    return {
        case: {
            "run": by_dag.get(dag_id),
            "failed": alerts(f"{case}.failed"),
            "warned": alerts(f"{case}.warned"),
            "dag_id": dag_id,
        }
        for case, dag_id in runs.items()
    } | {"output": result.stdout + result.stderr}


def test_a_failing_health_check_calls_the_failure_notifier(alerting_runs: dict[str, Any]) -> None:
    case = alerting_runs["fails"]
    assert case["run"] is not None, alerting_runs["output"][-5000:]
    assert case["run"]["states"] == {"refresh_token": "success", "check_token_health": "failed"}
    assert case["failed"] == [
        {
            "message": f"check_token_health failed in {case['dag_id']}",
            "level": None,
            "source": None,
            "exception": "AACTokenDeadlineError",
        }
    ]
    assert case["warned"] == []


def test_a_warning_health_check_calls_the_warning_notifier_from_the_tokens_own_deadline(
    alerting_runs: dict[str, Any],
) -> None:
    case = alerting_runs["warns"]
    assert case["run"] is not None, alerting_runs["output"][-5000:]
    assert case["run"]["states"] == {"refresh_token": "success", "check_token_health": "success"}
    report = case["run"]["xcoms"]["check_token_health"]
    assert report["level"] == "warn" and report["refresh_expires_at_source"] == "refresh_token"
    assert 9.9 < report["days_left"] <= 10
    assert case["warned"] == [
        {"message": "check_token_health warns", "level": "warn", "source": "refresh_token", "exception": None}
    ]
    assert case["failed"] == []
    assert not JWT.search(alerting_runs["output"]), "a token reached the output"


# --------------------------------------------------------------------------- the chain, single writer

ACCESS_TTL = 3.0
REFRESH_BELOW = 1.5
NEAR_EXPIRY_RUNS = 6
FRESH_ATTEMPTS = 3

CHAIN_SCRIPT = """
import importlib.util, json, os, time
from airflow.models.connection import Connection
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from airflow_provider_aac.core.token_state import TokenState

conn_id, dag_id, path = os.environ["AAC_TEST_CONN"], os.environ["AAC_TEST_DAG"], os.environ["AAC_TEST_PATH"]
refresh_below = float(os.environ["AAC_TEST_REFRESH_BELOW"])
seen_tokens = set()

spec = importlib.util.spec_from_file_location(dag_id, path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def stored():
    with create_session() as session:
        extra = session.query(Connection).filter_by(conn_id=conn_id).one().extra_dejson
    state = TokenState.from_extra(extra, conn_id=conn_id)
    seen_tokens.update((state.access_token, state.refresh_token))
    return state


def left():
    state = stored()
    return state.seconds_left(time.time())


def wait_until_near_expiry(timeout=60.0):
    # Poll the stored token with a deadline: a run started now must find it below the threshold.
    deadline = time.monotonic() + timeout
    while left() >= refresh_below:
        if time.monotonic() > deadline:
            raise SystemExit("the stored access token never got near expiry")
        time.sleep(0.05)


def run_once(kind):
    before = stored().generation
    run = module.dag.test()
    after = stored().generation
    with create_session() as session:
        states = {
            ti.task_id: str(ti.state)
            for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run.run_id)
        }
        xcoms = {
            row.task_id: XComModel.deserialize_value(row)
            for row in session.query(XComModel).filter_by(dag_id=dag_id, run_id=run.run_id, key="return_value")
        }
    result = {"kind": kind, "before": before, "after": after, "state": str(run.state), "states": states,
              "xcoms": xcoms}
    print("CHAIN_RUN " + json.dumps(result, default=str), flush=True)
    return result


for _ in range(int(os.environ["AAC_TEST_NEAR_RUNS"])):
    wait_until_near_expiry()
    run_once("near_expiry")
for _ in range(int(os.environ["AAC_TEST_FRESH_ATTEMPTS"])):
    # Right after a refresh the token is fresh; on a slow machine it may not be any more,
    # and then refreshing is right too: try again, the decision is checked either way.
    if not run_once("fresh")["xcoms"]["refresh_token"]["refreshed"]:
        break

with open(os.environ["AAC_TEST_TOKENS_FILE"], "w") as handle:
    json.dump(sorted(seen_tokens), handle)
"""


@pytest.fixture(scope="module")
def chain(airflow_pg_home: AirflowHome, airflow_api_server: ApiServer) -> Iterator[dict[str, Any]]:
    """Refresh-DAG runs over many 3 s access-token lifetimes, the DAG being the only writer."""
    home = airflow_pg_home
    suffix = uuid.uuid4().hex[:8]
    conn_id, api_conn_id, dag_id = (
        f"aac_chain_{suffix}",
        f"aac_chain_api_{suffix}",
        f"aac_refresh_chain_{suffix}",
    )
    deadline = datetime.now(timezone.utc) + timedelta(days=10)  # inside warn_days (14), outside fail_days (3)
    home.add_airflow_api_connection(api_conn_id, airflow_api_server.base_url)
    with AACSimulator(access_ttl=ACCESS_TTL) as sim:
        pair = sim.mint_pair()
        home.add_connection(
            conn_id,
            "aac",
            host=sim.base_url,
            extra={
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
                "refresh_mode": "single_writer",
                "airflow_api_conn_id": api_conn_id,
                "refresh_dag_id": dag_id,
                "refresh_expires_at": deadline.isoformat(),
            },
        )
        path = _write_refresh_dag(home, dag_id, conn_id, min_ttl=REFRESH_BELOW)
        tokens_file = home.path / f"{suffix}-tokens.json"
        started = time.monotonic()
        try:
            result = home.run_python(
                CHAIN_SCRIPT,
                check=False,
                env={
                    "AAC_TEST_CONN": conn_id,
                    "AAC_TEST_DAG": dag_id,
                    "AAC_TEST_PATH": str(path),
                    "AAC_TEST_REFRESH_BELOW": str(REFRESH_BELOW),
                    "AAC_TEST_NEAR_RUNS": str(NEAR_EXPIRY_RUNS),
                    "AAC_TEST_FRESH_ATTEMPTS": str(FRESH_ATTEMPTS),
                    "AAC_TEST_TOKENS_FILE": str(tokens_file),
                },
                timeout=400,
            )
        finally:
            path.unlink()
        output = result.stdout + result.stderr
        runs = _results(result.stdout, "CHAIN_RUN ")
        assert result.returncode == 0 and runs, f"the chain script failed:\n{output[-6000:]}"
        stored = home.get_connection_extra(conn_id)
        tokens = set(json.loads(tokens_file.read_text())) | {pair["access_token"], pair["refresh_token"]}
        tokens_file.unlink()
        yield {
            "runs": runs,
            "output": output,
            "stats": sim.stats(),
            "family": sim.family_info(stored["refresh_token"]),
            "stored": stored,
            "tokens": tokens,
            "seconds": time.monotonic() - started,
        }


def test_chain_every_run_succeeds_as_the_single_writer(chain: dict[str, Any]) -> None:
    for run in chain["runs"]:
        assert run["state"] == "success", run
        assert run["states"] == {"refresh_token": "success", "check_token_health": "success"}, run
        assert run["xcoms"]["refresh_token"]["mode"] == "single_writer"


def test_chain_refreshes_exactly_when_the_token_is_below_the_threshold(chain: dict[str, Any]) -> None:
    runs = chain["runs"]
    for run in runs:
        outcome = run["xcoms"]["refresh_token"]
        assert outcome["refresh_below"] == REFRESH_BELOW
        below = outcome["seconds_left"] < outcome["refresh_below"]
        assert outcome["refreshed"] is below, run
        assert run["after"] == run["before"] + (1 if below else 0), run
        assert outcome["generation"] == run["after"]
    near = [run for run in runs if run["kind"] == "near_expiry"]
    assert len(near) == NEAR_EXPIRY_RUNS and all(run["xcoms"]["refresh_token"]["refreshed"] for run in near)
    fresh = [run for run in runs if run["kind"] == "fresh" and not run["xcoms"]["refresh_token"]["refreshed"]]
    assert fresh, "no run found the token fresh right after a refresh"


def test_chain_survives_with_no_reuse_and_no_lost_pair(chain: dict[str, Any]) -> None:
    stats, stored = chain["stats"], chain["stored"]
    refreshed_runs = sum(run["xcoms"]["refresh_token"]["refreshed"] for run in chain["runs"])
    assert refreshed_runs >= NEAR_EXPIRY_RUNS
    assert stats["refreshes"] == refreshed_runs == stored["generation"]
    assert stats["reuses"] == stats["invalid_grant"] == stats["families_revoked"] == 0
    assert chain["family"] == {"client_id": "aac-sim-client", "rotations": refreshed_runs, "revoked": False}
    # The user's keys survive every write; no refresh is left half-done.
    assert stored["refresh_mode"] == "single_writer" and "refresh_expires_at" in stored
    assert "refresh_in_flight" not in stored and stored["refreshed_by"]
    assert stored["refreshed_mode"] == "single_writer", "the refresh DAG records the mode it refreshed in"


def test_chain_health_warns_before_the_deadline_and_shows_no_token(chain: dict[str, Any]) -> None:
    for run in chain["runs"]:
        health = run["xcoms"]["check_token_health"]
        assert health["level"] == "warn" and 9.9 < health["days_left"] <= 10
        # The two tasks are independent: the report shows the generation before or after this run's refresh.
        assert health["generation"] in (run["before"], run["after"]) and health["refresh_in_flight"] is None
    assert chain["runs"][-1]["xcoms"]["check_token_health"]["refreshed_by"] == chain["stored"]["refreshed_by"]
    assert "expires at" in chain["output"] and "[warning" in chain["output"]
    for token in chain["tokens"]:
        assert token not in chain["output"]
    assert not JWT.search(chain["output"])
