"""Moved to ``airflow_provider_aac.testing.airflow_env``; kept while imports are updated."""

from airflow_provider_aac.testing.airflow_env import *  # noqa: F403
from airflow_provider_aac.testing.airflow_env import poll_until, start_api_server, start_cluster  # noqa: F401
