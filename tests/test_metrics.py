"""The provider's metrics, as a StatsD server receives them from a real Airflow process.

A UDP socket on 127.0.0.1 is the StatsD server. A fresh interpreter configured for a
real Airflow home (metadata DB on PostgreSQL, ``[metrics] statsd_on`` through
``AIRFLOW__METRICS__*``) drives refreshes and ``/v4`` calls against the simulator while
the test process injects its faults: a 401, a 503, a rate-limited token endpoint, a
revoked token family.
"""

from __future__ import annotations

import json
import re
import socket
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.sdk._shared.observability.metrics import stats as airflow_metrics

from airflow_provider_aac import metrics
from airflow_provider_aac.core import errors as core_errors
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import AirflowHome

JWT = re.compile(r"eyJ[\w-]+\.[\w-]+")
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from airflow_provider_aac.errors import AACError
    from airflow_provider_aac.hooks.aac import AACHook

    good, revoked = sys.argv[1], sys.argv[2]
    hook = AACHook(good)
    out = {"after_401": hook.request("GET", "/v4/people/current").status_code}
    out["after_503"] = hook.request("GET", "/v4/plans").status_code
    out["forced"] = hook.refresh_tokens(force=True).refreshed
    try:
        AACHook(revoked).refresh_tokens(force=True)
    except AACError as err:
        out["revoked"] = type(err).__name__
    print("RESULT " + json.dumps(out))
    """
)


class StatsdListener:
    """A StatsD server of the simplest kind: every datagram it receives, kept as text."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.datagrams: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.datagrams.append(data.decode("utf-8", errors="replace"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def lines(self) -> list[str]:
        return [line for datagram in self.datagrams for line in datagram.splitlines() if line]


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    try:
        yield listener
    finally:
        listener.close()


def statsd_env(port: int) -> dict[str, str]:
    return {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        # Tags as InfluxDB-style name suffixes (name,tag=value), so a plain socket can read them.
        "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True",
        "_AIRFLOW_PROCESS_CONTEXT": "server",
    }


def parse(line: str) -> tuple[str, dict[str, str], str]:
    """``name,k=v,...:value|type`` into the name, its tags and the type."""
    head, _, rest = line.partition(":")
    name, *pairs = head.split(",")
    return name, dict(pair.split("=", 1) for pair in pairs), rest.rpartition("|")[2]


def test_refreshes_retries_and_replacements_reach_statsd(
    airflow_pg_home: AirflowHome, statsd: StatsdListener
) -> None:
    good, revoked = "aac_metrics_good", "aac_metrics_revoked"
    airflow_pg_home.add_lock_connection("aac_metrics_lock", "postgres")
    with AACSimulator(access_ttl=300) as sim:
        airflow_pg_home.add_aac_connection(good, sim, lock_conn_id="aac_metrics_lock")
        airflow_pg_home.add_aac_connection(revoked, sim)
        sim.revoke_family_of(airflow_pg_home.get_connection_extra(revoked)["refresh_token"])
        sim.fail_api(401, times=1, path_prefix="/v4/people/current")
        sim.fail_api(503, times=1, path_prefix="/v4/plans")
        sim.fail_token_endpoint(429, times=1, retry_after=0.1)
        code = SCRIPT.replace("sys.argv[1], sys.argv[2]", f"{good!r}, {revoked!r}")
        result = airflow_pg_home.run_python(code, env=statsd_env(statsd.port))
        stats = sim.stats()
    out = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert out == {"after_401": 200, "after_503": 200, "forced": True, "revoked": "AACTokenChainBrokenError"}
    assert stats["refreshes"] == 2 and stats["reuses"] == 0

    lines = statsd.lines()
    assert not any(JWT.search(datagram) for datagram in statsd.datagrams), "a token reached a metric"
    seen = Counter((name, tuple(sorted(tags.items())), kind) for name, tags, kind in map(parse, lines))

    def count(name: str, kind: str, **tags: str) -> int:
        return seen[(f"airflow.{name}", tuple(sorted(tags.items())), kind)]

    assert count("aac.api.token_replacement", "c", conn_id=good, outcome="refreshed") == 1
    assert count("aac.api.retry", "c", conn_id=good, status="503") == 1
    assert count("aac.token_endpoint.retry", "c", conn_id=good, status="429") == 1
    assert count("aac.token.refresh", "c", conn_id=good, mode="metadata_db", outcome="refreshed") == 2
    assert (
        count("aac.token.refresh.duration", "ms", conn_id=good, mode="metadata_db", outcome="refreshed") == 2
    )
    assert count("aac.token.lock.wait", "ms", conn_id=good, backend="postgres", outcome="acquired") == 2
    assert count("aac.token.refresh", "c", conn_id=revoked, mode="metadata_db", outcome="chain_broken") == 1
    assert count("aac.token.refresh", "c", conn_id=good, mode="metadata_db", outcome="chain_broken") == 0
    # Airflow's legacy names (on by default) spell the tags out, for StatsD servers without tags.
    legacy = f"aac.token.refresh.{revoked}.metadata_db.chain_broken"
    assert count(legacy, "c", conn_id=revoked, mode="metadata_db", outcome="chain_broken") == 1


def test_every_metric_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    for metric in metrics.METRICS:
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{metric.name}` |")), None)
        assert row is not None, f"{metric.name} has no row in docs/metrics.md"
        assert f"| {metric.type} |" in row and all(f"`{tag}`" in row for tag in metric.tags), row
    for outcome in metrics.REFRESH_OUTCOMES:
        assert f"`{outcome}`" in doc, outcome


def test_a_broken_backend_costs_the_metric_not_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's metrics backend failing (a StatsD client whose socket errors) is Airflow's to configure."""
    failed: list[str] = []

    class Broken:
        def incr(self, stat: str, *args: object, **kwargs: object) -> None:
            failed.append(stat)
            raise OSError("statsd is down")

        timing = incr

    monkeypatch.setattr(airflow_metrics, "_factory", Broken)
    monkeypatch.setattr(airflow_metrics, "_backend", None)
    metrics.refresh_finished("aac_default", "lock", "refreshed", 0.5)
    metrics.run_finished("plan", "success", 12.0)
    assert "aac.token.refresh" in failed and "aac.run.duration" in failed, failed


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (core_errors.AACTokenChainBrokenError("x"), "chain_broken"),
        (core_errors.AACRefreshOutcomeUnknownError("x"), "outcome_unknown"),
        (core_errors.AACPairHeldError("x"), "pair_held"),
        (core_errors.AACLockTimeoutError("x"), "lock_timeout"),
        (core_errors.AACLockUnavailableError("x"), "lock_unavailable"),
        (core_errors.AACStoreUnavailableError("x"), "store_unavailable"),
        (core_errors.AACRefreshNotPublishedError("x"), "not_published"),
        (core_errors.AACClientRejectedError("x"), "client_rejected"),
        (core_errors.AACConfigError("x"), "config"),
        (core_errors.AACTransientError("x"), "transient"),
        (core_errors.AACStoreConflictError("x"), "error"),
        (core_errors.AACApiError("x", status_code=503), "error"),
    ],
)
def test_each_error_names_its_refresh_outcome(error: core_errors.AACError, outcome: str) -> None:
    assert error.outcome == outcome == metrics.refresh_outcome(error)
    assert outcome == "error" or outcome in metrics.REFRESH_OUTCOMES


def test_an_error_not_ours_is_an_error_outcome() -> None:
    assert metrics.refresh_outcome(ValueError("x")) == "error"
