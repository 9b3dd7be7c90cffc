"""Shared pytest configuration for the provider's tests.

Fixture sections are kept separate so several suites can add their own without
stepping on each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
    if hasattr(config.hook, "pytest_xdist_make_scheduler"):
        config.pluginmanager.register(GroupedScheduling(), "aac_grouped_scheduling")
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
        if bool(item.get_closest_marker("airflow_cluster")) != (xdist_group(item.nodeid) == CLUSTER_GROUP):
            raise pytest.UsageError(
                f"{item.nodeid}: a test is marked airflow_cluster exactly when CLUSTER_TESTS of "
                "tests/conftest.py names it (pytest-xdist runs those one at a time)"
            )
    # The cluster tests first: they are the longest chain of the run, so they must not be
    # handed out last.
    items.sort(key=lambda item: xdist_group(item.nodeid) != CLUSTER_GROUP)


# =====================================================================================
# pytest-xdist (`make test`: ``-n 3 --dist loadgroup``)
#
# Tests are handed to workers in groups; a group's tests run on one worker, in collection
# order, never beside each other:
#  - ``airflow_cluster``: every test that starts a scheduler, Celery workers, ... (marked
#    ``airflow_cluster``). CPU-heavy and timing-sensitive: one at a time.
#  - otherwise one group per module. A module's tests share fixed names (conn_ids, and so
#    the lock and rescue records named by them on the shared PostgreSQL and Redis of
#    127.0.0.1) and module-scoped fixtures, and assume that they run one after another.
# Each worker builds its own session fixtures (AIRFLOW_HOME, database, api-server).
#
# The groups are chosen here from the node id, not by xdist_group marks: the controller
# only sees node ids, and xdist 3.8 puts a mark's group into the node id in a way that
# pytest 9 no longer reads.
# =====================================================================================

CLUSTER_GROUP = "airflow_cluster"
CLUSTER_TESTS = (
    "tests/deployment/",
    "tests/system/",
    "tests/faults/test_under_the_supervisor.py::",
    "tests/support/test_airflow_env.py::test_e_task_under_the_real_supervisor_has_no_orm",
)


def xdist_group(nodeid: str) -> str:
    if nodeid.startswith(CLUSTER_TESTS):
        return CLUSTER_GROUP
    return nodeid.split("::", 1)[0]


class GroupedScheduling:
    """Registered when pytest-xdist is: ``--dist loadgroup`` with the groups of :func:`xdist_group`."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if config.getvalue("dist") != "loadgroup":
            return None
        from xdist.scheduler import LoadGroupScheduling

        class Scheduling(LoadGroupScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return xdist_group(nodeid)

        # Groups in collection order (the cluster first), not by their number of tests.
        config.option.loadscopereorder = False
        return Scheduling(config, log)


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
