"""The refresh algorithm over an in-memory store and the simulator's real token endpoint.

``MemoryStore`` is a ``TokenStore`` double that behaves like the real ones where it
matters: it serialises the extra, refuses a write whose ``expected`` version is not
the stored one, and (through ``section()``) is only touched inside an exclusive section,
a ``threading.Lock`` here. Tokens are never compared inside an assert expression.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import jwt
import pytest
import requests

from airflow_provider_aac.core.errors import (
    AACClientRejectedError,
    AACConfigError,
    AACError,
    AACStoreError,
    AACTokenChainBrokenError,
    AACTransientError,
)
from airflow_provider_aac.core.exchange import HttpAnswer, TransportFailure
from airflow_provider_aac.core.keeping import rotated
from airflow_provider_aac.core.oauth import (
    AACRefreshOutcomeUnknownError,
    SendWindow,
)
from airflow_provider_aac.core.refresh import QUICK_LOOK, QUICK_LOOKS_FOR, Refresher
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.core.token_state import (
    IN_FLIGHT,
    LAST_INTERRUPTED,
    InFlight,
    TokenState,
    Version,
    check_version,
    fingerprint,
    utc_iso,
)
from airflow_provider_aac.core.token_store import Change
from airflow_provider_aac.testing.simulator import AACSimulator
from airflow_provider_aac.transport.token_post import requests_token_transport

CONN = "aac_refresh_test"
FAST_BACKOFF = Backoff(attempts=3, base=0.01, cap=0.05, max_retry_after=1.0)
DEADLINE = 10.0


class MemoryStore:
    """One connection's extra in memory; ``section()`` is the exclusive section."""

    def __init__(self, extra: Mapping[str, Any]) -> None:
        self.lock = threading.Lock()
        self._stored = json.dumps(dict(extra))
        self.writes: list[dict[str, Any]] = []
        self.writable_error: Exception | None = None
        self.on_write: Callable[[dict[str, Any]], None] | None = None

    # -- TokenStore
    def read(self) -> tuple[TokenState, dict[str, Any]]:
        assert self.lock.locked(), "the store was read outside an exclusive section"
        extra = self.peek()
        return TokenState.from_extra(extra, conn_id=CONN), extra

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        assert self.lock.locked(), "the store was written outside an exclusive section"
        current = self.peek()
        state = TokenState.from_extra(current, conn_id=CONN)
        check_version(state, expected, conn_id=CONN)
        extra = change(state, current)
        if self.on_write is not None:
            self.on_write(extra)
        self._stored = json.dumps(extra)
        self.writes.append(json.loads(self._stored))
        return extra

    def check_writable(self) -> None:
        if self.writable_error is not None:
            raise self.writable_error

    # -- test helpers
    @contextmanager
    def section(self) -> Iterator[MemoryStore]:
        with self.lock:
            yield self

    def peek(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self._stored)
        return value

    def force(self, extra: dict[str, Any]) -> None:
        """A writer that ignores every rule (a manual edit, a process in another mode)."""
        self._stored = json.dumps(extra)

    def state(self) -> TokenState:
        return TokenState.from_extra(self.peek(), conn_id=CONN)

    def has(self, key: str) -> bool:
        """Whether the stored extra has ``key``; asserts use this, so a failure shows no token."""
        return key in self.peek()

    @property
    def write_count(self) -> int:
        return len(self.writes)


