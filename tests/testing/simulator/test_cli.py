"""The command line: serving until SIGTERM, ready and pair files, no tokens in the output."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.processes import poll_until
from tests.testing.simulator.helpers import TIMEOUT


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    ready_file, pair_file = tmp_path / "ready", tmp_path / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator"]
    command += ["--ready-file", str(ready_file), "--pair-file", str(pair_file), "--verbose"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = poll_until(
            lambda: ready_file.read_text() if ready_file.exists() else None,
            timeout=20,
            interval=0.02,
            what="the simulator's ready file",
        )
        pair = json.loads(pair_file.read_text())
        mode = stat.S_IMODE(pair_file.stat().st_mode)
        person = requests.get(
            base_url + "/v4/people/current",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
            timeout=TIMEOUT,
        )
        stats = requests.get(base_url + "/_sim/stats", timeout=TIMEOUT).json()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0
    assert mode == 0o600
    assert pair["token_url"] == base_url + "/as/token"
    assert person.status_code == 200
    assert stats["api_authorized"] == 1
    assert stdout.strip() == f"AAC simulator listening on {base_url}"
    assert "/v4/people/current" in stderr  # --verbose logs requests ...
    leaked = any(pair[key] in stdout + stderr for key in ("access_token", "refresh_token"))
    assert not leaked  # ... but never tokens


def test_cli_takes_pingones_grace_period(tmp_path: Path) -> None:
    ready_file, pair_file = tmp_path / "ready", tmp_path / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator", "--reuse-grace", "20"]
    command += ["--refresh-deadline", "sliding", "--refresh-cap", "3600"]
    command += ["--ready-file", str(ready_file), "--pair-file", str(pair_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = poll_until(
            lambda: ready_file.read_text() if ready_file.exists() else None,
            timeout=20,
            interval=0.02,
            what="the simulator's ready file",
        )
        pair = json.loads(pair_file.read_text())
        form = {
            "grant_type": "refresh_token",
            "refresh_token": pair["refresh_token"],
            "client_id": pair["client_id"],
        }
        answers = [requests.post(base_url + "/as/token", data=form, timeout=TIMEOUT) for _ in range(2)]
        stats = requests.get(base_url + "/_sim/stats", timeout=TIMEOUT).json()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert [answer.status_code for answer in answers] == [200, 200]
    same = answers[0].json() == answers[1].json()
    assert same
    assert (stats["grace_replays"], stats["reuses"]) == (1, 0)


def test_cli_serves_without_the_operations_named(tmp_path: Path) -> None:
    ready_file, pair_file = tmp_path / "ready", tmp_path / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator", "--without-operation"]
    command += ["runFlow", "--ready-file", str(ready_file), "--pair-file", str(pair_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = poll_until(
            lambda: ready_file.read_text() if ready_file.exists() else None,
            timeout=20,
            interval=0.02,
            what="the simulator's ready file",
        )
        headers = {"Authorization": f"Bearer {json.loads(pair_file.read_text())['access_token']}"}
        run = requests.post(base_url + "/v4/flows/10/run", json={}, headers=headers, timeout=TIMEOUT)
        spec = requests.get(base_url + "/v4/open-api-spec", headers=headers, timeout=TIMEOUT).json()
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    refused = subprocess.run(
        [sys.executable, "-m", "airflow_provider_aac.testing.simulator", "--without-operation", "runFlowz"],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (run.status_code, run.json()["exception"]["name"]) == (404, "RouteNotFoundException")
    assert "/v4/flows/{id}/run" not in spec["paths"] and "/v4/flows" in spec["paths"]
    assert refused.returncode == 2 and "unknown operations ['runFlowz']" in refused.stderr
