"""PostgreSQL for this repo's tests: skipped on a laptop without it, required in CI."""

from __future__ import annotations

import os

import pytest

from airflow_provider_aac.testing.metadata_databases import postgres_unavailable_reason


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unreachable, but fail it in CI.

    CI provides PostgreSQL; a skip there would hide that the PostgreSQL-only tests
    (row locks, advisory locks, the real api-server) never ran.
    """
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} [CI=true, so PostgreSQL is required; AAC_TEST_PG_URL says where it is]")
    pytest.skip(f"{reason} [start PostgreSQL or set AAC_TEST_PG_URL to run this test]")
