"""PostgreSQL and Redis servers of a test's own, which the test may stop, kill and restart.

The machine's PostgreSQL (5432) and Redis (6379) are shared by every other test and must
never go down, but the refresh lock's promises (an advisory lock dies with its session, a
Redis lock with a restart) only show when the server really goes away. So each instance
here is a real server in a temp dir on a free port, tuned to start fast (no fsync, small
buffers; nothing here must survive a power cut) and listening on 127.0.0.1 only.

Processes are :class:`ManagedProcess` children (own session, log file, atexit sweep), and
are stopped by their pid. As root, PostgreSQL runs as the ``postgres`` OS user through
``setpriv``, which execs instead of forking, so the child's pid *is* the postmaster.

Measured here (2 CPUs, PostgreSQL 15, Redis 7.0, medians of 5): a new PostgreSQL
(initdb + start + first session) 0.97 s, of which start alone 0.09 s; restart (fast or
immediate) 0.08 s; kill 0.02 s, start after it (crash recovery) 0.07 s. Redis: start
0.06 s, restart 0.13 s, kill 0.01 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

from tests.support.processes import (
    AirflowEnvError,
    ManagedProcess,
    descendants,
    free_port,
    poll_until,
    still_running,
)

PG_ROOT = Path("/usr/lib/postgresql")
PG_OS_USER = "postgres"
StopMode = Literal["smart", "fast", "immediate"]
_STOP_SIGNALS: dict[str, signal.Signals] = {
    "smart": signal.SIGTERM,
    "fast": signal.SIGINT,
    "immediate": signal.SIGQUIT,
}
FAST_PG_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    # Not "off": with it a SIGKILL loses commits already acknowledged (seen here: a CREATE
    # TABLE gone after kill()), a fake "lost token". With fsync=off, "on" costs one write().
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "100",
    "jit": "off",
    "huge_pages": "off",
}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_LIVE: set[_Service] = set()


def pg_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has ``postgres`` and ``initdb``."""
    versions = [p for p in PG_ROOT.glob("*/bin") if (p / "postgres").exists() and (p / "initdb").exists()]
    versions.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else None


def private_postgres_unavailable_reason() -> str | None:
    if pg_bin_dir() is None:
        return f"no PostgreSQL server binaries under {PG_ROOT}/<version>/bin (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            return "running as root needs setpriv (util-linux) to start PostgreSQL as another user"
        try:
            import pwd

            pwd.getpwnam(PG_OS_USER)
        except KeyError:
            return f"running as root, but there is no {PG_OS_USER!r} OS user to run PostgreSQL as"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed"
    return None


def private_redis_unavailable_reason() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not on PATH (apt-get install redis-server)"
    return None


