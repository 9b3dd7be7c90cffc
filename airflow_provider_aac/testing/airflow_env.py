"""Real Airflow 3 environments for the test suite.

The provider's hard parts (who may write a connection, what a task process may touch,
what the REST API masks) only show up against real Airflow processes, so these
helpers start the real thing instead of mocking it:

- :class:`AirflowHome`: a throw-away ``AIRFLOW_HOME`` with its own metadata DB
  (a fresh PostgreSQL database, dropped again at :meth:`AirflowHome.close`, or an
  SQLite file), its own ports, keys and admin credentials. Nothing is read from the
  caller's environment that could make two homes share state.
- :func:`start_api_server` / :class:`ApiServer`: ``airflow api-server`` on that home,
  for tests that write connections through the public REST API.
- :func:`start_cluster` / :class:`AirflowCluster`: api-server, scheduler, dag-processor
  and triggerer as separate processes (LocalExecutor), so tasks run under Airflow's real
  task supervisor, where ORM access is blocked. Separate processes give separate logs in
  the home, which is what one needs to read when a run fails.

Every process is started in its own session with a parent-death signal, registered for
an ``atexit`` sweep, and stopped by process group (then by its recorded descendants),
so a crashed test run does not leave Airflow processes or databases behind. Set
``AAC_TEST_KEEP_HOMES=1`` to keep the home directories (logs!) after ``close()``.

Timings measured on the development container (2 CPUs, shared with other test runs;
apache-airflow 3.3.2, PostgreSQL 15), medians of 2-6 runs:

- ``airflow db migrate`` on a fresh database: 2.4 s on PostgreSQL, 2.2 s on SQLite.
- api-server start until ``/api/v2/monitor/health`` answers: 4 s (3.6-10 s under load);
  ``stop()``: 2 s (uvicorn's graceful shutdown).
- full cluster (4 components, started in parallel) until all report healthy: 6 s.
- one-task DAG from ``trigger_dag`` to ``success``: 4 s. A DAG file written to a running
  cluster is serialized after about 5 s (``[dag_processor] refresh_interval`` = 5).
- cluster ``stop()``: 1-9 s; the triggerer's graceful exit sometimes waits out its own
  escalation delay, which is why the components are stopped in parallel.

Environment knobs: ``AAC_TEST_PG_URL`` (libpq URL of the server's maintenance database,
default ``postgresql://postgres@127.0.0.1:5432/postgres``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from cryptography.fernet import Fernet, MultiFernet

from airflow_provider_aac.testing.simulator import AACSimulator

Backend = Literal["postgres", "sqlite"]
T = TypeVar("T")

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"
CLUSTER_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")
# Health-endpoint keys per component (the api-server has none: answering is its health).
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}
_TERMINAL_RUN_STATES = frozenset({"success", "failed"})

# Variables that would make a subprocess see the caller's Airflow instead of this home.
_LEAKY_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
_LEAKY_ENV_NAMES = frozenset({"AIRFLOW_HOME", "AIRFLOW_CONFIG"})


class AirflowEnvError(RuntimeError):
    """A harness step failed; the message carries the log tail needed to see why."""


class AirflowCliError(AirflowEnvError):
    """An ``airflow`` CLI call exited non-zero."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"`airflow {' '.join(args)}` exited {result.returncode}\n"
            f"--- stdout (tail) ---\n{_tail(result.stdout)}\n--- stderr (tail) ---\n{_tail(result.stderr)}"
        )


# --------------------------------------------------------------------------- utilities


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _file_tail(path: Path, lines: int = 60) -> str:
    try:
        return _tail(path.read_text(errors="replace"), lines)
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago.

    The OS picks it, so parallel test sessions do not collide on a fixed port; the
    remaining race (someone binding it before Airflow does) shows up as a clear start
    failure with the log tail.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.25,
    what: str,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Call ``probe`` until it returns something other than None, or fail at the deadline.

    Synchronisation in this harness is always "poll a real signal with a deadline", never
    a fixed sleep: fixed sleeps are both slow on fast machines and flaky on slow ones.
    ``probe`` may raise to abort early (for example when a process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            raise AirflowEnvError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}".rstrip())
        time.sleep(interval)


def pg_maintenance_url() -> str:
    return os.environ.get("AAC_TEST_PG_URL", DEFAULT_PG_URL)


