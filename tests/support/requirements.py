"""Skip a test whose server is missing, except in CI, where a skip would hide that it never ran."""

from __future__ import annotations

import os

import pytest

from tests.support.metadata_databases import postgres_unavailable_reason


def skip_or_fail_without(reason: str | None, *, in_ci: str, locally: str | None = None) -> None:
    """Nothing when ``reason`` is None; else skip locally and fail when CI=true."""
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} [CI=true, so {in_ci}]")
    pytest.skip(f"{reason} [{locally}]" if locally else reason)


def require_postgres() -> None:
    """PostgreSQL for the row-lock, advisory-lock and real-api-server tests."""
    skip_or_fail_without(
        postgres_unavailable_reason(),
        in_ci="PostgreSQL is required; AAC_TEST_PG_URL says where it is",
        locally="start PostgreSQL or set AAC_TEST_PG_URL to run this test",
    )