def _redis_ping(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class _Service:
    """What both servers share: a temp dir, a port, one ManagedProcess at a time, timings."""

    name = "service"

    def __init__(self, port: int | None, base_dir: Path | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"aac-private-{self.name}-", dir=base_dir))
        self.port = port or free_port()
        self.log_path = self.root / f"{self.name}.log"
        self.process: ManagedProcess | None = None
        self.last_start_seconds: float | None = None
        self.last_stop_seconds: float | None = None
        self._closed = False
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.alive() else None

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def log_tail(self) -> str:
        return self.process.log_tail() if self.process is not None else f"<{self.name} never started>"

    def _spawn(self, args: list[str], env: dict[str, str], ready: float) -> None:
        if self.alive():
            return
        if self._closed:
            raise AirflowEnvError(f"{self.name} in {self.root} was closed")
        started = time.monotonic()
        self.process = ManagedProcess(self.name, args, env, self.log_path, cwd=self.root)
        try:
            self.wait_ready(ready)
        except BaseException:
            self.kill()
            raise
        self.last_start_seconds = time.monotonic() - started

    def _ping(self) -> bool:
        raise NotImplementedError

    def is_up(self) -> bool:
        """Alive and answering right now."""
        return self.alive() and self._ping()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the server answers; fails at once, with the log tail, if the process died."""

        def probe() -> bool | None:
            if self.process is not None:
                self.process.check_alive()
            return self._ping() or None

        poll_until(
            probe,
            timeout=timeout,
            interval=0.05,
            what=f"{self.name} on port {self.port}",
            on_timeout=self.log_tail,
        )

    def kill(self) -> None:
        """SIGKILL the server and all its descendants, and wait until they are gone."""
        proc = self.process
        if proc is None:
            return
        if proc.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGSTOP)  # no new children while we list them
            family = descendants(proc.pid)
            for pid in [proc.pid, *(pid for pid, started in family if still_running(pid, started))]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            poll_until(
                lambda: not any(still_running(pid, started) for pid, started in family) or None,
                timeout=10,
                interval=0.02,
                what=f"the children of {self.name} (pid {proc.pid}) to exit",
            )
        proc.stop()

    def close(self) -> None:
        """Stop the server (without ceremony: nothing in it is kept) and remove its directory."""
        if self._closed:
            return
        self._closed = True
        try:
            self.kill()
        finally:
            _LIVE.discard(self)
            shutil.rmtree(self.root, ignore_errors=True)


class PrivatePostgres(_Service):
    """``initdb`` + ``postgres`` on a free port of 127.0.0.1, trust auth, user ``postgres``.

    ``stop(mode)`` sends the postmaster the shutdown signal of that mode (smart: SIGTERM,
    fast: SIGINT, immediate: SIGQUIT); ``kill()`` is a crash (SIGKILL), after which
    ``start()`` runs crash recovery. Sessions opened before a stop or kill are gone after it.
    """

    name = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        reason = private_postgres_unavailable_reason()
        if reason:
            raise AirflowEnvError(reason)
        super().__init__(port, base_dir)
        self.bin_dir = pg_bin_dir() or PG_ROOT
        self.data_dir = self.root / "data"
        self.settings = {**FAST_PG_SETTINGS, "unix_socket_directories": str(self.root), **(settings or {})}
        self.initdb_seconds: float | None = None
        try:
            self._initdb()
        except BaseException:
            self.close()
            raise

    def _as_owner(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        return [
            "setpriv",
            f"--reuid={PG_OS_USER}",
            f"--regid={PG_OS_USER}",
            "--init-groups",
            "--pdeathsig",
            "SIGINT",
            "--",
        ]

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            closed = [p for p in self.root.parents if not p.stat().st_mode & 0o001]
            if closed:
                raise AirflowEnvError(
                    f"the {PG_OS_USER} OS user cannot enter {closed[0]}; choose another base_dir"
                )
            shutil.chown(self.root, user=PG_OS_USER, group=PG_OS_USER)
        started = time.monotonic()
        args = [*self._as_owner(), str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres"]
        args += ["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C", "--no-instructions"]
        result = subprocess.run(
            args, env=self._env(), cwd=self.root, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise AirflowEnvError(f"initdb exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        self.initdb_seconds = time.monotonic() - started

    @property
    def url(self) -> str:
        """libpq URL of the ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def sqlalchemy_url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 30.0) -> PrivatePostgres:
        """Start the postmaster (no-op while it runs) and wait until it accepts sessions."""
        settings = [arg for key, value in self.settings.items() for arg in ("-c", f"{key}={value}")]
        args = [
            *self._as_owner(),
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
        ]
        self._spawn([*args, *settings], self._env(), timeout)
        return self

    def _ping(self) -> bool:
        import psycopg2

        try:
            psycopg2.connect(self.url, connect_timeout=2).close()
        except psycopg2.OperationalError:
            return False
        return True

    def stop(self, mode: StopMode = "fast", timeout: float = 30.0) -> None:
        """Shut down in ``mode``; SIGKILL if it is not down within ``timeout``."""
        proc = self.process
        if proc is None or not proc.alive():
            return
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, _STOP_SIGNALS[mode])
        try:
            proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        proc.stop()
        self.last_stop_seconds = time.monotonic() - started

    def restart(self, mode: StopMode = "fast", timeout: float = 30.0) -> PrivatePostgres:
        self.stop(mode, timeout)
        return self.start(timeout)

    def kill(self) -> None:
        """Crash: SIGKILL the postmaster and its children; the next ``start()`` recovers."""
        super().kill()
        # The lock file names a pid that is gone (or, later, someone else's); a start that
        # found it could refuse to run. Every process of the old server has exited by now.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name``; returns its libpq URL."""
        if not _IDENTIFIER.match(name):
            raise ValueError(f"database name must be a plain identifier, not {name!r}")
        import psycopg2

        conn = psycopg2.connect(self.url, connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def __enter__(self) -> PrivatePostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateRedis(_Service):
    """``redis-server`` on a free port of 127.0.0.1 that keeps nothing: a restart loses every key."""

    name = "redis"

    def __init__(self, *, port: int | None = None, base_dir: Path | None = None) -> None:
        reason = private_redis_unavailable_reason()
        if reason:
            raise AirflowEnvError(reason)
        super().__init__(port, base_dir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> PrivateRedis:
        """Start (no-op while it runs) on this instance's port and wait for PONG."""
        args = [str(shutil.which("redis-server")), "--port", str(self.port), "--bind", "127.0.0.1"]
        args += [
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.root),
            "--logfile",
            "",
        ]
        self._spawn(args, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout)
        return self

    def _ping(self) -> bool:
        return _redis_ping(self.port)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Redis exits without saving: there is nothing to save); SIGKILL after ``timeout``."""
        proc = self.process
        if proc is None or not proc.alive():
            return
        started = time.monotonic()
        proc.stop(timeout=timeout)
        self.last_stop_seconds = time.monotonic() - started

    def restart(self, timeout: float = 15.0) -> PrivateRedis:
        self.stop(timeout)
        return self.start(timeout)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_leftovers() -> None:
    """Registered after airflow_env's sweep, so it runs first: servers stop by pid, dirs go."""
    for service in list(_LIVE):
        with contextlib.suppress(Exception):
            service.close()
