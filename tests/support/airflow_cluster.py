"""Airflow components on a throwaway home: an api-server alone, or a whole cluster.

The cluster runs api-server, scheduler, dag-processor and triggerer as separate
processes, so tasks run under Airflow's real task supervisor (where ORM access is
blocked) and each component logs to its own file in the home, which is what one needs
to read when a run fails. Timings on the development container (2 CPUs, shared):
api-server healthy in 4 s, the full cluster in 6 s (started in parallel), a one-task DAG
from trigger to success in 4 s, a new DAG file serialized after about 5 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.support.airflow_home import AirflowHome
from tests.support.airflow_rest import RestClient, health
from tests.support.processes import AirflowEnvError, ManagedProcess, poll_until

CLUSTER_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health-endpoint keys per component (the api-server has none: answering is its health).
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
_TERMINAL_RUN_STATES = frozenset({"success", "failed"})
CELERY_WORKER = "celery-worker:"
# Every worker runs on this machine, so socket.getfqdn() would name them all alike; the
# worker's environment names it instead ([core] hostname_callable -> worker_hostname).
_HOSTNAME_VAR = "AAC_TEST_WORKER_HOSTNAME"
REPO_ROOT = Path(__file__).resolve().parents[2]


def worker_hostname() -> str:
    """The ``[core] hostname_callable`` of the test's Celery workers: their ``--hostname``."""
    return os.environ.get(_HOSTNAME_VAR) or socket.getfqdn()