class PerCallStore:
    """The same connection seen through Airflow's REST API: every call is its own transaction."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def read(self) -> tuple[TokenState, dict[str, Any]]:
        with self._store.section():
            return self._store.read()

    def update(self, expected: Version, change: Change) -> dict[str, Any]:
        with self._store.section():
            return self._store.update(expected, change)

    def check_writable(self) -> None:
        self._store.check_writable()


class Clock:
    """Wall time plus an offset the test can move forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class Sleeps:
    def __init__(self, real: bool = False, on_sleep: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._real = real
        self._on_sleep = on_sleep

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._on_sleep is not None:
            self._on_sleep()
        if self._real:
            time.sleep(seconds)


def stale_extra(pair: Mapping[str, Any], **users: Any) -> dict[str, Any]:
    """The pair as the provider would have stored it, recorded as expired a second ago."""
    return {
        "access_token": pair["access_token"],
        "refresh_token": pair["refresh_token"],
        "access_expires_at": utc_iso(time.time() - 1.0),
        "access_lifetime": 300.0,
        "access_fingerprint": fingerprint(pair["access_token"]),
        **users,
    }


def claimed_by_another(pair: Mapping[str, Any]) -> MemoryStore:
    """A stale pair under another process's live claim with a long lease."""
    now = float(int(time.time()))  # whole seconds survive the ISO round trip exactly
    live = InFlight(attempt_id="live", by="busy-host:5", started_at=now, lease_until=now + 600, generation=0)
    return MemoryStore({**stale_extra(pair), IN_FLIGHT: live.to_json()})


def fresh_extra(pair: Mapping[str, Any], **users: Any) -> dict[str, Any]:
    return {"access_token": pair["access_token"], "refresh_token": pair["refresh_token"], **users}


def refresher(
    sim: AACSimulator,
    identity: str = "test-host:1",
    *,
    transport: Any = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
    **kwargs: Any,
) -> Refresher:
    return Refresher(
        conn_id=CONN,
        transport=transport or requests_token_transport(requests.Session()),
        clock=clock,
        sleep=sleep or Sleeps(real=True),
        identity=identity,
        lease=kwargs.pop("lease", 12.0),
        backoff=kwargs.pop("backoff", FAST_BACKOFF),
        poll_interval=kwargs.pop("poll_interval", 0.01),
        takeover_grace=kwargs.pop("takeover_grace", 0.05),
        **kwargs,
    )


def gated(transport: Any, gate: threading.Event, entered: threading.Event | None = None) -> Any:
    """A transport that waits for ``gate`` (with a deadline) before sending."""

    def send(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        if entered is not None:
            entered.set()
        assert gate.wait(DEADLINE), "the gate never opened"
        result: HttpAnswer = transport(url, form, window)
        return result

    return send


def unsigned_jwt(**claims: Any) -> str:
    return jwt.encode(claims, key=None, algorithm="none")


# =========================================================================== with_lease over a store


def test_fresh_token_is_not_refreshed(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    store = MemoryStore(fresh_extra(aac_token_pair))
    state = refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    assert state.generation == 0
    assert store.write_count == 0
    assert aac_simulator.stats()["token_requests"] == 0


def test_stale_token_is_refreshed_and_the_marker_is_written_before_the_post(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair, note="keep me", client_id=aac_simulator.client_id))
    requests_seen_at_write: list[int] = []
    store.on_write = lambda extra: requests_seen_at_write.append(aac_simulator.stats()["token_requests"])
    before = time.time()

    state = refresher(aac_simulator, "host-a:11", mode="lock").with_lease(store.section, min_ttl=None)

    assert requests_seen_at_write == [0, 1], "the claim must be stored before the token is sent"
    claim, stored = store.writes
    # The claim: same tokens and generation, plus a marker naming this process.
    same_pair = (
        claim["access_token"] == aac_token_pair["access_token"]
        and claim["refresh_token"] == aac_token_pair["refresh_token"]
    )
    assert same_pair
    assert claim["generation"] == 0
    marker = InFlight.from_json(claim[IN_FLIGHT])
    assert marker is not None and marker.by == "host-a:11" and marker.generation == 0
    assert before - 1 <= marker.started_at <= time.time()
    # The result: next generation, marker cleared, expiry from the request time.
    assert stored["generation"] == 1 and state.generation == 1
    marker_left = IN_FLIGHT in stored
    assert not marker_left
    matches = (
        stored["access_token"] == state.access_token
        and stored["refresh_token"] == state.refresh_token
        and stored["refresh_token"] != aac_token_pair["refresh_token"]
    )
    assert matches
    assert stored["access_fingerprint"] == fingerprint(stored["access_token"])
    assert state.access_expires_at == pytest.approx(marker.started_at + aac_simulator.access_ttl, abs=0.002)
    assert state.access_lifetime == aac_simulator.access_ttl
    assert stored["refreshed_by"] == "host-a:11"
    assert stored["refreshed_mode"] == "lock" and state.refreshed_mode == "lock"
    assert stored["note"] == "keep me" and stored["client_id"] == aac_simulator.client_id
    assert aac_simulator.stats()["refreshes"] == 1

    # The stored pair is fresh now: a second call reads it and does nothing.
    again = refresher(aac_simulator, "host-b:22").with_lease(store.section, min_ttl=None)
    assert again.generation == 1 and len(store.writes) == 2
    assert aac_simulator.stats()["token_requests"] == 1


def test_stale_generation_forces_exactly_one_refresh(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(fresh_extra(aac_token_pair))
    first = refresher(aac_simulator, "a:1").with_lease(store.section, min_ttl=None, stale_generation=0)
    # A second process was also rejected with generation 0: it finds generation 1 and keeps it.
    second = refresher(aac_simulator, "b:2").with_lease(store.section, min_ttl=None, stale_generation=0)
    assert (first.generation, second.generation) == (1, 1)
    assert aac_simulator.stats()["refreshes"] == 1


def test_concurrent_callers_reread_inside_the_section_and_refresh_once(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    barrier = threading.Barrier(4)

    def call(index: int) -> TokenState:
        barrier.wait(DEADLINE)
        return refresher(aac_simulator, f"w:{index}").with_lease(store.section, min_ttl=None)

    with ThreadPoolExecutor(4) as pool:
        states = list(pool.map(call, range(4)))
    assert {s.generation for s in states} == {1}
    same = len({s.access_token for s in states}) == 1
    assert same
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["reuses"], stats["token_requests"]) == (1, 0, 1)
    assert len(store.writes) == 2


@pytest.mark.aac_simulator(access_ttl=2)
def test_eight_threads_racing_never_reuse_and_refresh_near_the_minimum(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    """8 threads x 20 calls over ~2.4 s with 2 s access tokens (fresh for 1 s each)."""
    store = MemoryStore(fresh_extra(aac_token_pair))
    threads, calls, spacing = 8, 20, 0.12
    start = time.monotonic() + 0.05
    problems: list[str] = []

    def worker(index: int) -> list[int]:
        engine = refresher(aac_simulator, f"worker-{index}:1")
        api = requests.Session()
        generations = []
        for call in range(calls):
            # Pacing on a schedule, so the tokens age while the threads keep racing.
            pause = start + call * spacing + index * spacing / threads - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            state = engine.with_lease(store.section, min_ttl=None)
            generations.append(state.generation)
            answer = api.get(
                aac_simulator.base_url + "/v4/people/current",
                headers={"Authorization": f"Bearer {state.access_token}"},
                timeout=5,
            )
            if answer.status_code != 200:
                problems.append(f"worker {index} call {call}: {answer.status_code}")
        return generations

    began = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        per_thread = list(pool.map(worker, range(threads)))
    elapsed = time.monotonic() - began

    stats = aac_simulator.stats()
    assert stats["reuses"] == 0 and stats["invalid_grant"] == 0 and stats["families_revoked"] == 0
    assert problems == [] and stats["api_unauthorized"] == 0
    for generations in per_thread:
        assert generations == sorted(generations), "a thread saw an older generation after a newer one"
    refreshes = stats["refreshes"]
    assert store.state().generation == refreshes
    # Each new token stays fresh for 1 s (half of 2 s) from its request, so refreshes are
    # at least 1 s apart: more than 1 + elapsed would be a wasted refresh.
    assert 2 <= refreshes <= 1 + math.floor(elapsed), (refreshes, elapsed)
    assert stats["token_requests"] == refreshes


# --------------------------------------------------------------------------- failures


def test_outcome_unknown_leaves_the_marker_and_the_next_invalid_grant_says_so(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    aac_simulator.lose_token_response(times=2)  # the answer and the one retry's answer
    lost = refresher(aac_simulator, "lost-host:7")
    with pytest.raises(AACRefreshOutcomeUnknownError):
        lost.with_lease(store.section, min_ttl=None)
    left = store.peek()
    marker = InFlight.from_json(left.get(IN_FLIGHT))
    assert marker is not None and marker.by == "lost-host:7"
    assert left.get("generation", 0) == 0
    kept = left["refresh_token"] == aac_token_pair["refresh_token"]
    assert kept

    # The next refresh comes after the lost one's lease (the process is surely gone).
    later = Clock()
    later.offset = lost.lease + 1
    with pytest.raises(AACTokenChainBrokenError) as info:
        refresher(aac_simulator, "next-host:8", clock=later).with_lease(store.section, min_ttl=None)
    message = str(info.value)
    assert "(invalid_grant)" in message
    assert f"An earlier refresh of this connection was interrupted ({marker.describe()})" in message
    assert "it most likely spent the token and its answer was lost" in message
    assert "airflow connections add" in message
    after = store.peek()
    marker_left = IN_FLIGHT in after
    assert not marker_left, "a definite failure clears the marker"
    recorded = InFlight.from_json(after[LAST_INTERRUPTED])
    assert recorded is not None and recorded.attempt_id == marker.attempt_id, "the attempt stays on record"


def test_a_lost_answer_under_a_grace_period_is_recovered_and_stored_inside_the_lease() -> None:
    with AACSimulator(reuse_grace=20.0) as sim:
        pair = sim.mint_pair()
        store = MemoryStore(stale_extra(pair))
        sim.lose_token_response()
        state = refresher(sim, "lost-host:7").with_lease(store.section, min_ttl=None)
        assert state.generation == 1
        assert not store.has(IN_FLIGHT), "the claim ends with the stored pair"
        live = sim.refresh_token_status(store.peek()["refresh_token"])
        stats = sim.stats()
    assert live == "live"
    assert (stats["refreshes"], stats["grace_replays"], stats["reuses"], stats["families_revoked"]) == (
        1,
        1,
        0,
        0,
    )


def test_a_lost_answer_without_a_grace_records_the_dead_chain_once(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    aac_simulator.lose_token_response()
    with pytest.raises(AACTokenChainBrokenError, match="no reuse grace period covered the retry"):
        refresher(aac_simulator, "lost-host:7").with_lease(store.section, min_ttl=None)
    assert not store.has(IN_FLIGHT)
    # The next caller is told at once, without presenting the token a third time.
    with pytest.raises(AACTokenChainBrokenError, match="it is not presented again"):
        refresher(aac_simulator, "next-host:8").with_lease(store.section, min_ttl=None)
    stats = aac_simulator.stats()
    assert (stats["token_requests"], stats["reuses"], stats["families_revoked"]) == (2, 1, 1)


def test_after_an_admin_disable_the_stored_access_token_serves_until_a_refresh_is_due(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(fresh_extra(aac_token_pair))
    aac_simulator.disable(aac_token_pair["refresh_token"])
    state = refresher(aac_simulator).with_lease(store.section, min_ttl=60)
    assert state.generation == 0, "a fresh access token is used, not refreshed"
    assert aac_simulator.stats()["token_requests"] == 0

    with pytest.raises(AACTokenChainBrokenError, match="Disable or Delete of the API token"):
        refresher(aac_simulator).with_lease(store.section, min_ttl=None, stale_generation=0)
    assert store.has("dead_chain")
    stats = aac_simulator.stats()
    assert (stats["token_requests"], stats["reuses"], stats["families_revoked"]) == (1, 0, 0)


def test_invalid_client_clears_the_marker_and_spends_nothing(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair, client_id="wrong-client"))
    with pytest.raises(AACClientRejectedError):
        refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    left = store.peek()
    assert not store.has(IN_FLIGHT) and left["generation"] == 0 and left["client_id"] == "wrong-client"
    kept = left["refresh_token"] == aac_token_pair["refresh_token"]
    assert kept
    assert aac_simulator.stats()["refreshes"] == 0
    # The user fixes the client id; the same token still works.
    fixed = store.peek()
    del fixed["client_id"]
    store.force(fixed)
    assert refresher(aac_simulator).with_lease(store.section, min_ttl=None).generation == 1
    assert aac_simulator.stats()["reuses"] == 0


def test_token_without_iss_is_a_config_error_before_anything_is_sent(aac_simulator: AACSimulator) -> None:
    now = int(time.time())
    pair = {"access_token": unsigned_jwt(exp=now - 10, iat=now - 310), "refresh_token": "r" * 30}
    store = MemoryStore(pair)
    with pytest.raises(AACConfigError, match="no iss or client_id claim"):
        refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    assert not store.has(IN_FLIGHT)
    assert aac_simulator.stats()["token_requests"] == 0


def test_http_issuer_on_another_host_is_refused_before_the_refresh_token_is_sent(
    aac_simulator: AACSimulator,
) -> None:
    now = int(time.time())
    claims = {"iss": "http://aac.example.com/as", "client_id": "cid", "exp": now - 10, "iat": now - 310}
    pair = {"access_token": unsigned_jwt(**claims), "refresh_token": "r" * 30}
    sent_to: list[str] = []

    def transport(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        sent_to.append(url)
        raise TransportFailure("no network in this test", request_sent=False)

    store = MemoryStore(pair)
    with pytest.raises(AACConfigError, match=r"token URL of connection .*http://aac.example.com/as/token"):
        refresher(aac_simulator, transport=transport).with_lease(store.section, min_ttl=None)
    assert sent_to == [] and not store.has(IN_FLIGHT)

    opted_in = MemoryStore({**pair, "allow_insecure_http": True})
    with pytest.raises(AACTransientError):
        refresher(aac_simulator, transport=transport).with_lease(opted_in.section, min_ttl=None)
    assert set(sent_to) == {"http://aac.example.com/as/token"}


def test_unwritable_store_spends_nothing(aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    store.writable_error = AACConfigError("shadowed by an environment variable")
    with pytest.raises(AACConfigError, match="shadowed"):
        refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    assert store.write_count == 0
    assert aac_simulator.stats()["token_requests"] == 0


def test_store_refuses_a_stale_expected_generation(aac_token_pair: dict[str, Any]) -> None:
    store = MemoryStore({**fresh_extra(aac_token_pair), "generation": 3})
    with store.section(), pytest.raises(AACStoreError, match="holds generation 3, not 2"):
        store.update(
            Version(2, None, fingerprint(aac_token_pair["refresh_token"])),
            lambda state, extra: {**fresh_extra(aac_token_pair), "generation": 9},
        )
    assert store.state().generation == 3 and store.write_count == 0


def test_a_newer_pair_written_during_the_refresh_wins_and_the_holder_says_so(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    rogue = {**fresh_extra(aac_simulator.mint_pair()), "generation": 5, "note": "rogue"}
    real = requests_token_transport(requests.Session())

    def transport(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        store.force(rogue)  # someone ignoring the lock stores another pair meanwhile
        return real(url, form, window)

    state = refresher(aac_simulator, transport=transport).with_lease(store.section, min_ttl=None)
    assert state.generation == 5
    kept_rogue = store.peek() == rogue
    assert kept_rogue
    assert "now holds another refresh token than the one this process spent" in caplog.text
    assert "the stored one wins" in caplog.text


def test_200_without_access_token_stores_the_rotated_refresh_token_then_fails(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    aac_simulator.fail_token_endpoint(200, body={"refresh_token": "rotated-" + "x" * 20, "expires_in": 300})
    with pytest.raises(AACTransientError) as info:
        refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    assert "without an access token" in str(info.value)
    assert "The rotated refresh token was stored" in str(info.value)
    state = store.state()
    assert state.generation == 1 and state.in_flight is None
    stored_rotated = state.refresh_token == "rotated-" + "x" * 20
    kept_access = state.access_token == aac_token_pair["access_token"]
    assert stored_rotated and kept_access
    assert not state.is_fresh(time.time(), 0)


# =========================================================================== with_lease


def test_with_lease_second_caller_waits_for_the_holder_and_does_not_refresh(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    b_waiting = threading.Event()
    a_sending = threading.Event()
    holder = refresher(
        aac_simulator,
        "holder:1",
        transport=gated(requests_token_transport(requests.Session()), b_waiting, a_sending),
    )
    b_sleeps = Sleeps(real=True, on_sleep=b_waiting.set)
    waiter = refresher(aac_simulator, "waiter:2", sleep=b_sleeps)

    with ThreadPoolExecutor(1) as pool:
        a_result = pool.submit(holder.with_lease, store.section, min_ttl=None)
        assert a_sending.wait(DEADLINE), "the holder never sent its refresh"
        b_state = waiter.with_lease(store.section, min_ttl=None)
        a_state = a_result.result(DEADLINE)

    assert (a_state.generation, b_state.generation) == (1, 1)
    same = a_state.access_token == b_state.access_token
    assert same
    assert b_sleeps.delays, "the second caller should have waited"
    stats = aac_simulator.stats()
    assert (stats["refreshes"], stats["token_requests"], stats["reuses"]) == (1, 1, 0)
    assert not store.has(IN_FLIGHT)


def test_with_lease_marker_is_committed_before_the_post_and_the_section_is_free_meanwhile(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    gate, sending = threading.Event(), threading.Event()
    holder = refresher(
        aac_simulator,
        "holder:1",
        transport=gated(requests_token_transport(requests.Session()), gate, sending),
        mode="metadata_db",
    )
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(holder.with_lease, store.section, min_ttl=None)
        assert sending.wait(DEADLINE)
        # No lock is held during the network call, and the claim is visible to others.
        assert not store.lock.locked()
        marker = InFlight.from_json(store.peek().get(IN_FLIGHT))
        assert marker is not None and marker.by == "holder:1"
        assert marker.lease_until - marker.started_at == pytest.approx(holder.lease)
        assert aac_simulator.stats()["token_requests"] == 0
        gate.set()
        assert result.result(DEADLINE).generation == 1
    assert not store.has(IN_FLIGHT)
    assert store.peek()["refreshed_mode"] == "metadata_db"


def test_with_lease_takes_over_from_a_dead_holder(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = float(int(time.time()))  # whole seconds survive the ISO round trip exactly
    dead = InFlight(
        attempt_id="dead", by="dead-host:99", started_at=now - 200, lease_until=now - 10, generation=0
    )
    store = MemoryStore({**stale_extra(aac_token_pair), IN_FLIGHT: dead.to_json()})
    sleeps = Sleeps(real=True)
    taker = refresher(aac_simulator, "taker:3", sleep=sleeps, takeover_grace=0.3)
    state = taker.with_lease(store.section, min_ttl=None)
    assert state.generation == 1
    # An ended lease is honoured for the takeover grace only (its holder may still be
    # storing after an outage), not for another lease.
    assert 0.25 <= sum(sleeps.delays) < 2.0, sum(sleeps.delays)
    claim = store.writes[0]
    recorded = InFlight.from_json(claim[LAST_INTERRUPTED])
    assert recorded is not None and (recorded.attempt_id, recorded.by) == ("dead", "dead-host:99")
    assert InFlight.from_json(claim[IN_FLIGHT]).by == "taker:3"  # type: ignore[union-attr]
    assert not store.has(IN_FLIGHT) and not store.has(LAST_INTERRUPTED)
    assert aac_simulator.stats()["refreshes"] == 1


def test_with_lease_dead_holder_that_spent_the_token_is_named_in_the_error(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = float(int(time.time()))  # whole seconds survive the ISO round trip exactly
    dead = InFlight(
        attempt_id="dead", by="dead-host:99", started_at=now - 200, lease_until=now - 10, generation=0
    )
    store = MemoryStore({**stale_extra(aac_token_pair), IN_FLIGHT: dead.to_json()})
    # The dead holder's request did reach AAC before it died.
    requests.post(
        aac_simulator.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": aac_token_pair["refresh_token"],
            "client_id": aac_simulator.client_id,
        },
        timeout=5,
    ).raise_for_status()
    with pytest.raises(AACTokenChainBrokenError) as info:
        refresher(aac_simulator, "taker:3").with_lease(store.section, min_ttl=None)
    assert "An earlier refresh of this connection was interrupted (the refresh started at" in str(info.value)
    assert "by dead-host:99)" in str(info.value)
    left = store.peek()
    assert not store.has(IN_FLIGHT)
    recorded = InFlight.from_json(left[LAST_INTERRUPTED])
    assert recorded is not None and (recorded.attempt_id, recorded.by) == ("dead", "dead-host:99")


def test_with_lease_live_holder_beyond_the_wait_is_a_transient_error(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = float(int(time.time()))  # whole seconds survive the ISO round trip exactly
    live = InFlight(attempt_id="live", by="busy-host:5", started_at=now, lease_until=now + 600, generation=0)
    extra = {**stale_extra(aac_token_pair), IN_FLIGHT: live.to_json()}
    store = MemoryStore(extra)
    with pytest.raises(AACTransientError) as info:
        refresher(aac_simulator).with_lease(store.section, min_ttl=None, wait=0.2)
    assert f"Timed out waiting for {live.describe()} on connection {CONN!r}" in str(info.value)
    untouched = store.peek() == extra
    assert untouched and store.write_count == 0
    assert aac_simulator.stats()["token_requests"] == 0


def test_a_waiter_looks_often_for_a_second_then_less_and_stops_at_the_stored_pair(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    """A 0.1 s refresh is seen within 20 ms, not at the next 0.2 s poll; a long wait stays cheap."""
    store = claimed_by_another(aac_token_pair)
    stored_by_holder = {**fresh_extra(aac_token_pair), "generation": 1}
    clock = Clock()
    quick = round(QUICK_LOOKS_FOR / QUICK_LOOK)

    def time_passes_and_the_holder_stores_late() -> None:
        clock.offset += sleeps.delays[-1]
        if len(sleeps.delays) == quick + 3:
            store.force(stored_by_holder)

    sleeps = Sleeps(on_sleep=time_passes_and_the_holder_stores_late)
    state = refresher(aac_simulator, "waiter:2", clock=clock, sleep=sleeps, poll_interval=0.2).with_lease(
        store.section, min_ttl=None, wait=30.0
    )
    assert state.generation == 1
    assert sleeps.delays[: quick - 1] == pytest.approx([QUICK_LOOK] * (quick - 1))
    assert sleeps.delays[-3:] == pytest.approx([0.2] * 3)
    assert len(sleeps.delays) == quick + 3
    assert aac_simulator.stats()["token_requests"] == 0


class News:
    """A store's news of its writes: each wait is recorded, and ``on_open``/``on_wait`` let the holder write."""

    signalled = True

    def __init__(
        self, on_open: Callable[[], None] = lambda: None, on_wait: Callable[[], None] = lambda: None
    ) -> None:
        self.waits: list[float] = []
        self._on_open = on_open
        self._on_wait = on_wait

    @contextmanager
    def feed(self) -> Iterator[News]:
        self._on_open()
        yield self

    def wait(self, timeout: float) -> None:
        self.waits.append(timeout)
        self._on_wait()


def test_a_waiter_with_news_waits_for_it_up_to_each_look_and_never_looks_quickly(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = claimed_by_another(aac_token_pair)
    stored_by_holder = {**fresh_extra(aac_token_pair), "generation": 1}

    def the_holder_stores_during_the_second_wait() -> None:
        if len(news.waits) == 2:
            store.force(stored_by_holder)

    news = News(on_wait=the_holder_stores_during_the_second_wait)
    sleeps = Sleeps()
    state = refresher(aac_simulator, "waiter:2", sleep=sleeps, poll_interval=0.2).with_lease(
        store.section, min_ttl=None, wait=30.0, changes=news.feed
    )
    assert state.generation == 1
    assert news.waits == pytest.approx([0.2, 0.2])
    assert sleeps.delays == []
    assert aac_simulator.stats()["token_requests"] == 0


def test_a_pair_stored_before_the_waiter_listens_is_found_without_waiting(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    """Its news went out before anyone listened: the waiter looks once as soon as it listens."""
    store = claimed_by_another(aac_token_pair)
    news = News(on_open=lambda: store.force({**fresh_extra(aac_token_pair), "generation": 1}))
    state = refresher(aac_simulator, "waiter:2", poll_interval=30.0).with_lease(
        store.section, min_ttl=None, wait=60.0, changes=news.feed
    )
    assert state.generation == 1
    assert news.waits == []
    assert aac_simulator.stats()["token_requests"] == 0


def test_a_waiter_reads_through_its_look_and_returns_the_stored_pair_without_the_section_again(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    """In an expiry storm, waiters must not queue on the row lock after the holder stores."""
    store = claimed_by_another(aac_token_pair)
    sections = []

    @contextmanager
    def counted_section() -> Iterator[MemoryStore]:
        sections.append(1)
        with store.section() as held:
            yield held

    news = News(on_wait=lambda: store.force({**fresh_extra(aac_token_pair), "generation": 1}))
    state = refresher(aac_simulator, "waiter:2", poll_interval=30.0).with_lease(
        counted_section, min_ttl=None, wait=60.0, changes=news.feed, look=store.state
    )
    assert state.generation == 1
    assert len(sections) == 1, "only the first settle holds the section"
    assert aac_simulator.stats()["token_requests"] == 0


def test_with_lease_holder_whose_lease_runs_out_while_waiting_is_taken_over(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    now = time.time()
    hung = InFlight(
        attempt_id="hung", by="hung-host:5", started_at=now - 5, lease_until=now + 0.3, generation=0
    )
    store = MemoryStore({**stale_extra(aac_token_pair), IN_FLIGHT: hung.to_json()})
    sleeps = Sleeps(real=True)
    state = refresher(aac_simulator, "taker:4", sleep=sleeps).with_lease(
        store.section, min_ttl=None, wait=5.0
    )
    assert state.generation == 1 and sleeps.delays
    assert aac_simulator.stats()["refreshes"] == 1


def test_with_lease_outcome_unknown_keeps_the_claim_until_its_lease_ends(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    clock = Clock()
    aac_simulator.lose_token_response(times=2)  # the answer and the one retry's answer
    first = refresher(aac_simulator, "lost:1", clock=clock)
    with pytest.raises(AACRefreshOutcomeUnknownError):
        first.with_lease(store.section, min_ttl=None)
    marker = InFlight.from_json(store.peek().get(IN_FLIGHT))
    assert marker is not None and marker.by == "lost:1"

    # Within the lease, others wait (here: give up quickly) and send nothing.
    with pytest.raises(AACTransientError, match="Timed out waiting for the refresh started at"):
        refresher(aac_simulator, "next:2", clock=clock).with_lease(store.section, min_ttl=None, wait=0.1)
    assert aac_simulator.stats()["token_requests"] == 2

    # After the lease, the next caller tries once and explains the invalid_grant.
    clock.offset = first.lease + 1
    with pytest.raises(
        AACTokenChainBrokenError, match="An earlier refresh of this connection was interrupted"
    ):
        refresher(aac_simulator, "next:2", clock=clock).with_lease(store.section, min_ttl=None)
    assert not store.has(IN_FLIGHT)


def test_with_lease_definite_failure_releases_the_claim(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    aac_simulator.fail_token_endpoint(429, retry_after=FAST_BACKOFF.max_retry_after + 5)
    with pytest.raises(AACTransientError, match="kept answering 429"):
        refresher(aac_simulator).with_lease(store.section, min_ttl=None)
    left = store.peek()
    assert not store.has(IN_FLIGHT) and left["generation"] == 0
    # Released: the next caller refreshes at once, without waiting for a lease.
    sleeps = Sleeps()
    assert refresher(aac_simulator, sleep=sleeps).with_lease(store.section, min_ttl=None).generation == 1
    assert sleeps.delays == []


def test_with_lease_a_pair_pasted_during_the_post_wins(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryStore(stale_extra(aac_token_pair))
    pasted = {**fresh_extra(aac_simulator.mint_pair()), "note": "the user pasted a new pair"}
    real = requests_token_transport(requests.Session())

    def transport(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        store.force(pasted)
        return real(url, form, window)

    state = refresher(aac_simulator, transport=transport).with_lease(store.section, min_ttl=None)
    assert state.generation == 0 and "the stored one wins" in caplog.text
    kept_pasted = store.peek() == pasted
    assert kept_pasted


def test_with_lease_fresh_token_is_returned_without_a_claim(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    store = MemoryStore(fresh_extra(aac_token_pair))
    assert refresher(aac_simulator).with_lease(store.section, min_ttl=None).generation == 0
    assert store.write_count == 0 and aac_simulator.stats()["token_requests"] == 0


# =========================================================================== across modes


def test_a_lock_mode_refresh_respects_a_live_claim_from_metadata_db_mode(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    """An api-server (metadata-DB mode) and a worker (lock mode) refresh one connection."""
    store = MemoryStore(stale_extra(aac_token_pair))
    b_moved = threading.Event()
    a_sending = threading.Event()
    api_server = refresher(
        aac_simulator,
        "api-server:1",
        transport=gated(requests_token_transport(requests.Session()), b_moved, a_sending),
    )
    real = requests_token_transport(requests.Session())

    def b_transport(url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer:
        try:
            result: HttpAnswer = real(url, form, window)
        finally:
            b_moved.set()  # only now may the api-server's request go out
        return result

    worker = refresher(
        aac_simulator, "worker:2", transport=b_transport, sleep=Sleeps(real=True, on_sleep=b_moved.set)
    )

    # The worker's lock (advisory or Redis) is not the row lock, and each of its REST reads
    # and writes is a short transaction of its own.
    worker_lock = threading.Lock()

    @contextmanager
    def worker_section() -> Iterator[PerCallStore]:
        with worker_lock:
            yield PerCallStore(store)

    with ThreadPoolExecutor(1) as pool:
        a_result = pool.submit(api_server.with_lease, store.section, min_ttl=None)
        assert a_sending.wait(DEADLINE)
        errors: list[str] = []
        try:
            worker.with_lease(worker_section, min_ttl=None)
        except AACError as err:
            errors.append(type(err).__name__)
        finally:
            b_moved.set()
        try:
            a_result.result(DEADLINE)
        except AACError as err:
            errors.append(type(err).__name__)
    # Today: the worker spends the token the api-server already sent, AAC sees a reuse,
    # revokes the family, and the api-server's new pair is refused by the store.
    assert aac_simulator.stats()["reuses"] == 0, errors
    assert errors == []


# =========================================================================== pieces


def test_a_waiter_waits_out_the_whole_lease_and_both_skew_margins() -> None:
    engine = Refresher(conn_id=CONN, transport=lambda *a: None, lease=60.0)  # type: ignore[arg-type,return-value]
    assert engine.skew_margin == 10.0
    assert engine.max_wait >= engine.lease + 2 * engine.skew_margin + engine.takeover_grace
    assert Refresher(conn_id=CONN, transport=lambda *a: None, lease=600.0).skew_margin == 15.0  # type: ignore[arg-type,return-value]


def test_rotated_counts_expiry_from_the_request() -> None:
    old = TokenState(TokenGrant("old.a.t", "old-r"), generation=4)
    new = rotated(
        old, TokenGrant("new.a.t", "new-r", 300.0), requested_at=1000.0, by="me", now=1002.0, mode="lock"
    )
    assert (new.generation, new.access_expires_at, new.access_lifetime) == (5, 1300.0, 300.0)
    assert new.access_fingerprint == fingerprint("new.a.t")
    assert (new.refreshed_at, new.refreshed_by, new.refreshed_mode, new.in_flight) == (
        1002.0,
        "me",
        "lock",
        None,
    )


def test_rotated_without_expires_in_leaves_expiry_to_the_jwt() -> None:
    old = TokenState(TokenGrant("old.a.t", "old-r"))
    new = rotated(old, TokenGrant("new.a.t", "new-r", None), requested_at=1000.0, by="me", now=1000.0)
    assert new.access_expires_at is None and new.access_fingerprint is None and new.access_lifetime is None


def test_rotated_without_refresh_token_keeps_the_old_one() -> None:
    old = TokenState(TokenGrant("old.a.t", "old-r"))
    new = rotated(old, TokenGrant("new.a.t", None, 60.0), requested_at=1000.0, by="me", now=1000.0)
    assert new.refresh_token == "old-r" and new.generation == 1


def test_rotated_without_access_token_marks_the_old_one_expired() -> None:
    old = TokenState(TokenGrant("old.a.t", "old-r"))
    new = rotated(old, TokenGrant(None, "new-r", 300.0), requested_at=1000.0, by="me", now=1000.0)
    assert new.access_token == "old.a.t" and new.refresh_token == "new-r"
    assert new.access_expires_at == 1000.0 and new.access_fingerprint == fingerprint("old.a.t")
    assert new.expires_at() == 1000.0
