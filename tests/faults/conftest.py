"""The fault suite's shared Airflow: one PostgreSQL metadata DB, one api-server, lock connections."""

from __future__ import annotations

import pytest

from tests.support.airflow_env import AirflowHome, ApiServer


@pytest.fixture(scope="session")
def fault_home(airflow_pg_home: AirflowHome, airflow_api_server: ApiServer) -> AirflowHome:
    """The session's PostgreSQL home with the lock connections the scenes name."""
    airflow_pg_home.add_lock_connection("fault_lock_postgres", "postgres")
    airflow_pg_home.add_lock_connection("fault_lock_redis", "redis")
    return airflow_pg_home
