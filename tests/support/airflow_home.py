"""Throw-away ``AIRFLOW_HOME`` directories, each with its own metadata DB, ports, keys and admin.

``AirflowHome.env()`` is the whole story for subprocesses: everything the components
need is in environment variables (they override ``airflow.cfg``), and nothing is taken
from the caller's environment that could make two homes share state. Set
``AAC_TEST_KEEP_HOMES=1`` to keep the directories (logs!) after ``close()``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cryptography.fernet import Fernet

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_cli import CliRunner, runs_in_process
from tests.support.dag_test_run import DagTestRun, run_dag_file
from tests.support.metadata_databases import (
    STORED_CONNECTION_QUERY,
    StoredConnection,
    create_pg_database,
    decrypted_connection,
    drop_pg_database,
    pg_maintenance_url,
    query_pg,
    query_sqlite,
    with_dbname,
)
from tests.support.processes import AirflowEnvError, free_port, stop_leftover_processes, tail

Backend = Literal["postgres", "sqlite"]
Executor = Literal["LocalExecutor", "CeleryExecutor"]
# The Redis db (on 127.0.0.1:6379) that CeleryExecutor homes use as their broker; the lock
# tests use db 0, so queues and locks never meet.
CELERY_BROKER_URL = os.environ.get("AAC_TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/11")

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"

# Variables that would make a subprocess see the caller's Airflow instead of this home.
_LEAKY_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
_LEAKY_ENV_NAMES = frozenset({"AIRFLOW_HOME", "AIRFLOW_CONFIG"})


class AirflowCliError(AirflowEnvError):
    """An ``airflow`` CLI call exited non-zero."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess[str]) -> None:
        self.result = result
        super().__init__(
            f"`airflow {' '.join(args)}` exited {result.returncode}\n"
            f"--- stdout (tail) ---\n{tail(result.stdout)}\n--- stderr (tail) ---\n{tail(result.stderr)}"
        )