class ApiServer(RestClient):
    """A running ``airflow api-server`` for one home (public REST API + Execution API).

    ``base_url``, ``username`` and ``password`` are what a provider's ``airflow_api``
    connection needs; ``request()`` / ``request_ok()`` call the API as the admin user.
    """

    def __init__(self, home: AirflowHome, process: ManagedProcess, port: int) -> None:
        super().__init__(f"http://127.0.0.1:{port}", home.username, home.password)
        self.home = home
        self.process = process
        self.port = port

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def wait_healthy(self, timeout: float = 120.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            self.process.check_alive()
            return health(self.base_url)

        return poll_until(
            probe,
            timeout=timeout,
            what=f"api-server health at {self.base_url}",
            on_timeout=self.process.log_tail,
        )

    def stop(self) -> None:
        self.close()
        self.process.stop()

    def __enter__(self) -> ApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _component_command(
    component: str, home: AirflowHome, port: int | None, celery_concurrency: int
) -> tuple[list[str], str, dict[str, str]]:
    """The command line, log name and extra environment of one component; ValueError if unknown."""
    python_airflow = [sys.executable, "-m", "airflow"]
    extra_env: dict[str, str] = {}
    if component.startswith(CELERY_WORKER):
        name = component.removeprefix(CELERY_WORKER)
        if home.executor != "CeleryExecutor" or not name.isidentifier():
            raise ValueError(f"{component!r} needs a CeleryExecutor home and a plain worker name")
        args = [
            *python_airflow, "celery", "worker", "--celery-hostname", name, "--concurrency",
            str(celery_concurrency), "--queues", home.celery_queue, "--pid", str(home.path / f"{name}.pid"),
            # Task logs land in the home's shared log folder; two log servers would want one port.
            "--skip-serve-logs",
        ]  # fmt: skip
        log_name = f"celery-worker-{name}"
        # The hostname callable lives in this repository's tests/, not in the package.
        python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        extra_env = {
            _HOSTNAME_VAR: name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": f"{__name__}.worker_hostname",
            "PYTHONPATH": python_path,
        }
    elif component == "api-server":
        args = [*python_airflow, "api-server", "--port", str(port or home.api_port), "--workers", "1"]
        log_name = f"api-server-{port}" if port else "api-server"
    elif component in ("scheduler", "dag-processor", "triggerer"):
        args = [*python_airflow, component]
        log_name = component
    else:
        raise ValueError(
            f"unknown Airflow component {component!r}; choose from {CLUSTER_COMPONENTS} or {CELERY_WORKER}<name>"
        )
    return args, log_name, extra_env


def _start_component(
    component: str,
    home: AirflowHome,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    celery_concurrency: int = 2,
) -> ManagedProcess:
    args, log_name, extra_env = _component_command(component, home, port, celery_concurrency)
    return ManagedProcess(
        component,
        args,
        {**home.env(), **extra_env, **(env or {})},
        home.path / "component-logs" / f"{log_name}.log",
        cwd=home.path,
    )


def start_api_server(
    home: AirflowHome,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> ApiServer:
    """Start ``airflow api-server`` on ``home`` (already migrated) and wait until it answers.

    ``port=free_port()`` plus ``env`` starts a second server on the same metadata DB with
    different settings (masking, JWT lifetime, ``AIRFLOW_CONN_*``), without another
    migration. The home's configured URLs keep pointing at ``home.api_port``.
    """
    server = ApiServer(home, _start_component("api-server", home, port, env), port or home.api_port)
    try:
        server.wait_healthy(timeout)
    except BaseException:
        server.stop()
        raise
    return server


class AirflowCluster(RestClient):
    """api-server + scheduler + dag-processor + triggerer on one home, plus any Celery workers."""

    def __init__(self, home: AirflowHome, processes: Mapping[str, ManagedProcess]) -> None:
        super().__init__(home.base_url, home.username, home.password)
        self.home = home
        self.processes = dict(processes)
        self.stop_seconds: dict[str, float] = {}

    def check_alive(self) -> None:
        """Raise with the log tail if any component died: waiting on a dead cluster only times out."""
        for proc in self.processes.values():
            proc.check_alive()

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(p.log_tail(lines) for p in self.processes.values())

    def wait_healthy(self, timeout: float = 180.0) -> dict[str, Any]:
        """Until the api-server answers, every started job component reports a live heartbeat,
        and every Celery worker has logged that it is ready (workers have no health entry)."""
        wanted = [_HEALTH_KEYS[c] for c in self.processes if c in _HEALTH_KEYS]
        workers = [p for c, p in self.processes.items() if c.startswith(CELERY_WORKER)]

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            answer = health(self.base_url)
            if answer is None or not all(_celery_ready(p) for p in workers):
                return None
            if all((answer.get(key) or {}).get("status") == "healthy" for key in wanted):
                return answer
            return None

        return poll_until(probe, timeout=timeout, what="cluster health", on_timeout=self.log_tails)

    def stop(self) -> None:
        """Stop the job components (in parallel), then the api-server they may still call.

        In parallel because each component's graceful shutdown has its own waits (the
        triggerer's runner escalation alone can take 10 s); one after the other they add up.
        """
        self.close()
        jobs = [p for p in self.processes.values() if p.name != "api-server"]
        api = [p for p in self.processes.values() if p.name == "api-server"]
        errors: list[BaseException] = []
        for proc in jobs:
            with contextlib.suppress(Exception):
                proc.terminate()
        started = time.monotonic()
        for proc in [*jobs, *api]:
            try:
                proc.stop()
            except BaseException as exc:  # keep stopping the others
                errors.append(exc)
            self.stop_seconds[proc.name] = time.monotonic() - started
        if errors:
            raise errors[0]

    def __enter__(self) -> AirflowCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- DAGs and runs

    def _import_errors(self) -> str:
        resp = self.request("GET", "/api/v2/importErrors")
        if resp.status_code != 200:
            return ""
        errors = resp.json().get("import_errors", [])
        return "\n".join(f"import error in {e.get('filename')}:\n{e.get('stack_trace')}" for e in errors)

    def wait_for_dag(
        self, dag_id: str, timeout: float = 120.0, fail_on_import_error: bool = True
    ) -> dict[str, Any]:
        """Until the dag-processor has serialized ``dag_id`` (REST ``GET /api/v2/dags/{id}``).

        By default any import error in the DAGs folder fails at once, with its traceback,
        instead of surfacing as a timeout two minutes later.
        """

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            resp = self.request("GET", f"/api/v2/dags/{dag_id}")
            if resp.status_code == 200:
                return dict(resp.json())
            errors = self._import_errors() if fail_on_import_error else ""
            if errors:
                raise AirflowEnvError(f"DAG {dag_id!r} not loaded:\n{errors}")
            return None

        return poll_until(
            probe,
            timeout=timeout,
            interval=0.5,
            what=f"DAG {dag_id!r} to be serialized",
            on_timeout=lambda: (
                self.processes["dag-processor"].log_tail() if "dag-processor" in self.processes else ""
            ),
        )

    def trigger_dag(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
        """Unpause ``dag_id`` and create a manual run; returns the run_id."""
        self.request_ok("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        body = self.request_ok(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf or {})}
        )
        return str(body["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.request_ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180.0) -> str:
        """Until the run is ``success`` or ``failed``; returns that state."""

        def probe() -> str | None:
            self.check_alive()
            state = self.dag_run(dag_id, run_id).get("state")
            return str(state) if state in _TERMINAL_RUN_STATES else None

        return poll_until(
            probe,
            timeout=timeout,
            interval=0.5,
            what=f"run {dag_id}/{run_id} to finish",
            on_timeout=lambda: f"task instances: {self.task_instances(dag_id, run_id)}\n{self.log_tails()}",
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        body = self.request_ok(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100}
        )
        return list(body["task_instances"])

    def failure_report(self, dag_id: str, run_id: str) -> str:
        """What a user would open first: every task's state, each unsuccessful task's own log,
        then the components' log tails."""
        tis = self.task_instances(dag_id, run_id)
        parts = [", ".join(f"{ti['task_id']}[{ti.get('map_index', -1)}]={ti['state']}" for ti in tis)]
        for ti in tis:
            if ti["state"] == "success":
                continue
            try_number = max(1, ti.get("try_number") or 1)
            try:
                log = self.task_log(dag_id, run_id, ti["task_id"], try_number, ti.get("map_index", -1))
            except Exception as err:
                log = f"(no task log: {err})"
            parts.append(
                f"--- {ti['task_id']}[{ti.get('map_index', -1)}] try {try_number}: {ti['state']} ---"
            )
            parts.append(log[-6000:])
            for name, proc in self.processes.items():
                lines = proc.log_path.read_text(errors="replace").splitlines()
                named = [line for line in lines if ti["task_id"] in line][-20:]
                if named:
                    parts.append(f"--- {name} log lines naming {ti['task_id']} ---\n" + "\n".join(named))
        return "\n".join(parts) + "\n" + self.log_tails()

    def task_log_records(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> list[dict[str, Any]]:
        """The task log as Airflow's structured records (REST, ``full_content=true``)."""
        body = self.request_ok(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", "map_index": str(map_index)},
            headers={"Accept": "application/json"},
        )
        return [r if isinstance(r, dict) else {"event": str(r)} for r in body.get("content", [])]

    def task_log(
        self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1
    ) -> str:
        """The whole task log as text, one line per record: ``timestamp level logger: event {extra}``.

        Task stdout (``print``) arrives as records with logger ``task.stdout``.
        """
        lines = []
        for rec in self.task_log_records(dag_id, run_id, task_id, try_number, map_index):
            rec = dict(rec)
            head = " ".join(str(rec.pop(k)) for k in ("timestamp", "level", "logger") if rec.get(k))
            event = rec.pop("event", "")
            rest = f" {json.dumps(rec, default=str)}" if rec else ""
            lines.append(f"{head}: {event}{rest}" if head else f"{event}{rest}")
        return "\n".join(lines)

    def pool_set(self, name: str, slots: int, description: str | None = None) -> None:
        """Create or resize a pool (REST), like ``airflow pools set`` but against the running server.

        PATCH validates the whole pool (name and include_deferred too) even with an
        update mask, so the body carries them and the mask limits what changes.
        """
        mask = ["slots"] if description is None else ["slots", "description"]
        body: dict[str, Any] = {"name": name, "slots": slots, "include_deferred": False}
        if description is not None:
            body["description"] = description
        if name == "default_pool":
            body = {"slots": slots}
            mask = ["slots"]
        resp = self.request("PATCH", f"/api/v2/pools/{name}", params={"update_mask": mask}, json=body)
        if resp.status_code == 404:
            resp = self.request(
                "POST",
                "/api/v2/pools",
                json={"name": name, "slots": slots, "description": description, "include_deferred": False},
            )
        if resp.status_code >= 400:
            raise AirflowEnvError(f"pool_set({name!r}) answered {resp.status_code}: {resp.text}")


def _celery_ready(worker: ManagedProcess) -> bool:
    """Celery logs ``<name>@<host> ready.`` once it consumes from its queues."""
    try:
        return " ready." in worker.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return False


def start_cluster(
    home: AirflowHome,
    components: Iterable[str] = CLUSTER_COMPONENTS,
    timeout: float = 180.0,
    *,
    celery_workers: int = 0,
    celery_concurrency: int = 2,
) -> AirflowCluster:
    """Start the components on ``home`` (already migrated) and wait until all are healthy.

    Components start in parallel (the job components retry their DB work, and none needs
    the api-server until a task runs), which roughly halves the start time on 2 CPUs.
    ``celery_workers=n`` (a CeleryExecutor home) adds workers ``w1`` .. ``wn``, each
    running up to ``celery_concurrency`` tasks; ``celery-worker:<name>`` in ``components``
    names one directly.
    """
    wanted = list(dict.fromkeys(components))
    wanted += [
        f"{CELERY_WORKER}w{i}" for i in range(1, celery_workers + 1) if f"{CELERY_WORKER}w{i}" not in wanted
    ]
    if "api-server" not in wanted:
        raise ValueError("the cluster needs the api-server: it serves the Execution API and the health check")
    for component in wanted:  # refuse a wrong name before starting anything
        _component_command(component, home, None, celery_concurrency)
    cluster = AirflowCluster(home, {})
    try:
        for component in wanted:
            cluster.processes[component] = _start_component(
                component, home, celery_concurrency=celery_concurrency
            )
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
