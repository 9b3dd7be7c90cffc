"""Airflow CLI commands in one long-lived interpreter per home.

Each ``airflow`` process pays about 3 s here to import Airflow before it runs a command,
and the suites run hundreds of ``connections add`` and ``pools set``. Those commands are
pure metadata-DB work through Airflow's own CLI code, so one interpreter per home runs
them one after another, parsed by Airflow's own parser, with the same environment,
answers and exit codes as a fresh ``airflow`` process. Everything else (``db migrate``,
commands that start components or run tasks) still gets a process of its own.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

# Commands that only read or write metadata-DB rows and leave no state in the interpreter.
IN_PROCESS_COMMANDS = frozenset(
    {
        ("connections", "add"),
        ("connections", "delete"),
        ("connections", "get"),
        ("pools", "set"),
        ("pools", "delete"),
        ("variables", "set"),
        ("variables", "get"),
        ("variables", "delete"),
    }
)

_SERVER = r"""
import contextlib, io, json, os, sys, traceback

answers = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # anything written straight to fd 1 lands in the log, not in the answers
sys.stdout = sys.__stdout__ = os.fdopen(1, "w", buffering=1)

from airflow.cli.cli_parser import get_parser

parser = get_parser()
answers.write("ready\n")
answers.flush()
for line in sys.stdin:
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            args = parser.parse_args(json.loads(line))
            args.func(args)
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=err)
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        except BaseException:
            traceback.print_exc(file=err)
            code = 1
    answers.write(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}) + "\n")
    answers.flush()
"""


def runs_in_process(args: Sequence[str]) -> bool:
    return tuple(args[:2]) in IN_PROCESS_COMMANDS


class CliRunner:
    """One interpreter that runs :data:`IN_PROCESS_COMMANDS` for one home and environment."""

    def __init__(self, env: Mapping[str, str], cwd: Path, log_path: Path) -> None:
        self.env = dict(env)
        self._log = log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            env=self.env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            start_new_session=True,
        )
        self._read_line(timeout=180.0)

    def run(self, args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        stdin = self._pipe(self._proc.stdin)
        stdin.write(json.dumps(list(args)) + "\n")
        stdin.flush()
        answer = json.loads(self._read_line(timeout=timeout))
        return subprocess.CompletedProcess(
            ["airflow", *args], answer["code"], answer["stdout"], answer["stderr"]
        )

    def _read_line(self, *, timeout: float) -> str:
        stdout = self._pipe(self._proc.stdout)
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            self.close()
            raise subprocess.TimeoutExpired(["airflow (in-process CLI)"], timeout)
        line = stdout.readline()
        if not line:
            self.close()
            raise OSError(
                f"the in-process Airflow CLI ended (exit {self._proc.returncode}); see {self._log.name}"
            )
        return line

    @staticmethod
    def _pipe(pipe: IO[str] | None) -> IO[str]:
        if pipe is None:
            raise OSError("the in-process Airflow CLI has no pipes")
        return pipe

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._log.close()