def minted_aac_extra(
    simulator: AACSimulator, *, access_ttl: float | None = None, **extra: Any
) -> dict[str, Any]:
    """An ``aac`` connection's extra holding a pair freshly minted by ``simulator``, plus ``extra``.

    The tokens go straight from the simulator into the connection, so a test never
    holds, prints or commits one. ``access_ttl`` gives this token family its own
    access-token lifetime (default: the simulator's).
    """
    pair = simulator.mint_pair(access_ttl=access_ttl)
    return {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"], **extra}


_LIVE_HOMES: set[AirflowHome] = set()


class AirflowHome:
    """A throw-away AIRFLOW_HOME with its own metadata DB, ports, keys and admin user.

    ``env()`` is the whole story for subprocesses: everything the components need is in
    environment variables (they override ``airflow.cfg``), so the home works the same for
    the CLI, the api-server, the cluster and ad-hoc ``python`` subprocesses.
    ``extra_env`` is applied last, for per-suite config such as
    ``{"AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "..."}``.
    ``executor="CeleryExecutor"`` (PostgreSQL only) adds the broker (Redis db 11, or
    ``AAC_TEST_CELERY_BROKER_URL``), the metadata DB as result backend and a queue of
    this home's own, for ``start_cluster(home, celery_workers=n)``.
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
        executor: Executor = "LocalExecutor",
    ) -> None:
        if backend not in ("postgres", "sqlite"):
            raise ValueError(f"backend must be 'postgres' or 'sqlite', not {backend!r}")
        if executor not in ("LocalExecutor", "CeleryExecutor"):
            raise ValueError(f"executor must be 'LocalExecutor' or 'CeleryExecutor', not {executor!r}")
        if executor == "CeleryExecutor" and backend != "postgres":
            raise ValueError(
                "CeleryExecutor needs the postgres backend (its result backend and many writers)"
            )
        self.backend: Backend = backend
        self.executor: Executor = executor
        # Celery: a queue of this home's own, so homes sharing the broker's Redis db never
        # take each other's tasks.
        self.celery_queue = f"aac-{secrets.token_hex(4)}"
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
        self._cli: CliRunner | None = None
        _LIVE_HOMES.add(self)
        try:
            if backend == "postgres":
                self.db_name = create_pg_database()
                self.sql_alchemy_conn = with_dbname(
                    pg_maintenance_url(), self.db_name, scheme="postgresql+psycopg2"
                )
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"AirflowHome(backend={self.backend!r}, path={str(self.path)!r}, db_name={self.db_name!r})"

    # -- lifecycle

    def close(self) -> None:
        """Drop the database (forcing out leftover sessions) and remove the directory."""
        if self._closed:
            return
        self._closed = True
        _LIVE_HOMES.discard(self)
        if self._cli is not None:
            self._cli.close()
        if self.db_name:
            drop_pg_database(self.db_name)
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
                "AIRFLOW__CORE__EXECUTOR": self.executor,
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
        if self.executor == "CeleryExecutor":
            env.update(
                {
                    "AIRFLOW__CELERY__BROKER_URL": CELERY_BROKER_URL,
                    "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.sql_alchemy_conn}",
                    "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.celery_queue,
                    # Many task supervisors share one api-server on 2 CPUs: its 5 s default
                    # failed a task start (ReadTimeout) under load.
                    "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                }
            )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    # -- CLI

    def run_cli(
        self, *args: str, check: bool = True, timeout: float = 180.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>`` with this home's environment (``python -m airflow``, same venv).

        Metadata-DB commands (see :mod:`airflow_cli`) run in this home's long-lived CLI
        interpreter, which answers the same and saves the 3 s import.
        """
        if env is None and runs_in_process(args):
            result = self._cli_runner().run(args, timeout=timeout)
            if check and result.returncode != 0:
                raise AirflowCliError(args, result)
            return result
        return self._run(["-m", "airflow", *args], args, check=check, timeout=timeout, env=env)

    def _cli_runner(self) -> CliRunner:
        env = self.env()
        if self._cli is None or not self._cli.alive() or self._cli.env != env:
            if self._cli is not None:
                self._cli.close()
            self._cli = CliRunner(env, self.path, self.path / "cli-runner.log")
        return self._cli

    def run_python(
        self, code: str, *, check: bool = True, timeout: float = 180.0, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet in a fresh interpreter configured for this home.

        In-process Airflow (``dag.test()``, ORM access) must not run inside pytest: the
        settings module is configured once per interpreter, so each home needs its own.
        """
        return self._run(["-c", code], ["<python -c>"], check=check, timeout=timeout, env=env)

    def run_dag_file(
        self, path: Path, dag_id: str, *, connections: Mapping[str, Mapping[str, Any]], **kwargs: Any
    ) -> DagTestRun:
        """``dag.test()`` of the DAG file ``path`` in a fresh interpreter (see :mod:`dag_test_run`)."""
        return run_dag_file(self, path, dag_id, connections=connections, **kwargs)

    def _run(
        self,
        python_args: Sequence[str],
        shown_as: Sequence[str],
        *,
        check: bool,
        timeout: float,
        env: Mapping[str, str] | None,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, *python_args],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.path,
        )
        if check and result.returncode != 0:
            raise AirflowCliError(shown_as, result)
        return result

    def migrate(self) -> float:
        """Run ``airflow db migrate``; returns the seconds it took (2.2-2.4 s on either backend here)."""
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

    def add_aac_connection(
        self, conn_id: str, simulator: AACSimulator, *, access_ttl: float | None = None, **extra: Any
    ) -> None:
        """An ``aac`` connection on ``simulator`` with a freshly minted pair (see :func:`minted_aac_extra`)."""
        extra = minted_aac_extra(simulator, access_ttl=access_ttl, **extra)
        self.add_connection(conn_id, "aac", host=simulator.base_url, extra=extra)

    def add_lock_connection(self, conn_id: str, backend: Literal["postgres", "redis"]) -> None:
        """A ``lock_conn_id`` target on this machine's PostgreSQL (5432) or Redis (6379).

        ``generic`` with ``lock_backend``, so it works without the postgres or redis provider.
        """
        if backend == "postgres":
            where: dict[str, Any] = {"port": 5432, "login": "postgres", "schema": "postgres"}
        else:
            where = {"port": 6379}
        self.add_connection(conn_id, "generic", host="127.0.0.1", extra={"lock_backend": backend}, **where)

    def add_airflow_api_connection(self, conn_id: str, base_url: str | None = None) -> None:
        """The ``http`` connection the provider's REST writes use, as this home's admin.

        ``base_url`` defaults to this home's api-server; a proxy or a second server on
        the same DB goes there instead.
        """
        host = base_url or self.base_url
        self.add_connection(conn_id, "http", host=host, login=self.username, password=self.password)

    def delete_connection(self, conn_id: str) -> None:
        self.run_cli("connections", "delete", conn_id)

    def write_dag(self, filename: str, source: str) -> Path:
        """Put a DAG file into the DAGs folder (the dag-processor rescans it every 5 s)."""
        path = self.dags_folder / filename
        path.write_text(source)
        return path

    # -- direct DB reads

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement on the metadata DB (``%s`` placeholders on both backends)."""
        if self.backend == "postgres":
            return query_pg(str(self.db_name), sql, params)
        return query_sqlite(self.path / "airflow.db", sql, params)

    def get_connection(self, conn_id: str) -> StoredConnection | None:
        """The stored row, decrypted with this home's Fernet key.

        Read straight from the metadata DB (not via REST or the CLI, which mask secrets),
        because tests must see exactly what a writer persisted.
        """
        rows = self.query(STORED_CONNECTION_QUERY, (conn_id,))
        return decrypted_connection(rows[0], self.fernet_key) if rows else None

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
    stop_leftover_processes()
    for home in list(_LIVE_HOMES):
        with contextlib.suppress(Exception):
            home.close()
