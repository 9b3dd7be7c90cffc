"""What differs between the Airflow 3 versions the provider supports, in one place."""

from __future__ import annotations

import sys

# Airflow's REST test (POST /api/v2/connections/test) runs the hook on a copy of the
# connection stored under a random id; the route's locals hold both ids.
_REST_TEST_MODULE = "airflow.api_fastapi.core_api.routes.public.connections"
_REST_TEST_FRAME_DEPTH = 40


def connection_tested_as(conn_id: str) -> str | None:
    """The user's connection id when ``conn_id`` is the temporary copy of Airflow's REST test.

    None anywhere else, including Airflow versions whose test route keeps other names.
    """
    frame = sys._getframe(1)
    for _ in range(_REST_TEST_FRAME_DEPTH):
        if frame.f_back is None:
            return None
        frame = frame.f_back
        if frame.f_globals.get("__name__") != _REST_TEST_MODULE:
            continue
        body = frame.f_locals.get("test_body")
        tested = getattr(body, "connection_id", None)
        if frame.f_locals.get("transient_conn_id") == conn_id and isinstance(tested, str):
            return tested
    return None
