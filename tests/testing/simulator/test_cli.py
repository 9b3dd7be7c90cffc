"""The command line: serving until SIGTERM, ready and pair files, no tokens in the output."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from pathlib import Path

import requests

from airflow_provider_aac.testing.processes import poll_until
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
