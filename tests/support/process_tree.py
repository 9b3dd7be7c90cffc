"""Processes by parentage, read from /proc, for stopping exactly what a test started.

Process groups are not enough: PostgreSQL makes each child its own group leader, and
Airflow's task supervisor leaves its group too. A (pid, start time) pair names a process
unambiguously even after its pid is reused.
"""

from __future__ import annotations

from pathlib import Path


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of ``pid`` from /proc; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of ``pid`` as (pid, start time)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            children.setdefault(info[1], []).append((int(entry.name), info[2]))
    found: list[tuple[int, int]] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child[0])
    return found


def alive(pid: int, started: int) -> bool:
    """Still running: zombies count as gone (a container's pid 1 may never reap them)."""
    info = _stat(pid)
    return info is not None and info[2] == started and info[0] != "Z"
