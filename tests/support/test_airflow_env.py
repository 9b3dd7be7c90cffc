"""The harness works, and the Airflow 3 facts the provider is built on still hold.

The provider's token store depends on details of Airflow's REST API and task runtime
that no changelog promises: which extra keys GET masks, that ``update_mask=extra``
leaves the password alone, that PATCH replaces the whole extra, what an expired JWT
answers, that tasks cannot open an ORM session. Each is pinned here against a real
api-server (and, for the task runtime, a real cluster), so an Airflow upgrade that
changes one fails here first, with the fact in the test name.
"""

from __future__ import annotations

import json
import os
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.support.airflow_cluster import worker_hostname
from tests.support.airflow_env import (
    AirflowCluster,
    AirflowHome,
    ApiServer,
    free_port,
    start_api_server,
    start_cluster,
)
from tests.support.metadata_databases import pg_maintenance_url
from tests.support.requirements import require_postgres

EXTRA_KEYS = (
    "access_token",
    "refresh_token",
    "client_id",
    "token_url",
    "generation",
    "access_expires_at",
    "refreshed_at",
    "refresh_started_at",
    "lock_conn_id",
    "airflow_api_conn_id",
    "refresh_mode",
)
# Airflow's rule: a key is masked when its lower-cased name (non-word characters turned
# into "_") CONTAINS one of the sensitive words (DEFAULT_SENSITIVE_FIELDS plus
# [core] sensitive_var_conn_names), so "token_url" is masked because of "token".
MASKED_BY_DEFAULT = {"access_token", "refresh_token", "token_url"}


def _conn_id(prefix: str) -> str:
    """A connection id no other test on the shared server uses."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _sample_extra() -> dict[str, Any]:
    extra: dict[str, Any] = {key: f"value-of-{key}" for key in EXTRA_KEYS}
    extra["generation"] = 7
    return extra


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


# ---------------------------------------------------------------------------- harness


def test_env_is_complete_and_isolated_from_the_callers_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW_CONN_LEAKED", "generic://leaked")
    monkeypatch.setenv("_AIRFLOW_PROCESS_CONTEXT", "server")
    with AirflowHome(backend="sqlite", extra_env={"AIRFLOW__CORE__PARALLELISM": "3"}) as home:
        env = home.env()
        assert env["AIRFLOW_HOME"] == str(home.path)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__CORE__PARALLELISM"] == "3"
        assert "AIRFLOW_CONN_LEAKED" not in env
        assert "_AIRFLOW_PROCESS_CONTEXT" not in env
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{home.path / 'airflow.db'}"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{home.base_url}/execution/"
        assert json.loads(home.passwords_file.read_text()) == {home.username: home.password}
        path = home.path
    assert not path.exists()


def test_a_celery_home_has_its_own_queue_on_the_broker_and_workers_name_themselves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No cluster: the settings a CeleryExecutor home hands its components, and the refusals."""
    require_postgres()
    with pytest.raises(ValueError, match="postgres"):
        AirflowHome(backend="sqlite", executor="CeleryExecutor")
    with AirflowHome(backend="postgres", executor="CeleryExecutor") as home, AirflowHome("sqlite") as local:
        env = home.env()
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == f"db+{home.sql_alchemy_conn}"
        assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == home.celery_queue != local.celery_queue
        assert "AIRFLOW__CELERY__BROKER_URL" not in local.env()
        with pytest.raises(ValueError, match="CeleryExecutor home"):
            start_cluster(local, ["api-server", "celery-worker:w1"])
    monkeypatch.setenv("AAC_TEST_WORKER_HOSTNAME", "w7")
    assert worker_hostname() == "w7"
    monkeypatch.delenv("AAC_TEST_WORKER_HOSTNAME")
    assert worker_hostname() == socket.getfqdn()


def test_postgres_home_creates_and_drops_its_own_database() -> None:
    require_postgres()
    import psycopg2

    def exists(name: str) -> bool:
        conn = psycopg2.connect(pg_maintenance_url())
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    home = AirflowHome(backend="postgres")
    try:
        assert home.db_name and exists(home.db_name)
        assert home.sql_alchemy_conn.endswith(f"/{home.db_name}")
    finally:
        home.close()
    assert not exists(home.db_name)
    assert not home.path.exists()