def postgres_unavailable_reason(url: str | None = None) -> str | None:
    """Return why PostgreSQL cannot be used for tests, or None when it can.

    Fixtures turn this into a skip locally and a failure in CI, so the reason must say
    where we looked.
    """
    url = url or pg_maintenance_url()
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    try:
        conn = psycopg2.connect(url, connect_timeout=3)
    except Exception as exc:
        detail = " ".join(str(exc).split())
        return f"PostgreSQL not reachable at {_redact_url(url)}: {detail}"
    conn.close()
    return None


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unreachable, but fail it in CI.

    CI provides PostgreSQL; a skip there would hide that the PostgreSQL-only tests
    (row locks, advisory locks, the real api-server) never ran.
    """
    import pytest

    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} [CI=true, so PostgreSQL is required; AAC_TEST_PG_URL says where it is]")
    pytest.skip(f"{reason} [start PostgreSQL or set AAC_TEST_PG_URL to run this test]")


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _with_dbname(url: str, dbname: str, scheme: str | None = None) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=scheme or parts.scheme, path="/" + quote(dbname)))


# --------------------------------------------------------------------------- processes


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


# Resolved once here, so the forked child only calls a function pointer: no dlopen (and
# its locks) between fork and exec while other test threads may hold them.
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _set_parent_death_signal() -> None:
    """SIGTERM the child when the test process dies, so a killed pytest leaves no Airflow behind."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, start time in clock ticks) of a live process, from /proc; None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the ")" that ends the command name start at field 3 (state).
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[1]), int(fields[19])


