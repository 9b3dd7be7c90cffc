"""Who will refresh a connection, and what the deployment still lacks for it.

A connection works in the api-server from the moment it is stored; tasks on workers and
the refresh DAG need more (a lock or the refresh DAG and its pool, and an Airflow API
connection to write through). Saying so when the pair is stored saves finding out at the
first refresh, minutes or hours later, on a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_aac.compat import AAC_CLI
from airflow_provider_aac.dags.refresh import DEFAULT_POOL, POOL_COMMAND, REFRESH_DAG_FILE
from airflow_provider_aac.errors import AACConfigError, AACError
from airflow_provider_aac.tokens.airflow_api import api_server_url
from airflow_provider_aac.tokens.connection import AACConnectionConfig, RefreshMode, get_named_connection
from airflow_provider_aac.tokens.manager import TokenManager

MODE_WORDS = {
    RefreshMode.METADATA_DB: "metadata_db (locks the connection row)",
    RefreshMode.LOCK: "lock (takes the lock connection's lock, writes through the Airflow API)",
    RefreshMode.SINGLE_WRITER: "single_writer (never spends; asks the refresh DAG and waits)",
}


@dataclass(frozen=True)
class Gap:
    """Something the deployment lacks, and the commands that supply it."""

    what: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"what": self.what, "fix": self.fix}


WRITER = "refresh DAG task"
API_CONNECTION_ADD = (
    "airflow connections add {api} --conn-type http --conn-host https://<api-server> "
    "--conn-login <user> --conn-password <password> (a plain http://<api-server>:8080 on another machine "
    "also needs --conn-extra '{{\"allow_insecure_http\": true}}', on a trusted network only)"
)


@dataclass(frozen=True)
class Readiness:
    modes: dict[str, RefreshMode]
    gaps: list[Gap]

    def as_dict(self) -> dict[str, Any]:
        return {
            "modes": {component: mode.value for component, mode in self.modes.items()},
            "missing": [gap.as_dict() for gap in self.gaps],
        }

    def described_modes(self) -> list[tuple[str, str]]:
        return [
            (
                component,
                "single_writer (the one process that spends, writing through the Airflow API)"
                if component == WRITER and mode is RefreshMode.SINGLE_WRITER
                else MODE_WORDS[mode],
            )
            for component, mode in self.modes.items()
        ]


def component_modes(config: AACConnectionConfig) -> dict[str, RefreshMode]:
    manager = TokenManager(config.conn_id)
    return {
        "api-server, scheduler, CLI": manager.mode_of(config, orm=True),
        "tasks and triggers": manager.mode_of(config, orm=False),
        WRITER: manager.mode_of(config, orm=False, as_writer=True),
    }


def assess(config: AACConnectionConfig) -> Readiness:
    conn_id = config.conn_id
    gaps: list[Gap] = []
    workers_wait = TokenManager(conn_id).tasks_wait_for_refresh_dag(config)
    lock = config.lock_conn_id
    if lock:
        gaps += _missing_connection(
            lock,
            "lock_conn_id",
            conn_id,
            f"airflow connections add {lock} --conn-type generic --conn-host <redis host> --conn-port 6379 "
            '--conn-extra \'{"lock_backend": "redis"}\'',
        )
    api = config.airflow_api_conn_id
    if api:
        gaps += _missing_connection(api, "airflow_api_conn_id", conn_id, API_CONNECTION_ADD.format(api=api))
        refused = api_host_refused(config)
        if refused:
            gaps.append(
                Gap(refused, f"airflow connections delete {api}, then {API_CONNECTION_ADD.format(api=api)}")
            )
    else:
        gaps.append(
            Gap(
                "an Airflow API connection: tasks on workers, and the refresh DAG's task, write the rotated "
                "pair through the api-server, and cannot without one",
                f"{API_CONNECTION_ADD.format(api='airflow_api')}; then name it in the connection: "
                f"{AAC_CLI} connect {conn_id} --airflow-api-conn-id airflow_api (with the pair), "
                'or add "airflow_api_conn_id": "airflow_api" to its extra in the UI',
            )
        )
    gaps += _refresh_dag_gaps(config, needed=workers_wait)
    return Readiness(component_modes(config), gaps)


def api_host_refused(config: AACConnectionConfig) -> str | None:
    """Why a refresh would refuse the Airflow API connection's host (plain http:// elsewhere), if it would.

    The rule is the one ``AirflowApiClient`` applies before it sends anything; said here,
    it reaches the user when the pair is stored or the chain checked, not at a worker's
    first refresh. An absent connection is another gap, so it is not reported here.
    """
    api = config.airflow_api_conn_id
    if not api:
        return None
    try:
        conn = get_named_connection(api, named_by="airflow_api_conn_id", aac_conn_id=config.conn_id)
    except AACError:
        return None
    try:
        api_server_url(api, conn)
    except AACConfigError as err:
        return str(err)
    return None


def _missing_connection(conn_id: str, key: str, aac_conn_id: str, create: str) -> list[Gap]:
    try:
        get_named_connection(conn_id, named_by=key, aac_conn_id=aac_conn_id)
    except AACError:
        return [Gap(f"the connection {conn_id!r} that '{key}' names", create)]
    return []


def _refresh_dag_gaps(config: AACConnectionConfig, *, needed: bool) -> list[Gap]:
    from airflow.models.dag import DagModel
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag_id = config.refresh_dag_id
    why = (
        "tasks on workers have no lock, so only it may spend the refresh token"
        if needed
        else "it refreshes ahead of need and warns before the refresh token's deadline"
    )
    gaps = []
    with create_session() as session:
        dag = session.scalars(select(DagModel).where(DagModel.dag_id == dag_id)).one_or_none()
        paused = None if dag is None else bool(dag.is_paused)
        pool = session.scalars(select(Pool).where(Pool.pool == DEFAULT_POOL)).one_or_none()
        slots = None if pool is None else pool.slots
    if dag is None:
        gaps.append(
            Gap(
                f"the refresh DAG {dag_id!r} ({why})",
                "add a file to the DAGs folder whose one line is: "
                + REFRESH_DAG_FILE.format(dag_id=dag_id, conn_id=config.conn_id),
            )
        )
    elif paused:
        gaps.append(Gap(f"the refresh DAG {dag_id!r} is paused ({why})", f"airflow dags unpause {dag_id}"))
    if slots is None:
        gaps.append(
            Gap(f"the refresh DAG's one-slot pool {DEFAULT_POOL!r}", POOL_COMMAND.format(pool=DEFAULT_POOL))
        )
    elif slots != 1:
        gaps.append(
            Gap(
                f"the pool {DEFAULT_POOL!r} has {slots} slots; the refresh DAG needs exactly one",
                POOL_COMMAND.format(pool=DEFAULT_POOL),
            )
        )
    return gaps