@pytest.mark.parametrize("home_fixture", ["airflow_sqlite_home", "airflow_pg_home"])
def test_connection_added_by_cli_reads_back_unmasked_from_the_db(
    home_fixture: str, request: pytest.FixtureRequest
) -> None:
    home: AirflowHome = request.getfixturevalue(home_fixture)
    conn_id = _conn_id("roundtrip")
    extra = _sample_extra()
    home.add_connection(
        conn_id, "generic", host="h.example", login="u", password="pw-secret-1", extra=extra, port=8443
    )
    assert home.get_connection_extra(conn_id) == extra
    stored = home.get_connection(conn_id)
    assert stored is not None
    assert (stored.host, stored.login, stored.password, stored.port) == (
        "h.example",
        "u",
        "pw-secret-1",
        8443,
    )
    raw = home.query("SELECT password, extra FROM connection WHERE conn_id = %s", (conn_id,))[0]
    assert "pw-secret-1" not in raw[0] and "value-of-access_token" not in raw[1], (
        "Fernet must encrypt at rest"
    )
    with pytest.raises(KeyError):
        home.get_connection_extra(_conn_id("missing"))


def test_api_server_starts_answers_and_stops_without_leftovers(airflow_sqlite_home: AirflowHome) -> None:
    server = start_api_server(airflow_sqlite_home, port=free_port())
    try:
        assert server.wait_healthy(10)["metadatabase"]["status"] == "healthy"
        assert server.request("GET", "/api/v2/version").status_code == 200
        pid = server.process.pid
    finally:
        server.stop()
    assert server.process.popen.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0, "port still served after stop()"


# ------------------------------------------------------------ facts: REST connections (a, b)


