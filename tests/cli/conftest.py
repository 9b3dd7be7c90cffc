"""Running ``airflow aac`` and ``airflow-aac`` as a user does: installed commands, a real home.

``terminal`` runs a command on a pseudo-terminal and answers its prompts, so a prompt
that echoed what is typed would show the typed token in the captured screen.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet

from airflow_provider_aac.core.keeping import HeldPair
from airflow_provider_aac.core.oauth import refresh_form
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.core.token_state import fingerprint
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.tokens.rescue_places import LocalSpool
from tests.support.airflow_env import AirflowHome

ENTRY_POINTS = {
    "airflow aac": [sys.executable, "-m", "airflow", "aac"],
    "airflow-aac": [str(Path(sys.executable).parent / "airflow-aac")],
}
TIMEOUT = 120.0


def aac(
    home: AirflowHome, *args: str, entry: str = "airflow aac", stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One command, with the home's environment and nothing that says which process it is."""
    return subprocess.run(
        [*ENTRY_POINTS[entry], *args],
        env=home.env(),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=home.path,
    )


@dataclass(frozen=True)
class Screen:
    returncode: int
    text: str


def terminal(home: AirflowHome, args: Sequence[str], answers: Sequence[tuple[str, str]]) -> Screen:
    """Run ``airflow aac ARGS`` on a pseudo-terminal; type each answer once its prompt shows."""
    command = [*ENTRY_POINTS["airflow aac"], *args]
    env = home.env()
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command, with the pty as its controlling terminal
        os.chdir(home.path)
        os.execve(command[0], command, env)
    screen = b""
    deadline = time.monotonic() + TIMEOUT
    pending = list(answers)
    try:
        while time.monotonic() < deadline:
            if pending and pending[0][0].encode() in screen:
                prompt, answer = pending.pop(0)
                screen = screen.replace(prompt.encode(), f"<{prompt}>".encode(), 1)
                os.write(fd, answer.encode() + b"\n")
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the command exited and closed the terminal
                break
            if not chunk:
                break
            screen += chunk
        else:
            os.kill(pid, 9)
            raise AssertionError(
                f"the command did not finish in {TIMEOUT} s:\n{screen.decode(errors='replace')}"
            )
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return Screen(os.waitstatus_to_exitcode(status), screen.decode(errors="replace"))


def no_token_in(text: str, *tokens: str) -> bool:
    """No JWT-looking text and none of the given secrets."""
    return "eyJ" not in text and not any(token and token in text for token in tokens)


def hold_a_refreshed_pair(home: AirflowHome, sim: AACSimulator, conn_id: str) -> tuple[str, dict[str, Any]]:
    """Spend the stored refresh token and hold AAC's answer in the home's spool.

    What a refresh leaves behind when AAC answered and the store failed. Returns the
    spent refresh token and the answer.
    """
    spent = home.get_connection_extra(conn_id)["refresh_token"]
    answer = requests.post(sim.token_url, data=refresh_form(spent, sim.client_id), timeout=10).json()
    now = time.time()
    LocalSpool(home.path / "aac_rescue", Fernet(home.fernet_key.encode())).hold(
        HeldPair(
            conn_id,
            fingerprint(spent),
            TokenGrant(answer["access_token"], answer["refresh_token"], answer["expires_in"]),
            requested_at=now,
            held_at=now,
            by="worker-7:1234",
        )
    )
    return spent, answer