def _descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as (pid, start time), recorded so it can be reaped by id.

    Airflow's task supervisor and uvicorn workers may leave the process group; collecting
    them by parentage before shutdown lets ``stop()`` end exactly what we started. The
    start time guards against a recycled pid.
    """
    children: dict[int, list[tuple[int, int]]] = {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if entry.name.isdigit() and (info := _proc_stat(int(entry.name))) is not None:
            children.setdefault(info[0], []).append((int(entry.name), info[1]))
    found: list[tuple[int, int]] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


_LIVE_PROCESSES: set[ManagedProcess] = set()


class ManagedProcess:
    """One long-running Airflow component, started in its own session, logging to a file."""

    def __init__(
        self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("ab")
        self._recorded_descendants: list[tuple[int, int]] | None = None
        self.popen = subprocess.Popen(
            self.args,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_set_parent_death_signal,
        )
        _LIVE_PROCESSES.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return f"--- {self.name} log {self.log_path} (tail) ---\n{_file_tail(self.log_path, lines)}"

    def check_alive(self) -> None:
        if not self.alive():
            raise AirflowEnvError(
                f"{self.name} (pid {self.pid}) exited with code {self.popen.returncode}\n{self.log_tail()}"
            )

    def terminate(self) -> None:
        """Send SIGTERM to the process group without waiting, so several components stop in parallel.

        Descendants are recorded first: Airflow's task supervisor and trigger runner may
        leave the group, and ``stop()`` must still be able to end exactly what we started.
        """
        if self._recorded_descendants is None:
            self._recorded_descendants = _descendants(self.pid)
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """Terminate the process group, wait, then kill whatever is left (group and descendants)."""
        if self._log.closed:
            return
        self.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)  # the leader is alive, so the group is ours
            self.popen.wait(timeout=10)
        # A recorded descendant that outlived the leader would keep ports and DB connections
        # open; kill it only if its pid still belongs to the same process.
        for pid, started in self._recorded_descendants or []:
            info = _proc_stat(pid)
            if info is not None and info[1] == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
        _LIVE_PROCESSES.discard(self)


# --------------------------------------------------------------------------- home


@dataclass(frozen=True)
class StoredConnection:
    """A connection row as stored in the metadata DB, decrypted (never masked)."""

    conn_id: str
    conn_type: str | None
    host: str | None
    login: str | None
    password: str | None
    port: int | None
    schema: str | None
    extra: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}


_LIVE_HOMES: set[AirflowHome] = set()


class AirflowHome:
    """A throw-away AIRFLOW_HOME with its own metadata DB, ports, keys and admin user.

    ``env()`` is the whole story for subprocesses: everything the components need is in
    environment variables (they override ``airflow.cfg``), so the home works the same for
    the CLI, the api-server, the cluster and ad-hoc ``python`` subprocesses.
    ``extra_env`` is applied last, for per-suite config such as
    ``{"AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "..."}``.
    Creating one is cheap (a directory and, on PostgreSQL, an empty database); call
    :meth:`migrate` before starting anything on it.
    """

    def __init__(
        self,
        backend: Backend = "postgres",
        *,
        dags_folder: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        base_dir: Path | None = None,
        keep: bool | None = None,
    ) -> None:
        if backend not in ("postgres", "sqlite"):
            raise ValueError(f"backend must be 'postgres' or 'sqlite', not {backend!r}")
        self.backend: Backend = backend
        self.extra_env: dict[str, str] = dict(extra_env or {})
        self.keep = os.environ.get("AAC_TEST_KEEP_HOMES") == "1" if keep is None else keep
        self.path = Path(tempfile.mkdtemp(prefix=f"aac-airflow-{backend}-", dir=base_dir))
        self.dags_folder = Path(dags_folder) if dags_folder else self.path / "dags"
        self.dags_folder.mkdir(parents=True, exist_ok=True)
        self.logs_folder = self.path / "logs"
        self.logs_folder.mkdir()
        (self.path / "plugins").mkdir()
        self.api_port = free_port()
        self._worker_log_port = free_port()
        self._trigger_log_port = free_port()
        self.username = ADMIN_USERNAME
        self.password = ADMIN_PASSWORD
        self.fernet_key = Fernet.generate_key().decode()
        self.jwt_secret = secrets.token_urlsafe(64)  # >= 64 bytes: HS512 wants a full-size key
        self._api_secret_key = secrets.token_urlsafe(32)
        self.passwords_file = self.path / "simple_auth_manager_passwords.json"
        self.passwords_file.write_text(json.dumps({self.username: self.password}))
        self.db_name: str | None = None
        self.sql_alchemy_conn = f"sqlite:///{self.path / 'airflow.db'}"
        self._closed = False
        _LIVE_HOMES.add(self)
        try:
            if backend == "postgres":
                self._create_pg_database()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"AirflowHome(backend={self.backend!r}, path={str(self.path)!r}, db_name={self.db_name!r})"

    # -- lifecycle

    def _create_pg_database(self) -> None:
        import psycopg2

        self.db_name = f"aac_test_{uuid.uuid4().hex[:12]}"
        maintenance = pg_maintenance_url()
        conn = psycopg2.connect(maintenance, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{self.db_name}"')
        finally:
            conn.close()
        self.sql_alchemy_conn = _with_dbname(maintenance, self.db_name, scheme="postgresql+psycopg2")

    def close(self) -> None:
        """Drop the database (forcing out leftover sessions) and remove the directory."""
        if self._closed:
            return
        self._closed = True
        _LIVE_HOMES.discard(self)
        if self.db_name:
            import psycopg2

            conn = psycopg2.connect(pg_maintenance_url(), connect_timeout=5)
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
            finally:
                conn.close()
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> AirflowHome:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self, **overrides: str) -> dict[str, str]:
        """Full environment for an Airflow subprocess of this home."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_LEAKY_ENV_PREFIXES) and k not in _LEAKY_ENV_NAMES
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.path),
                "AIRFLOW_CONFIG": str(self.path / "airflow.cfg"),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.path / "plugins"),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__FERNET_KEY": self.fernet_key,
                "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.username}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.passwords_file),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": self._api_secret_key,
                "AIRFLOW__API__EXPOSE_STACKTRACE": "True",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__UVICORN_LOGGING_LEVEL": "WARNING",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.logs_folder),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self._worker_log_port),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self._trigger_log_port),
                # Tests write DAG files and expect them picked up in seconds, not minutes.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "2",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    # -- CLI

    def run_cli(
        self, *args: str, check: bool = True, timeout: float = 180.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with this home's environment (``python -m airflow``, same venv)."""
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.path,
        )
        if check and result.returncode != 0:
            raise AirflowCliError(args, result)
        return result

    def run_python(
        self, code: str, *, check: bool = True, timeout: float = 180.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet in a fresh interpreter configured for this home.

        In-process Airflow (``dag.test()``, ORM access) must not run inside pytest: the
        settings module is configured once per interpreter, so each home needs its own.
        """
        result = subprocess.run(
            [sys.executable, "-c", code],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.path,
        )
        if check and result.returncode != 0:
            raise AirflowCliError(["<python -c>"], result)
        return result

    def migrate(self) -> float:
        """Run ``airflow db migrate``; returns the seconds it took (see module docstring)."""
        started = time.monotonic()
        self.run_cli("db", "migrate", timeout=600)
        return time.monotonic() - started

    def add_connection(
        self,
        conn_id: str,
        conn_type: str,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        port: int | None = None,
        schema: str | None = None,
    ) -> None:
        """Create a connection in the metadata DB through the CLI, as a user would."""
        args = ["connections", "add", conn_id, "--conn-type", conn_type]
        for flag, value in (
            ("--conn-host", host),
            ("--conn-login", login),
            ("--conn-password", password),
            ("--conn-port", None if port is None else str(port)),
            ("--conn-schema", schema),
        ):
            if value is not None:
                args += [flag, value]
        if extra is not None:
            args += ["--conn-extra", json.dumps(dict(extra))]
        self.run_cli(*args)

    def add_aac_connection(self, conn_id: str, simulator: AACSimulator, **extra: Any) -> None:
        """An ``aac`` connection holding a pair freshly minted by ``simulator``, plus ``extra``.

        The tokens go straight from the simulator into the connection, so a test never
        holds, prints or commits one.
        """
        pair = simulator.mint_pair()
        tokens = {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
        self.add_connection(conn_id, "aac", host=simulator.base_url, extra={**tokens, **extra})

    def delete_connection(self, conn_id: str) -> None:
        self.run_cli("connections", "delete", conn_id)

    def write_dag(self, filename: str, source: str) -> Path:
        """Put a DAG file into the DAGs folder (the dag-processor rescans it every 5 s)."""
        path = self.dags_folder / filename
        path.write_text(source)
        return path

    # -- direct DB reads

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement on the metadata DB (``%s`` placeholders on both backends).

        A fresh connection per call: tests read what other processes committed, and an
        idle connection of ours must never hold a lock that a writer under test waits on.
        """
        if self.backend == "postgres":
            import psycopg2

            conn = psycopg2.connect(_with_dbname(pg_maintenance_url(), str(self.db_name)), connect_timeout=5)
            try:
                with conn.cursor() as cur:
                    cur.execute(sql, params)
                    return list(cur.fetchall())
            finally:
                conn.close()
        sqlite_conn = sqlite3.connect(self.path / "airflow.db", timeout=30)
        try:
            return list(sqlite_conn.execute(sql.replace("%s", "?"), params).fetchall())
        finally:
            sqlite_conn.close()

    def _decrypt(self, value: str | None, encrypted: bool) -> str | None:
        if value is None or not encrypted:
            return value
        fernet = MultiFernet([Fernet(k.strip().encode()) for k in self.fernet_key.split(",")])
        return fernet.decrypt(value.encode()).decode()

    def get_connection(self, conn_id: str) -> StoredConnection | None:
        """The stored row, decrypted with this home's Fernet key.

        Read straight from the metadata DB (not via REST or the CLI, which mask secrets),
        because tests must see exactly what a writer persisted.
        """
        rows = self.query(
            "SELECT conn_id, conn_type, host, login, password, is_encrypted, port, schema, extra, "
            "is_extra_encrypted FROM connection WHERE conn_id = %s",
            (conn_id,),
        )
        if not rows:
            return None
        cid, ctype, host, login, pwd, pwd_enc, port, schema, extra, extra_enc = rows[0]
        return StoredConnection(
            conn_id=cid,
            conn_type=ctype,
            host=host,
            login=login,
            password=self._decrypt(pwd, bool(pwd_enc)),
            port=port,
            schema=schema,
            extra=self._decrypt(extra, bool(extra_enc)),
        )

    def get_connection_extra(self, conn_id: str) -> dict[str, Any]:
        """The stored, unmasked extra of ``conn_id``; raises KeyError when there is no row."""
        conn = self.get_connection(conn_id)
        if conn is None:
            raise KeyError(f"no connection {conn_id!r} in the metadata DB of {self.path}")
        return conn.extra_dejson


@atexit.register
def _clean_up_leftovers() -> None:
    """Last line of defence when a fixture's teardown never ran: processes first, then homes
    (dropping a database under a live scheduler would only make it crash noisily)."""
    for proc in list(_LIVE_PROCESSES):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)
    for home in list(_LIVE_HOMES):
        with contextlib.suppress(Exception):
            home.close()