def test_a_patch_extra_with_update_mask_replaces_only_extra(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    home, api = airflow_pg_home, airflow_api_server
    conn_id = _conn_id("patch")
    extra = _sample_extra()
    home.add_connection(conn_id, "generic", host="h.example", login="u", password="pw-secret-1", extra=extra)

    new_extra = {**extra, "access_token": "new-access-token", "generation": 8}
    resp = api.request(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        params={"update_mask": "extra"},
        # conn_type is required by the schema; with the mask it is NOT applied.
        json={"connection_id": conn_id, "conn_type": "ignored_type", "extra": json.dumps(new_extra)},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {
        "connection_id",
        "conn_type",
        "description",
        "host",
        "login",
        "schema",
        "port",
        "password",
        "extra",
        "team_name",
    }
    assert body["password"] == "***" and json.loads(body["extra"])["access_token"] == "***"
    stored = home.get_connection(conn_id)
    assert stored is not None
    assert stored.extra_dejson == new_extra
    assert (stored.conn_type, stored.host, stored.login, stored.password) == (
        "generic",
        "h.example",
        "u",
        "pw-secret-1",
    )

    # The extra is replaced, not merged: keys left out are dropped. Only a sensitive key
    # sent as "***" gets its stored value back (so a GET-modify-PATCH round trip is safe).
    resp = api.request(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        params={"update_mask": "extra"},
        json={
            "connection_id": conn_id,
            "conn_type": "generic",
            "extra": json.dumps({"refresh_token": "***"}),
        },
    )
    assert resp.status_code == 200, resp.text
    assert home.get_connection_extra(conn_id) == {"refresh_token": "value-of-refresh_token"}

    patch = {"connection_id": conn_id, "extra": "{}"}
    resp = api.request("PATCH", f"/api/v2/connections/{conn_id}", params={"update_mask": "extra"}, json=patch)
    assert resp.status_code == 422 and resp.json()["detail"][0]["loc"] == ["body", "conn_type"]
    resp = api.request(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        params={"update_mask": "extra"},
        json={"connection_id": conn_id, "conn_type": "generic", "extra": "not json"},
    )
    assert resp.status_code == 422
    resp = api.request(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        params={"update_mask": "extra"},
        json={"connection_id": "other_id", "conn_type": "generic", "extra": "{}"},
    )
    assert resp.status_code == 400
    missing = _conn_id("missing")
    resp = api.request(
        "PATCH",
        f"/api/v2/connections/{missing}",
        params={"update_mask": "extra"},
        json={"connection_id": missing, "conn_type": "generic", "extra": "{}"},
    )
    assert resp.status_code == 404


def test_a_patch_without_update_mask_applies_every_field_sent(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    conn_id = _conn_id("nomask")
    airflow_pg_home.add_connection(
        conn_id, "generic", host="h.example", password="pw-secret-1", extra={"a": 1}
    )
    resp = airflow_api_server.request(
        "PATCH",
        f"/api/v2/connections/{conn_id}",
        json={"connection_id": conn_id, "conn_type": "changed_type", "extra": "{}"},
    )
    assert resp.status_code == 200, resp.text
    stored = airflow_pg_home.get_connection(conn_id)
    assert stored is not None
    # Fields not sent stay; fields sent (conn_type!) are written: always send the mask.
    assert (stored.conn_type, stored.host, stored.password, stored.extra_dejson) == (
        "changed_type",
        "h.example",
        "pw-secret-1",
        {},
    )


def test_b_get_masks_extra_keys_containing_a_sensitive_word(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    conn_id = _conn_id("mask")
    extra = {**_sample_extra(), "nested": {"client_secret": "s3cr3t-value", "plain": "p"}, "api_key": "ab"}
    airflow_pg_home.add_connection(conn_id, "generic", password="pw-secret-1", extra=extra)
    resp = airflow_api_server.request("GET", f"/api/v2/connections/{conn_id}")
    assert resp.status_code == 200
    body = resp.json()
    got = json.loads(body["extra"])
    masked = {key for key in EXTRA_KEYS if got[key] == "***"}
    assert masked == MASKED_BY_DEFAULT
    assert {k: got[k] for k in EXTRA_KEYS if k not in masked} == {
        k: v for k, v in extra.items() if k in EXTRA_KEYS and k not in masked
    }
    assert got["nested"] == {"client_secret": "***", "plain": "p"}, "nested keys are masked too"
    assert got["api_key"] == "***", "key-based masking ignores the 5-character minimum"
    assert body["password"] == "***"


@pytest.fixture(scope="module")
def configured_api_server(airflow_pg_home: AirflowHome) -> Iterator[ApiServer]:
    """A second api-server on the session DB, with the settings the facts below are about."""
    env = {
        "AIRFLOW__API_AUTH__JWT_EXPIRATION_TIME": "120",
        "AIRFLOW__CORE__SENSITIVE_VAR_CONN_NAMES": "refresh_mode,generation",
        "AIRFLOW_CONN_AAC_FROM_ENV": json.dumps({"conn_type": "generic", "host": "from-env.example"}),
    }
    server = start_api_server(airflow_pg_home, port=free_port(), env=env)
    try:
        yield server
    finally:
        server.stop()


def test_b_sensitive_var_conn_names_adds_masked_keys_but_only_string_values(
    airflow_pg_home: AirflowHome, configured_api_server: ApiServer
) -> None:
    conn_id = _conn_id("maskcfg")
    airflow_pg_home.add_connection(conn_id, "generic", extra=_sample_extra())
    got = json.loads(configured_api_server.request("GET", f"/api/v2/connections/{conn_id}").json()["extra"])
    assert got["refresh_mode"] == "***"
    assert got["generation"] == 7, "non-string values are never replaced by ***"
    assert {k for k in EXTRA_KEYS if got[k] == "***"} == MASKED_BY_DEFAULT | {"refresh_mode"}


def test_b_hide_sensitive_var_conn_fields_false_turns_all_masking_off() -> None:
    """Checked on the response model in a subprocess: a third api-server would cost 4 s."""
    code = textwrap.dedent(
        """
        import json
        from airflow.api_fastapi.core_api.datamodels.connections import ConnectionResponse

        fields = dict.fromkeys(("description", "host", "login", "schema", "port", "team_name"))
        extra = json.dumps({"access_token": "tok-AAAAAAAA", "client_id": "cid"})
        r = ConnectionResponse.model_validate(
            {**fields, "conn_id": "x", "conn_type": "generic", "password": "pw-secret-1", "extra": extra}
        )
        print(json.dumps([r.password, json.loads(r.extra)]))
        """
    )
    with AirflowHome(backend="sqlite") as home:
        default = home.run_python(code).stdout.strip().splitlines()[-1]
        off = home.run_python(code, env={"AIRFLOW__CORE__HIDE_SENSITIVE_VAR_CONN_FIELDS": "False"})
    assert json.loads(default) == ["***", {"access_token": "***", "client_id": "cid"}]
    assert json.loads(off.stdout.strip().splitlines()[-1]) == [
        "pw-secret-1",
        {"access_token": "tok-AAAAAAAA", "client_id": "cid"},
    ]


# ---------------------------------------------------------------------- facts: auth (c)


def test_c_token_with_wrong_credentials_is_401(airflow_api_server: ApiServer) -> None:
    url = f"{airflow_api_server.base_url}/auth/token"
    resp = httpx.post(url, json={"username": airflow_api_server.username, "password": "wrong"})
    assert (resp.status_code, resp.json()) == (401, {"detail": "Invalid credentials"})
    resp = httpx.post(url, json={"username": "nobody", "password": "wrong"})
    assert (resp.status_code, resp.json()) == (401, {"detail": "Invalid credentials"})
    resp = httpx.post(url, json={"username": airflow_api_server.username})
    assert resp.status_code == 422


def test_c_token_lifetime_is_api_auth_jwt_expiration_time(
    airflow_api_server: ApiServer, configured_api_server: ApiServer
) -> None:
    resp = httpx.post(
        f"{airflow_api_server.base_url}/auth/token",
        json={"username": airflow_api_server.username, "password": airflow_api_server.password},
    )
    assert resp.status_code == 201 and set(resp.json()) == {"access_token"}
    claims = _claims(resp.json()["access_token"])
    assert claims["exp"] - claims["iat"] == 86400  # default [api_auth] jwt_expiration_time
    assert claims["sub"] == airflow_api_server.username and claims["aud"] == "apache-airflow"
    configured = _claims(configured_api_server.api_token())
    assert configured["exp"] - configured["iat"] == 120


def test_c_missing_expired_and_foreign_tokens(
    airflow_pg_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    url = f"{airflow_api_server.base_url}/api/v2/connections"
    assert httpx.get(url).status_code == 401
    claims = _claims(airflow_api_server.api_token())
    now = int(time.time())
    expired = jwt.encode(
        {**claims, "iat": now - 300, "nbf": now - 300, "exp": now - 60}, airflow_pg_home.jwt_secret, "HS512"
    )
    resp = httpx.get(url, headers={"Authorization": f"Bearer {expired}"})
    assert (resp.status_code, resp.json()) == (401, {"detail": "Token Expired"})
    foreign = jwt.encode(claims, "x" * 64, "HS512")
    resp = httpx.get(url, headers={"Authorization": f"Bearer {foreign}"})
    assert (resp.status_code, resp.json()) == (403, {"detail": "Invalid JWT token"})


# --------------------------------------------------------------- facts: env connections (d)


def test_d_env_var_connection_is_invisible_to_rest(
    airflow_pg_home: AirflowHome, configured_api_server: ApiServer
) -> None:
    api = configured_api_server
    conn_id = "aac_from_env"
    assert api.request("GET", f"/api/v2/connections/{conn_id}").status_code == 404
    patch = {"connection_id": conn_id, "conn_type": "generic", "extra": "{}"}
    resp = api.request("PATCH", f"/api/v2/connections/{conn_id}", params={"update_mask": "extra"}, json=patch)
    assert resp.status_code == 404
    listed = api.request("GET", "/api/v2/connections", params={"limit": 100}).json()["connections"]
    assert conn_id not in {c["connection_id"] for c in listed}
    # A POST creates a DB row that REST then shows, while Airflow's secrets chain (env
    # first) keeps answering with the env var: nothing errors, the write is just shadowed.
    resp = api.request("POST", "/api/v2/connections", json={**patch, "host": "from-db.example"})
    assert resp.status_code == 201, resp.text
    try:
        assert api.request("GET", f"/api/v2/connections/{conn_id}").json()["host"] == "from-db.example"
        seen = airflow_pg_home.run_python(
            "import os; os.environ['_AIRFLOW_PROCESS_CONTEXT'] = 'server'\n"
            "from airflow.sdk import BaseHook\n"
            f"print(BaseHook.get_connection({conn_id!r}).host)",
            env={
                "AIRFLOW_CONN_AAC_FROM_ENV": json.dumps({"conn_type": "generic", "host": "from-env.example"})
            },
        )
        assert seen.stdout.strip().splitlines()[-1] == "from-env.example"
    finally:
        api.request("DELETE", f"/api/v2/connections/{conn_id}")


# ----------------------------------------------------- facts: task runtime (e, f, g)

PROBE_DAG = textwrap.dedent(
    '''
    """Records what task code can and cannot do, into a file (the task log masks secrets)."""
    from __future__ import annotations

    import json
    import os
    from pathlib import Path

    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG


    def probe() -> None:
        result = {}
        try:
            from airflow import settings

            settings.Session()
            result["session"] = "ok"
        except Exception as exc:
            result["session"] = f"{type(exc).__name__}: {exc}"
        result["sql_alchemy_conn"] = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
        result["process_context"] = os.environ.get("_AIRFLOW_PROCESS_CONTEXT")
        from airflow.sdk.execution_time import task_runner

        result["supervisor_comms"] = task_runner.SUPERVISOR_COMMS is not None
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection("x")
        result["extra"] = conn.extra_dejson
        result["password"] = conn.password
        out = Path(os.environ["AIRFLOW_HOME"]) / f"probe-{os.environ.get('PROBE_MODE', 'cluster')}.json"
        out.write_text(json.dumps(result))
        print("probe finished")


    with DAG("probe_dag", schedule=None, catchup=False) as dag:
        PythonOperator(task_id="probe", python_callable=probe)
    '''
)
PROBE_EXTRA = {"access_token": "tok-AAAAAAAA", "refresh_token": "ref-BBBBBBBB", "client_id": "cid"}


@pytest.fixture(scope="module")
def probe_home() -> Iterator[AirflowHome]:
    require_postgres()
    home = AirflowHome(backend="postgres")
    try:
        (home.dags_folder / "probe_dag.py").write_text(PROBE_DAG)
        home.migrate()
        home.add_connection("x", "generic", host="h.example", password="pw-secret-1", extra=PROBE_EXTRA)
        yield home
    finally:
        home.close()


def test_g_dag_test_runs_in_process_with_comms_and_orm(probe_home: AirflowHome) -> None:
    probe_home.run_python(
        "import os\n"
        "from airflow.models.dagbag import DagBag\n"
        "DagBag(os.environ['AIRFLOW__CORE__DAGS_FOLDER']).get_dag('probe_dag').test()\n",
        env={"PROBE_MODE": "dagtest"},
    )
    result = json.loads((probe_home.path / "probe-dagtest.json").read_text())
    # dag.test() sets SUPERVISOR_COMMS too (in-process comms), yet the ORM works: "comms
    # set" does not mean "no DB access".
    assert result["supervisor_comms"] is True
    assert result["session"] == "ok"
    assert result["sql_alchemy_conn"] == probe_home.sql_alchemy_conn
    assert result["process_context"] is None
    assert (result["extra"], result["password"]) == (PROBE_EXTRA, "pw-secret-1")


@pytest.mark.airflow_cluster
def test_e_task_under_the_real_supervisor_has_no_orm(probe_home: AirflowHome) -> None:
    started = time.monotonic()
    cluster: AirflowCluster = start_cluster(probe_home)
    try:
        healthy = time.monotonic()
        cluster.wait_for_dag("probe_dag")
        cluster.pool_set("probe_pool", 1)
        run_id = cluster.trigger_dag("probe_dag")
        assert cluster.wait_for_run("probe_dag", run_id, timeout=120) == "success"
        finished = time.monotonic()
        [ti] = cluster.task_instances("probe_dag", run_id)
        assert ti["state"] == "success"
        assert "probe finished" in cluster.task_log("probe_dag", run_id, "probe")
    finally:
        cluster.stop()
    print(f"cluster start {healthy - started:.1f}s, DAG serialized + run {finished - healthy:.1f}s")
    result = json.loads((probe_home.path / "probe-cluster.json").read_text())
    assert (
        result["session"] == "RuntimeError: Direct database access via the ORM is not allowed in Airflow 3.0"
    )
    assert result["sql_alchemy_conn"] == "airflow-db-not-allowed:///"
    assert result["supervisor_comms"] is True
    # Inherited from the scheduler (LocalExecutor forks it): not a sign of DB access.
    assert result["process_context"] == "server"
    assert (result["extra"], result["password"]) == (PROBE_EXTRA, "pw-secret-1"), "unmasked inside the task"
