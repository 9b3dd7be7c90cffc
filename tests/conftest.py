"""Shared pytest configuration for the provider's tests.

Fixture sections are kept separate so several suites can add their own without
stepping on each other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_aac.tokens.token_cache import process_token_cache
from tests.support.airflow_env import (
    AirflowHome,
    ApiServer,
    start_api_server,
)
from tests.support.requirements import require_postgres

pytest_plugins = ["tests.support.fault_fixtures"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "airflow_cluster: starts a full Airflow cluster (scheduler, dag-processor, ...); slow"
    )
    config.addinivalue_line(
        "markers", "deployment: a distributed deployment (CeleryExecutor, two workers); slow, about 5 min"
    )
    config.addinivalue_line(
        "markers",
        "services: needs PostgreSQL, Redis or Airflow processes (set from its fixtures); not in make test-fast",
    )


# Fixtures that need a server or start Airflow processes. A test that uses one, directly or
# through another fixture, is marked ``services``, which ``make test-fast`` leaves out.
SERVICE_FIXTURES = frozenset(
    {
        "airflow_pg_home",
        "airflow_api_server",
        "airflow_sqlite_home",
        "fault_home",
        "private_postgres",
        "private_redis",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(autouse=True)
def _empty_token_cache() -> Iterator[None]:
    """Each test starts with a process that holds no token, as a new worker does."""
    process_token_cache().clear()
    yield
    process_token_cache().clear()


# =====================================================================================
# Real Airflow environments (tests.support.airflow_env)
#
# Session-scoped and lazy: nothing starts until a test asks for the fixture, and each
# environment is built once per session. Tests sharing them must use unique conn_ids.
# =====================================================================================


@pytest.fixture(scope="session")
def airflow_pg_home() -> Iterator[AirflowHome]:
    """A migrated AIRFLOW_HOME on a fresh PostgreSQL database (dropped at session end).

    Skips when PostgreSQL is unreachable, but fails when CI=true (see require_postgres).
    """
    require_postgres()
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        yield home


@pytest.fixture(scope="session")
def airflow_api_server(airflow_pg_home: AirflowHome) -> Iterator[ApiServer]:
    """``airflow api-server`` on ``airflow_pg_home``; credentials in ``.username``/``.password``."""
    server = start_api_server(airflow_pg_home)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def airflow_sqlite_home() -> Iterator[AirflowHome]:
    """A migrated AIRFLOW_HOME on SQLite, for tests about the SQLite behaviour itself."""
    with AirflowHome(backend="sqlite") as home:
        home.migrate()
        yield home
