"""Whether the store behind Airflow's connection lookup can be used, and whether it answers.

Kept apart from ``tokens.connection`` (which asks it after a "not defined") and
``tokens.metadata_db`` (which only works where the ORM does), so neither imports the other.
"""

from __future__ import annotations

import os


def orm_available() -> bool:
    """False on workers and triggerers, where Airflow 3 blocks the ORM."""
    if os.environ.get("_AIRFLOW_PROCESS_CONTEXT") == "client":
        return False
    try:
        from airflow import settings
        from airflow.configuration import conf
    except ImportError:
        return False
    if conf.get("database", "sql_alchemy_conn", fallback="").startswith("airflow-db-not-allowed"):
        return False
    session_factory = getattr(settings, "Session", None)
    return session_factory is not None and getattr(session_factory, "__name__", "") != "BlockedDBSession"


def connection_store_unreachable() -> str | None:
    """Why the store behind Airflow's connection lookup does not answer, or None when it does."""
    if orm_available():
        return metadata_db_unreachable()
    return execution_api_unreachable()


def metadata_db_unreachable() -> str | None:
    """Why the metadata DB does not answer a trivial query, or None when it does."""
    try:
        from airflow import settings
        from sqlalchemy import text

        engine = settings.engine
        if engine is None:
            return None
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:
        return f"the metadata DB did not answer ({type(err).__name__})"
    return None


def execution_api_unreachable() -> str | None:
    """Why Airflow's API server (the store on workers and triggerers) does not answer its health check."""
    import httpx

    from airflow_provider_aac.compat import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    if base.startswith("/"):
        base = f"http://localhost:8080{base}"
    url = conf.get("core", "execution_api_server_url", fallback=f"{base.rstrip('/')}/execution/")
    try:
        httpx.get(url.rstrip("/") + "/health", timeout=5.0)
    except httpx.HTTPError as err:
        return f"Airflow's API server at {url} did not answer ({type(err).__name__})"
    return None
