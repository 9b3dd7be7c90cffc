"""The command line: serving until SIGTERM, ready and pair files, no tokens in the output."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support.processes import poll_until
from tests.testing.simulator.helpers import TIMEOUT


@dataclass
class ServingCli:
    """A simulator started from the command line; ``stdout``/``stderr`` are filled once it stopped."""

    base_url: str
    pair_file: Path
    process: subprocess.Popen[str]
    pair: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""


@contextmanager
def serving_cli(tmp_path: Path, *options: str) -> Iterator[ServingCli]:
    """Start ``python -m ...simulator`` with ``options``; leaving the block sends SIGTERM and waits."""
    ready_file, pair_file = tmp_path / "ready", tmp_path / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator", *options]
    command += ["--ready-file", str(ready_file), "--pair-file", str(pair_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = poll_until(
            lambda: ready_file.read_text() if ready_file.exists() else None,
            timeout=20,
            interval=0.02,
            what="the simulator's ready file",
        )
        cli = ServingCli(base_url, pair_file, process, pair=json.loads(pair_file.read_text()))
        yield cli
        process.send_signal(signal.SIGTERM)
        cli.stdout, cli.stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    with serving_cli(tmp_path, "--verbose") as cli:
        base_url, pair = cli.base_url, cli.pair
        mode = stat.S_IMODE(cli.pair_file.stat().st_mode)
        person = requests.get(
            base_url + "/v4/people/current",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
            timeout=TIMEOUT,
        )
        stats = requests.get(base_url + "/_sim/stats", timeout=TIMEOUT).json()
    stdout, stderr = cli.stdout, cli.stderr

    assert cli.process.returncode == 0
    assert mode == 0o600
    assert pair["token_url"] == base_url + "/as/token"
    assert person.status_code == 200
    assert stats["api_authorized"] == 1
    assert stdout.strip() == f"AAC simulator listening on {base_url}"
    assert "/v4/people/current" in stderr  # --verbose logs requests ...
    leaked = any(pair[key] in stdout + stderr for key in ("access_token", "refresh_token"))
    assert not leaked  # ... but never tokens


def test_cli_takes_pingones_grace_period(tmp_path: Path) -> None:
    grace = ("--reuse-grace", "20", "--refresh-deadline", "sliding", "--refresh-cap", "3600")
    with serving_cli(tmp_path, *grace) as cli:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": cli.pair["refresh_token"],
            "client_id": cli.pair["client_id"],
        }
        answers = [requests.post(cli.base_url + "/as/token", data=form, timeout=TIMEOUT) for _ in range(2)]
        stats = requests.get(cli.base_url + "/_sim/stats", timeout=TIMEOUT).json()

    assert [answer.status_code for answer in answers] == [200, 200]
    same = answers[0].json() == answers[1].json()
    assert same
    assert (stats["grace_replays"], stats["reuses"]) == (1, 0)


def test_cli_serves_without_the_operations_named(tmp_path: Path) -> None:
    with serving_cli(tmp_path, "--without-operation", "runFlow") as cli:
        headers = {"Authorization": f"Bearer {cli.pair['access_token']}"}
        run = requests.post(cli.base_url + "/v4/flows/10/run", json={}, headers=headers, timeout=TIMEOUT)
        spec = requests.get(cli.base_url + "/v4/open-api-spec", headers=headers, timeout=TIMEOUT).json()
    refused = subprocess.run(
        [sys.executable, "-m", "airflow_provider_aac.testing.simulator", "--without-operation", "runFlowz"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (run.status_code, run.json()["exception"]["name"]) == (404, "RouteNotFoundException")
    assert "/v4/flows/{id}/run" not in spec["paths"] and "/v4/flows" in spec["paths"]
    assert refused.returncode == 2 and "unknown operations ['runFlowz']" in refused.stderr
