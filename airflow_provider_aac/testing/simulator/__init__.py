"""A local, threaded stand-in for the Alteryx Analytics Cloud API and its token endpoint.

Run it standalone with ``python -m airflow_provider_aac.testing.simulator --help``.
"""

from airflow_provider_aac.testing.simulator.cli import main
from airflow_provider_aac.testing.simulator.runs_and_lineage import (
    AAC_RATE_LIMITS,
    FILE_INPUT_REFUSAL,
    RateLimit,
    RunsAndLineage,
    RunStart,
    jdbc_table,
    result_file,
)
from airflow_provider_aac.testing.simulator.simulator import STAT_KEYS, AACSimulator

__all__ = [
    "AAC_RATE_LIMITS",
    "FILE_INPUT_REFUSAL",
    "STAT_KEYS",
    "AACSimulator",
    "RateLimit",
    "RunStart",
    "RunsAndLineage",
    "jdbc_table",
    "main",
    "result_file",
]
