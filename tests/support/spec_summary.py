"""What the connection's Test button adds when the simulator's spec offers everything the provider uses."""

from airflow_provider_aac.core.api_contract import RELIED_ON

SPEC_COMPLETE = (
    "AAC's API spec v2025.23.2 has every endpoint, parameter and field the provider uses "
    f"({len(RELIED_ON)} operations)."
)
