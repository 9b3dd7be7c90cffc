"""The access tokens this process already holds, one entry per connection id.

Reading the connection costs a metadata-DB query or, on a worker, a round trip through
the Execution API; a task that makes 1,000 calls should not make 1,000 reads. So the
last state a process read or stored is kept in memory and its access token reused while
it has ``min_ttl`` left. Only access tokens are served from here: a refresh always
starts from a fresh read under the lock, because a refresh token held in memory may have
been spent by another process since.

Each entry also carries the process's single flight: the one thread (and, per event
loop, the one coroutine) that goes to the connection while the others wait for what it
brings back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from airflow_provider_aac.core.token_state import TokenState
from airflow_provider_aac.tokens.connection import AACConnectionConfig

if TYPE_CHECKING:
    from airflow_provider_aac.tokens.airflow_api import AirflowApiClient

T = TypeVar("T")
# The connection as read: its configuration and the token state it held.
Reading = tuple[AACConnectionConfig, TokenState]
# Token work blocks (a connection read, a lock, a refresh POST); on a triggerer it runs
# here, never on the event loop and never on asgiref's one shared thread that other
# providers' sync_to_async calls queue on. One coroutine per loop and connection comes
# here at a time, so a few threads serve any number of triggers.
TOKEN_WORK_THREADS = 4


@dataclass
class CachedTokens:
    """One connection's entry: the last reading or stored state (None until the first read).

    ``flight`` is held by the one thread fetching a state; ``_guard`` only ever for an
    instant, so the event loop may take it.
    """

    last: Reading | None = None
    rest_checked: str | None = None
    """The REST API (its base URL) whose writes this process saw in Airflow's lookup of the connection."""
    api: AirflowApiClient | None = None
    """The REST API client this process writes the connection with: one login per process, not per hook."""
    flight: threading.Lock = field(default_factory=threading.Lock)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _async_flights: dict[asyncio.AbstractEventLoop, asyncio.Lock] = field(default_factory=dict)

    def fresh(self, now: float, min_ttl: float | None) -> Reading | None:
        last = self.last
        if last is None:
            return None
        config, state = last
        return last if state.is_fresh(now, config.min_ttl if min_ttl is None else min_ttl) else None

    def keep(self, config: AACConnectionConfig, state: TokenState) -> None:
        self.last = (config, state)

    def forget(self, generation: int | None = None) -> None:
        """Drop the entry, or only while it still holds ``generation`` (the one AAC rejected)."""
        last = self.last
        if last is not None and (generation is None or last[1].generation == generation):
            self.last = None

    def async_flight(self) -> asyncio.Lock:
        """The lock that lets one coroutine per event loop fetch for the others.

        A lock holds its loop once used, so a weak mapping would never let go of either;
        the locks of loops that have closed are dropped here instead.
        """
        loop = asyncio.get_running_loop()
        with self._guard:
            for closed in [other for other in self._async_flights if other.is_closed()]:
                del self._async_flights[closed]
            lock = self._async_flights.get(loop)
            if lock is None:
                lock = self._async_flights[loop] = asyncio.Lock()
            return lock


class TokenCache:
    """Entries by connection id; ``process_token_cache()`` is the one each process shares."""

    def __init__(self) -> None:
        self._entries: dict[str, CachedTokens] = {}
        self._lock = threading.Lock()

    def entry(self, conn_id: str) -> CachedTokens:
        with self._lock:
            entry = self._entries.get(conn_id)
            if entry is None:
                entry = self._entries[conn_id] = CachedTokens()
            return entry

    def clear(self, conn_id: str | None = None) -> None:
        """Forget what is held (for one connection or all), so the next call reads the connection
        and the next refresh looks up the API connection again and checks that the REST API
        writes what the lookup shows.

        For tests and tools that change a connection behind the provider's back; the
        provider's own writes update the cache themselves.
        """
        with self._lock:
            entries = list(self._entries.values()) if conn_id is None else [self._entries.get(conn_id)]
        for entry in entries:
            if entry is not None:
                entry.forget()
                entry.rest_checked = entry.api = None


_PROCESS_CACHE = TokenCache()
_token_work: ThreadPoolExecutor | None = None
_token_work_lock = threading.Lock()


def process_token_cache() -> TokenCache:
    return _PROCESS_CACHE


async def run_token_work(work: Callable[..., T], *args: object) -> T:
    """Run blocking token work off the event loop, on the provider's own small pool.

    Through asgiref rather than ``run_in_executor``: before Airflow 3.2 the triggerer
    answers a connection read (``async_to_sync``) only from a thread asgiref started.
    """
    from asgiref.sync import sync_to_async

    global _token_work
    with _token_work_lock:
        if _token_work is None:
            _token_work = ThreadPoolExecutor(TOKEN_WORK_THREADS, thread_name_prefix="aac-token-work")
        executor = _token_work
    return await sync_to_async(work, thread_sensitive=False, executor=executor)(*args)
