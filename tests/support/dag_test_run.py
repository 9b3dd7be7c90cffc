"""One ``dag.test()`` of a DAG file in a fresh interpreter, and what it left: states, tries, XComs.

``AirflowHome.run_dag_file`` is the way in. The run needs an interpreter of its own
because Airflow's settings are fixed at import; the connections it uses are created in
that interpreter from an environment variable it removes first, so tokens never appear
on a command line or in the script.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.processes import AirflowEnvError

if TYPE_CHECKING:
    from tests.support.airflow_home import AirflowHome

JOB_VARIABLE = "AAC_TEST_DAG_RUN"
RESULT_PREFIX = "DAG_TEST_RESULT "

SCRIPT = f"""
import importlib.util, json, os
from airflow.models import Connection
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

job = json.loads(os.environ.pop("{JOB_VARIABLE}"))
with create_session() as session:
    for conn_id, spec in job["connections"].items():
        conn_type, host = spec.pop("conn_type", "aac"), spec.pop("host")
        session.add(Connection(conn_id=conn_id, conn_type=conn_type, host=host, extra=json.dumps(spec)))
spec = importlib.util.spec_from_file_location(job["dag_id"], job["path"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
run = module.dag.test()
with create_session() as session:
    tis = session.query(TaskInstance).filter_by(dag_id=job["dag_id"], run_id=run.run_id).all()
    xcoms = {{}}
    for row in session.query(XComModel).filter_by(dag_id=job["dag_id"], run_id=run.run_id):
        xcoms.setdefault(row.task_id, {{}})[row.key] = XComModel.deserialize_value(row)
    result = {{
        "run_state": str(run.state),
        "states": {{ti.task_id: str(ti.state) for ti in tis}},
        "tries": {{ti.task_id: ti.try_number for ti in tis}},
        "durations": {{ti.task_id: ti.duration for ti in tis}},
        "xcoms": xcoms,
    }}
print("\\n" + {RESULT_PREFIX!r} + json.dumps(result, default=str), flush=True)
"""


@dataclass(frozen=True)
class DagTestRun:
    """What one ``dag.test()`` left; ``output`` is the interpreter's stdout and stderr."""

    run_state: str
    states: dict[str, str]
    tries: dict[str, int]
    durations: dict[str, float | None]
    xcoms: dict[str, dict[str, Any]]
    output: str


def run_dag_file(
    home: AirflowHome,
    path: Path,
    dag_id: str,
    *,
    connections: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
) -> DagTestRun:
    """Create ``connections`` (id -> ``host``, optional ``conn_type``, the rest the extra), then test the DAG."""
    job = {"dag_id": dag_id, "path": str(path), "connections": {k: dict(v) for k, v in connections.items()}}
    result = home.run_python(
        SCRIPT, check=False, env={**(env or {}), JOB_VARIABLE: json.dumps(job)}, timeout=timeout
    )
    output = result.stdout + result.stderr
    line = next((x for x in result.stdout.splitlines() if x.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise AirflowEnvError(
            f"dag.test() of {dag_id} did not finish (exit {result.returncode}):\n{output[-6000:]}"
        )
    # A thread's log line may follow the result on the same line: read the one JSON value.
    fields, _ = json.JSONDecoder().raw_decode(line.removeprefix(RESULT_PREFIX))
    return DagTestRun(**fields, output=output)
