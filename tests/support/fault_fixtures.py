"""pytest fixtures for fault tests: private PostgreSQL/Redis servers and fault proxies.

Load as a plugin (``pytest_plugins = ["tests.support.fault_fixtures"]`` in tests/conftest.py).
Everything is function-scoped: a test that restarts or kills a server must not hand a
half-recovered one to the next test. Missing binaries skip locally and fail in CI, where
a skip would hide that the fault suite never ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.private_services import (
    PrivatePostgres,
    PrivateRedis,
    private_postgres_unavailable_reason,
    private_redis_unavailable_reason,
)
from tests.support.requirements import skip_or_fail_without

FaultProxyFactory = Callable[..., FaultProxy]


def _require(reason: str | None) -> None:
    skip_or_fail_without(reason, in_ci="the fault suite's servers are required")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started PostgreSQL of this test's own (``.url``, ``.restart()``, ``.kill()``, ...)."""
    _require(private_postgres_unavailable_reason())
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    """A started Redis of this test's own, keeping nothing on disk."""
    _require(private_redis_unavailable_reason())
    server = PrivateRedis()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def fault_proxy_factory() -> Iterator[FaultProxyFactory]:
    """``factory(upstream_url, **kwargs) -> FaultProxy``; every proxy made is stopped after the test."""
    proxies: list[FaultProxy] = []

    def factory(
        upstream: str, *, port: int = 0, upstream_timeout: float = 60.0, log_size: int = 1000
    ) -> FaultProxy:
        proxy = FaultProxy(upstream, port=port, upstream_timeout=upstream_timeout, log_size=log_size)
        proxies.append(proxy)
        return proxy

    try:
        yield factory
    finally:
        for proxy in reversed(proxies):
            proxy.stop()
