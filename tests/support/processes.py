"""Processes a test starts, and how it waits for them without sleeping blind.

Every process is started in its own session with a parent-death signal, registered for
an ``atexit`` sweep, and stopped by process group and then by its recorded descendants,
so a crashed test run leaves nothing behind. Process groups alone are not enough:
Airflow's task supervisor and PostgreSQL's children leave the group. A (pid, start time)
pair names a process unambiguously even after its pid is reused.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class AirflowEnvError(RuntimeError):
    """A harness step failed; the message carries the log tail needed to see why."""


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def file_tail(path: Path, lines: int = 60) -> str:
    try:
        return tail(path.read_text(errors="replace"), lines)
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


# --------------------------------------------------------------------------- /proc


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time in clock ticks) of ``pid`` from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the ")" that ends the command name start at field 3 (state).
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as (pid, start time), recorded so it can be reaped by id."""
    children: dict[int, list[tuple[int, int]]] = {}
    proc = Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else []:
        if entry.name.isdigit() and (info := _proc_stat(int(entry.name))) is not None:
            children.setdefault(info[1], []).append((int(entry.name), info[2]))
    found: list[tuple[int, int]] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def still_running(pid: int, started: int) -> bool:
    """Whether the process recorded as (pid, start time) runs: zombies count as gone
    (a container's pid 1 may never reap them)."""
    info = _proc_stat(pid)
    return info is not None and info[2] == started and info[0] != "Z"


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


_LIVE_PROCESSES: set[ManagedProcess] = set()


class ManagedProcess:
    """One long-running server, started in its own session, logging to a file."""

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
        return f"--- {self.name} log {self.log_path} (tail) ---\n{file_tail(self.log_path, lines)}"

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
            self._recorded_descendants = descendants(self.pid)
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
            if still_running(pid, started):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        self._log.close()
        _LIVE_PROCESSES.discard(self)


def stop_leftover_processes() -> None:
    """Stop every process whose owner's teardown never ran."""
    for proc in list(_LIVE_PROCESSES):
        with contextlib.suppress(Exception):
            proc.stop(timeout=5)


atexit.register(stop_leftover_processes)
