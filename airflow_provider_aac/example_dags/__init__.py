"""Example DAGs, one per use, shipped with the provider as Airflow's own providers ship theirs.

Copy a file into your DAGs folder and edit its constants, or import from it: every file
here runs in this project's tests against the AAC simulator. The refresh DAG is one
import away: a DAG file holding
``from airflow_provider_aac.dags.refresh import create_refresh_dag; dag = create_refresh_dag()``
is all it takes (see ``aac_token_refresh.py`` for its settings).
"""
