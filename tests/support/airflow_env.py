"""Real Airflow 3 environments for integration tests of DAGs that use the provider.

The provider's hard parts (who may write a connection, what a task process may touch,
what the REST API masks) only show up against real Airflow processes, so these helpers
start the real thing instead of mocking it. This is the one import path to use; the
modules behind it are split by concept:

- :class:`AirflowHome` (``airflow_home``): a throw-away ``AIRFLOW_HOME`` with its own
  metadata DB (a fresh PostgreSQL database, dropped at ``close()``, or an SQLite file),
  ports, keys and admin credentials; ``add_aac_connection`` puts a simulator's freshly
  minted pair into an ``aac`` connection, ``run_python`` runs ``dag.test()`` in a fresh
  interpreter, ``get_connection_extra`` reads back what a writer stored, unmasked.
- :func:`start_api_server` / :class:`ApiServer` and :func:`start_cluster` /
  :class:`AirflowCluster` (``airflow_cluster``): ``airflow api-server`` alone, or
  api-server, scheduler, dag-processor and triggerer (LocalExecutor, or CeleryExecutor
  with ``celery_workers=n`` Celery workers) with calls to trigger a DAG and wait for its run.
- :func:`poll_until`, :func:`free_port` (``processes``): waiting on a real signal with a
  deadline, and ports nobody else uses. Every process is stopped by process group and
  recorded descendants, and swept at exit, so a crashed run leaves nothing behind.

Knobs: ``AAC_TEST_PG_URL`` (the PostgreSQL server's maintenance database, default
``postgresql://postgres@127.0.0.1:5432/postgres``), ``AAC_TEST_KEEP_HOMES=1`` (keep the
home directories, with their logs, after ``close()``).
"""

from __future__ import annotations

from tests.support.airflow_cluster import (
    CLUSTER_COMPONENTS,
    AirflowCluster,
    ApiServer,
    start_api_server,
    start_cluster,
)
from tests.support.airflow_home import AirflowCliError, AirflowHome, Backend
from tests.support.metadata_databases import StoredConnection, postgres_unavailable_reason
from tests.support.processes import AirflowEnvError, free_port, poll_until

__all__ = [
    "CLUSTER_COMPONENTS",
    "AirflowCliError",
    "AirflowCluster",
    "AirflowEnvError",
    "AirflowHome",
    "ApiServer",
    "Backend",
    "StoredConnection",
    "free_port",
    "poll_until",
    "postgres_unavailable_reason",
    "start_api_server",
    "start_cluster",
]