# --------------------------------------------------------------------------- REST


def api_token(base_url: str, username: str, password: str, timeout: float = 30.0) -> str:
    """``POST /auth/token`` (SimpleAuthManager) and return the JWT."""
    resp = httpx.post(
        f"{base_url}/auth/token", json={"username": username, "password": password}, timeout=timeout
    )
    if resp.status_code != 201:
        raise AirflowEnvError(f"POST /auth/token answered {resp.status_code}: {resp.text}")
    return str(resp.json()["access_token"])


class _RestClient:
    """Bearer-authenticated calls to one api-server; fetches a new token on 401."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self.base_url = base_url
        self.username = username
        self.password = password
        self._token: str | None = None
        self._http = httpx.Client(base_url=base_url, timeout=60.0)

    def api_token(self) -> str:
        """A fresh JWT from ``POST /auth/token``."""
        return api_token(self.base_url, self.username, self.password)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Authenticated request; the caller checks the status (tests assert on it)."""
        extra_headers = dict(kwargs.pop("headers", None) or {})
        for attempt in (1, 2):
            if self._token is None:
                self._token = self.api_token()
            headers = {"Authorization": f"Bearer {self._token}", **extra_headers}
            resp = self._http.request(method, path, headers=headers, **kwargs)
            if resp.status_code != 401 or attempt == 2:
                return resp
            self._token = None
        raise AssertionError("unreachable")

    def request_ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """Authenticated request whose error status raises, with the body in the message."""
        resp = self.request(method, path, **kwargs)
        if resp.status_code >= 400:
            raise AirflowEnvError(f"{method} {path} answered {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else None

    def add_connection(
        self,
        conn_id: str,
        conn_type: str,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        port: int | None = None,
        schema: str | None = None,
    ) -> None:
        """Create a connection through the REST API, as the UI does; much faster than the CLI."""
        body: dict[str, Any] = {"connection_id": conn_id, "conn_type": conn_type}
        for key, value in (("host", host), ("login", login), ("password", password), ("port", port)):
            if value is not None:
                body[key] = value
        if schema is not None:
            body["schema"] = schema
        if extra is not None:
            body["extra"] = json.dumps(dict(extra))
        self.request_ok("POST", "/api/v2/connections", json=body)

    def add_aac_connection(self, conn_id: str, simulator: AACSimulator, **extra: Any) -> None:
        """As :meth:`AirflowHome.add_aac_connection`, through the REST API."""
        pair = simulator.mint_pair()
        tokens = {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"]}
        self.add_connection(conn_id, "aac", host=simulator.base_url, extra={**tokens, **extra})

    def close(self) -> None:
        self._http.close()


def _health(base_url: str) -> dict[str, Any] | None:
    try:
        resp = httpx.get(f"{base_url}/api/v2/monitor/health", timeout=5.0)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


class ApiServer(_RestClient):
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
            return _health(self.base_url)

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


def _start_component(
    component: str, home: AirflowHome, port: int | None = None, env: Mapping[str, str] | None = None
) -> ManagedProcess:
    python_airflow = [sys.executable, "-m", "airflow"]
    if component == "api-server":
        args = [*python_airflow, "api-server", "--port", str(port or home.api_port), "--workers", "1"]
        log_name = f"api-server-{port}" if port else "api-server"
    elif component in ("scheduler", "dag-processor", "triggerer"):
        args = [*python_airflow, component]
        log_name = component
    else:
        raise ValueError(f"unknown Airflow component {component!r}; choose from {CLUSTER_COMPONENTS}")
    return ManagedProcess(
        component,
        args,
        {**home.env(), **(env or {})},
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


# --------------------------------------------------------------------------- cluster


class AirflowCluster(_RestClient):
    """api-server + scheduler + dag-processor + triggerer on one home (LocalExecutor)."""

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
        """Until the api-server answers and every started job component reports a live heartbeat."""
        wanted = [_HEALTH_KEYS[c] for c in self.processes if c in _HEALTH_KEYS]

        def probe() -> dict[str, Any] | None:
            self.check_alive()
            health = _health(self.base_url)
            if health is None:
                return None
            if all((health.get(key) or {}).get("status") == "healthy" for key in wanted):
                return health
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
        body = self.request_ok("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        return list(body["task_instances"])

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


def start_cluster(
    home: AirflowHome, components: Iterable[str] = CLUSTER_COMPONENTS, timeout: float = 180.0
) -> AirflowCluster:
    """Start the components on ``home`` (already migrated) and wait until all are healthy.

    Components start in parallel (the job components retry their DB work, and none needs
    the api-server until a task runs), which roughly halves the start time on 2 CPUs.
    """
    wanted = list(dict.fromkeys(components))
    if "api-server" not in wanted:
        raise ValueError("the cluster needs the api-server: it serves the Execution API and the health check")
    cluster = AirflowCluster(home, {})
    try:
        for component in wanted:
            cluster.processes[component] = _start_component(component, home)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
