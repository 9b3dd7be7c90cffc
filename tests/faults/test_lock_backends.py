"""The lock backends restart and fail; exclusivity and the pair survive, and errors say "try again".

Finding 7 of the fault review: a PostgreSQL restart mid-refresh was untested (and its
lock's idle timeout ended a working holder's session, whose commit then raised a raw
``psycopg2.OperationalError`` although its refresh had succeeded); a Redis outage made
calls fail with ``AACConfigError: ... Check its host, port and password``, a configuration
error for what is a transient outage. These use PostgreSQL and Redis servers of their
own, which the test restarts.
"""

from __future__ import annotations

import uuid

import pytest

from tests.faults.scene import scene
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.private_services import PrivatePostgres, PrivateRedis


def private_lock(home: AirflowHome, backend: str, port: int) -> str:
    conn_id = f"fault_private_{backend}_{uuid.uuid4().hex[:6]}"
    fields = {"login": "postgres", "schema": "postgres"} if backend == "postgres" else {}
    home.add_connection(
        conn_id, "generic", host="127.0.0.1", port=port, extra={"lock_backend": backend}, **fields
    )
    return conn_id


def test_postgres_restarting_while_the_answer_is_on_its_way_costs_nothing(
    fault_home: AirflowHome, airflow_api_server: ApiServer, private_postgres: PrivatePostgres
) -> None:
    lock = private_lock(fault_home, "postgres", private_postgres.port)
    with scene(fault_home, "lock_postgres", api_server=airflow_api_server, lock_conn_id=lock) as s:
        answer = s.token_rule().hold_response()
        refresher = s.start("force")
        answer.wait_forwarded(timeout=60)
        private_postgres.restart(mode="immediate")  # every session ends, the lock's too
        answer.release()
        result = refresher.result()
        assert result["ok"], result
        assert "OperationalError" not in result["stderr"]
        assert result["generation"] == 1
        s.assert_chain_alive()


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_a_lock_lost_before_the_send_stops_the_send(
    fault_home: AirflowHome,
    airflow_api_server: ApiServer,
    private_postgres: PrivatePostgres,
    private_redis: PrivateRedis,
    backend: str,
) -> None:
    server: PrivatePostgres | PrivateRedis = private_postgres if backend == "postgres" else private_redis
    lock = private_lock(fault_home, backend, server.port)
    with scene(fault_home, f"lock_{backend}", api_server=airflow_api_server, lock_conn_id=lock) as s:
        assert s.api_proxy is not None
        claim = s.api_proxy.on("PATCH", times=1).hold_response()
        refresher = s.start("force")
        claim.wait_forwarded(timeout=60)  # the claim is stored; the token is not sent yet
        server.restart()
        claim.release()
        result = refresher.result()
        assert result["error_type"] == "AACLockUnavailableError", result
        assert "Nothing was sent with it; try again." in result["error"]
        assert s.sim.stats()["token_requests"] == 0
        assert "refresh_in_flight" not in s.stored(), "the claim is released: nothing was spent"

        again = s.run("force")
        assert again["ok"], again
        assert again["generation"] == 1
        s.assert_chain_alive()


def test_a_redis_outage_is_a_transient_error_that_spends_nothing(
    fault_home: AirflowHome, airflow_api_server: ApiServer, private_redis: PrivateRedis
) -> None:
    lock = private_lock(fault_home, "redis", private_redis.port)
    with scene(fault_home, "lock_redis", api_server=airflow_api_server, lock_conn_id=lock) as s:
        private_redis.stop()
        down = s.run("force")
        assert down["error_type"] == "AACLockUnavailableError", down
        assert "If Redis is restarting, try again" in down["error"]
        assert s.sim.stats()["token_requests"] == 0
        private_redis.start()
        up = s.run("force")
        assert up["ok"], up
        s.assert_chain_alive()


@pytest.mark.parametrize("key", ["lock_conn_id", "airflow_api_conn_id"])
def test_a_missing_lock_or_api_connection_is_a_config_error_that_names_the_fix(
    fault_home: AirflowHome, airflow_api_server: ApiServer, key: str
) -> None:
    with scene(
        fault_home, "lock_redis", api_server=airflow_api_server, **{key: "aac_no_such_connection"}
    ) as s:
        result = s.run("force")
        assert result["error_type"] == "AACConfigError", result
        assert f"Connection 'aac_no_such_connection', named by '{key}' in the extra" in result["error"]
        assert "does not exist. Create it" in result["error"]
        assert s.sim.stats()["token_requests"] == 0
