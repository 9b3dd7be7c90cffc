"""The provider's own OpenLineage run facet; imported only when the OpenLineage provider is installed."""

from __future__ import annotations

from attrs import define
from openlineage.client.facet_v2 import RunFacet

SCHEMA_URL = "urn:airflow-provider-aac:facets:AACRunFacet:1-0-0"


@define
class AACRunFacet(RunFacet):
    """The AAC run behind an Airflow task: what kind it is, its id, its page in AAC and its job groups.

    Standard facets carry the id (``externalQuery``) but no link; a person reading a
    lineage graph wants to open the run.
    """

    runType: str
    runId: int
    url: str | None
    jobGroupIds: list[int]

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL
