"""Apache Airflow provider for the Alteryx Analytics Cloud API."""

__version__ = "0.1.0"
