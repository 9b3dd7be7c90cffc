"""The "AAC run" button on a task: opens the run the task started or watched."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

from airflow_provider_aac.compat import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

RUN_URL_XCOM_KEY = "run_url"
RUN_ID_XCOM_KEY = "run_id"


class AACRunLink(BaseOperatorLink):
    """Reads the ``run_url`` XCom, which operators and sensors push before they wait.

    Airflow 3 resolves the link in the worker when the task ends or defers and stores it
    for the UI, so a deferrable task shows the button while it waits; a polling task shows
    it when it ends (its ``run_url`` XCom is there from the start).
    """

    name = "AAC run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url: Any = XCom.get_value(ti_key=ti_key, key=RUN_URL_XCOM_KEY)
        return url if isinstance(url, str) else ""
