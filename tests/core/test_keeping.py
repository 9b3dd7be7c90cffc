"""Keeping a new pair until it is stored: the refresher's patience and its rescue places.

The store here is the in-memory double of tests/core/test_refresh.py, failing the way
Airflow's REST API does during a restart (``AACStoreUnavailableError``); the clock is a
fake one the refresher's sleeps move forward, so minutes of outage take milliseconds.
The token endpoint is the real simulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
import requests

from airflow_provider_aac.core.errors import AACPairHeldError, AACStoreUnavailableError
from airflow_provider_aac.core.keeping import HeldPair, MemoryPlace, Rescue
from airflow_provider_aac.core.refresh import Refresher
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.core.token_state import TokenState, Version, fingerprint
from airflow_provider_aac.core.token_store import Change
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.transport.token_post import requests_token_transport
from tests.core.test_refresh import CONN, FAST_BACKOFF, MemoryStore, stale_extra


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FailingStore:
    """A store whose writes fail until ``until`` (fake time), then work; reads always work."""

    def __init__(self, inner: MemoryStore, time: FakeTime, until: float) -> None:
        self.inner = inner
        self.time = time
        self.until = until
        self.failed_writes = 0

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        return self.inner.read()

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        if expected.rotation and self.time.now < self.until:
            self.failed_writes += 1
            raise AACStoreUnavailableError("Airflow's REST API could not update the connection: 502")
        return self.inner.update(expected, change)

    def check_writable(self) -> None:
        self.inner.check_writable()


def refresher_for(sim: AACSimulator, time: FakeTime, memory: MemoryPlace, **kwargs: Any) -> Refresher:
    return Refresher(
        conn_id=CONN,
        transport=requests_token_transport(requests.Session()),
        clock=time.clock,
        sleep=time.sleep,
        backoff=FAST_BACKOFF,
        rescue=Rescue([memory]),
        **kwargs,
    )


def section_of(store: FailingStore) -> Any:
    @contextmanager
    def section() -> Iterator[FailingStore]:
        with store.inner.lock:
            yield store

    return section


def test_a_store_outage_of_five_minutes_and_more_is_waited_out(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    time = FakeTime()
    inner = MemoryStore(stale_extra(aac_token_pair))
    store = FailingStore(inner, time, until=time.now + 330.0)
    memory = MemoryPlace()
    held_during: list[int] = []
    original_sleep = time.sleep

    def sleep(seconds: float) -> None:
        held_during.append(len(memory.held(CONN)))
        original_sleep(seconds)

    time.sleep = sleep  # type: ignore[method-assign]
    state = refresher_for(aac_simulator, time, memory).with_lease(section_of(store), min_ttl=None)
    assert state.generation == 1
    assert store.failed_writes >= 10
    assert held_during and set(held_during) == {1}, "the pair was held for the whole outage"
    assert memory.held(CONN) == [], "a stored pair is no longer held"
    assert aac_simulator.stats()["refreshes"] == 1


def test_when_patience_runs_out_the_error_says_where_the_pair_is_and_how_to_restore_it(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    time = FakeTime()
    store = FailingStore(MemoryStore(stale_extra(aac_token_pair)), time, until=float("inf"))
    memory = MemoryPlace()
    with pytest.raises(AACPairHeldError) as info:
        refresher_for(aac_simulator, time, memory, store_patience=60.0, mode="lock").with_lease(
            section_of(store), min_ttl=None
        )
    message = str(info.value)
    assert "the refresh token was spent and AAC answered with a new pair" in message
    assert "It is held in this process's memory" in message
    assert f"airflow-aac restore {CONN}" in message
    assert "Nothing was spent" not in message
    [held] = memory.held(CONN)
    assert held.spends == fingerprint(aac_token_pair["refresh_token"]) and held.mode == "lock"

    # The next refresh (same process: the pair is in its memory) completes it before anything else,
    # recording the mode of the refresh that received it, not its own.
    store.until = 0.0
    state = refresher_for(aac_simulator, time, memory, mode="metadata_db").with_lease(
        section_of(store), min_ttl=None
    )
    assert state.generation == 1 and state.refreshed_mode == "lock"
    assert aac_simulator.stats()["refreshes"] == 1, "the held pair was stored, not replaced"
    assert memory.held(CONN) == []


def test_a_failing_rescue_place_never_costs_the_pair() -> None:
    class Broken:
        where = "a broken place"

        def hold(self, pair: HeldPair) -> None:
            raise OSError("disk full")

        def held(self, conn_id: str) -> list[HeldPair]:
            raise OSError("disk full")

        def drop(self, conn_id: str, spends: str) -> None:
            raise OSError("disk full")

    memory = MemoryPlace()
    rescue = Rescue([Broken(), memory])
    pair = HeldPair(CONN, "fp", TokenGrant("a.b.c", "r", 300.0), 1.0, 2.0, "me")
    assert rescue.hold(pair) == ["this process's memory"]
    assert rescue.pending(CONN, "fp") == pair
    rescue.drop(CONN, "fp")
    assert memory.held(CONN) == []


def test_a_held_pair_round_trips_and_shows_no_token() -> None:
    grant = TokenGrant("secret.access.token", "secret-refresh", 300.0)
    pair = HeldPair(CONN, "fp", grant, 1.0, 2.0, "host:1", "lock")
    assert HeldPair.from_bytes(pair.to_bytes()) == pair
    # Held by a provider that did not record the mode: read as unknown.
    older = json.loads(pair.to_bytes())
    del older["mode"]
    assert HeldPair.from_bytes(json.dumps(older).encode()) == replace(pair, mode=None)
    assert "secret" not in repr(pair)
    assert HeldPair.from_bytes(b"not json") is None


# Held pairs exactly as earlier versions wrote them (each version's to_bytes, taken from
# its source): a pair held before an upgrade must be stored after it, and a pair held
# during a rolling upgrade must be readable by the version still running beside it.
HELD_WITH_MODE = (
    b'{"conn_id": "aac_old", "spends": "0123456789abcdef", "access_token": "held.access.token", '
    b'"refresh_token": "held-refresh", "expires_in": 300.0, "requested_at": 1800000000.5, '
    b'"held_at": 1800000002.25, "by": "worker-7:1234", "mode": "lock"}'
)
HELD_WITHOUT_ACCESS_TOKEN = (
    b'{"conn_id": "aac_old", "spends": "0123456789abcdef", "access_token": null, '
    b'"refresh_token": "held-refresh", "expires_in": null, "requested_at": 1800000000.5, '
    b'"held_at": 1800000002.25, "by": "worker-7:1234", "mode": "rest"}'
)
HELD_BEFORE_THE_MODE = (
    b'{"conn_id": "aac_old", "spends": "0123456789abcdef", "access_token": "held.access.token", '
    b'"refresh_token": "held-refresh", "expires_in": 300.0, "requested_at": 1800000000.5, '
    b'"held_at": 1800000002.25, "by": "worker-7:1234"}'
)


@pytest.mark.parametrize(
    ("raw", "grant", "mode"),
    [
        (HELD_WITH_MODE, TokenGrant("held.access.token", "held-refresh", 300.0), "lock"),
        (HELD_WITHOUT_ACCESS_TOKEN, TokenGrant(None, "held-refresh", None), "rest"),
        (HELD_BEFORE_THE_MODE, TokenGrant("held.access.token", "held-refresh", 300.0), None),
    ],
    ids=["with-mode", "without-access-token", "before-the-mode"],
)
def test_pairs_held_by_earlier_versions_load_and_are_written_alike(
    raw: bytes, grant: TokenGrant, mode: str | None
) -> None:
    held = HeldPair.from_bytes(raw)
    expected = HeldPair(
        "aac_old", "0123456789abcdef", grant, 1800000000.5, 1800000002.25, "worker-7:1234", mode
    )
    loaded = held == expected  # compared outside the assert: a diff would show the tokens
    assert loaded
    assert held is not None
    if mode is not None:
        same_bytes = held.to_bytes() == raw
        assert same_bytes, "the held format changed: versions side by side would not read each other's pairs"
