"""One fault scenario: the simulator behind a proxy, a connection in a mode, refreshers to start.

Everything a user would run is real: the refreshers are separate Airflow processes (server
context, so they read the connection from the metadata DB as Airflow's own components
do; in lock mode they still lock with PostgreSQL or Redis and write through the real
api-server, as workers must), the token endpoint and the api-server sit behind fault
proxies, and the simulator counts what AAC would see. The test holds the faults' events
and decides when to pause, kill or release. No token is ever printed.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.fault_proxy import FaultProxy

REPO_ROOT = Path(__file__).resolve().parents[2]
REFRESH = "grant_type=refresh_token"
TOKEN_PATH = "/as/token"
# Short enough that takeovers after a fault take seconds; the provider's default is 60 s.
LEASE = 8.0
MODES = ("metadata_db", "lock_postgres", "lock_redis", "single_writer")


def answered(proxy: FaultProxy, action: str, method: str | None = None) -> int:
    """How many requests the proxy answered with ``action`` ("down", "forward", ...)."""
    return sum(1 for entry in proxy.log if entry.action == action and method in (None, entry.method))


@dataclass
class Refresher:
    """A running refresher process; ``result()`` is what its user saw."""

    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        out, err = self.process.communicate(timeout=timeout)
        assert "eyJ" not in out + err, "a JWT reached the refresher's output"
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert lines, (
            f"the refresher printed no result (exit {self.process.returncode}); stderr:\n{err[-3000:]}"
        )
        parsed: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
        parsed["stderr"] = err
        return parsed

    def killed(self, timeout: float = 30.0) -> int:
        self.process.communicate(timeout=timeout)
        return self.process.returncode

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


@dataclass
class Scene:
    home: AirflowHome
    sim: AACSimulator
    token_proxy: FaultProxy
    api_proxy: FaultProxy | None
    conn_id: str
    started: list[Refresher] = field(default_factory=list)

    def start(self, action: str = "force", env: dict[str, str] | None = None) -> Refresher:
        command = [sys.executable, "-m", "tests.faults.refresher", self.conn_id, action]
        process = subprocess.Popen(
            command,
            env=self.home.env(_AIRFLOW_PROCESS_CONTEXT="server", **(env or {})),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        refresher = Refresher(process)
        self.started.append(refresher)
        return refresher

    def run(self, action: str = "force", env: dict[str, str] | None = None) -> dict[str, Any]:
        return self.start(action, env).result()

    def token_rule(self, times: int | None = 1) -> Any:
        """A rule for the refresh POSTs, to add an action to (``.hold_response()``, ...)."""
        return self.token_proxy.on("POST", TOKEN_PATH, body_contains=REFRESH, times=times)

    def stored(self) -> dict[str, Any]:
        return self.home.get_connection_extra(self.conn_id)

    def edit(self, api: ApiServer, **changes: Any) -> None:
        """Change keys of the extra the way a person does: the UI's form, saved through the REST API."""
        shown = api.request_ok("GET", f"/api/v2/connections/{self.conn_id}")
        extra = {**json.loads(shown["extra"]), **changes}
        api.request_ok(
            "PATCH",
            f"/api/v2/connections/{self.conn_id}",
            json={"connection_id": self.conn_id, "conn_type": shown["conn_type"], "extra": json.dumps(extra)},
        )

    def held_on_disk(self) -> list[Path]:
        """The pairs this connection's refreshes hold in the home's local spool."""
        return sorted((self.home.path / "aac_rescue").glob(f"{self.conn_id}.*.pair"))

    def chain(self) -> dict[str, Any]:
        """The stored refresh token's family as AAC sees it, without spending anything."""
        return self.sim.family_info(self.stored()["refresh_token"])

    def assert_chain_alive(self) -> None:
        stats = self.sim.stats()
        assert stats["reuses"] == 0, stats
        assert stats["families_revoked"] == 0, stats
        family = self.chain()
        assert family["revoked"] is False
        status = self.sim.refresh_token_status(self.stored()["refresh_token"])
        assert status == "live", f"the stored refresh token must be the live end of the chain, not {status}"


def connection_extra(mode: str, api_conn_id: str | None, **extra: Any) -> dict[str, Any]:
    chosen: dict[str, Any] = {"refresh_lease": LEASE, **extra}
    if mode == "metadata_db":
        chosen.setdefault("refresh_mode", "metadata_db")
    elif mode == "single_writer":
        chosen.setdefault("refresh_mode", "single_writer")
        chosen.setdefault("airflow_api_conn_id", api_conn_id)
    else:
        chosen.setdefault("refresh_mode", "lock")
        chosen.setdefault("lock_conn_id", extra.get("lock_conn_id") or f"fault_{mode}")
        chosen.setdefault("airflow_api_conn_id", api_conn_id)
    return chosen


@contextmanager
def scene(
    home: AirflowHome,
    mode: str,
    *,
    api_server: ApiServer | None = None,
    access_ttl: float = 300.0,
    token_server: dict[str, Any] | None = None,
    **extra: Any,
) -> Iterator[Scene]:
    """A simulator, its token proxy, an api proxy (REST modes) and a fresh connection in ``mode``.

    Connections are created through ``api_server``'s REST API when there is one (seconds
    faster than the CLI, and what the UI does), else with the CLI. ``token_server`` sets
    the simulator's PingOne options (``reuse_grace``, ``refresh_cap``, ...): AAC's side,
    which no user configures.
    """
    connections = api_server or home
    with ExitStack() as stack:
        sim = stack.enter_context(AACSimulator(access_ttl=access_ttl, **(token_server or {})))
        token_proxy = stack.enter_context(FaultProxy(sim.base_url))
        api_proxy = None
        api_conn_id = None
        if mode != "metadata_db":
            assert api_server is not None, f"{mode} mode writes through an api-server"
            api_proxy = stack.enter_context(FaultProxy(api_server.base_url))
            api_conn_id = f"fault_api_{uuid.uuid4().hex[:8]}"
            connections.add_connection(
                api_conn_id,
                "http",
                host=api_proxy.base_url,
                login=api_server.username,
                password=api_server.password,
            )
        conn_id = f"aac_fault_{uuid.uuid4().hex[:10]}"
        connections.add_aac_connection(
            conn_id,
            sim,
            token_url=token_proxy.base_url + TOKEN_PATH,
            **connection_extra(mode, api_conn_id, **extra),
        )
        current = Scene(home, sim, token_proxy, api_proxy, conn_id)
        try:
            yield current
        finally:
            for refresher in current.started:
                refresher.stop()
