"""The shipped refresh DAG, on a demo schedule: the demo's access tokens live only 20 s."""

from __future__ import annotations

from datetime import timedelta

from airflow_provider_aac.dags.refresh import create_refresh_dag

dag = create_refresh_dag(schedule=timedelta(seconds=5))
