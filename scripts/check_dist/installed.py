"""Checks run inside a fresh venv where the wheel is installed, from outside the clone.

usage: python installed.py DAGS_FOLDER
Every module imports from site-packages; LICENSE is in the dist-info; the refresh DAG the
CLI's fix text names (one line in a DAG file) and every shipped example DAG parse with no
import error; the simulator starts as its documented command and serves a minted pair.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

import airflow_provider_aac

# What the postgres, redis and openlineage extras install.
OPTIONAL = ("openlineage", "psycopg2", "redis")


def imports_every_module() -> int:
    package = Path(airflow_provider_aac.__file__).parent
    assert "site-packages" in package.parts, f"imported from {package}, not the installed wheel"
    count = 0
    for module in pkgutil.walk_packages(airflow_provider_aac.__path__, "airflow_provider_aac."):
        if module.name.endswith(".__main__"):
            continue
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as err:
            # Only the modules of an extra may need what the extra installs.
            if not (err.name or "").startswith(OPTIONAL):
                raise
            print(f"  {module.name} needs the extra that installs {err.name}")
            continue
        count += 1
    return count


def licence_in_dist_info() -> None:
    dist = importlib.metadata.distribution("airflow-provider-aac")
    assert dist.version == airflow_provider_aac.__version__, (dist.version, airflow_provider_aac.__version__)
    licence = dist.read_text("licenses/LICENSE") or ""
    assert "Apache License" in licence, "no Apache LICENSE in the installed dist-info"


def parses_the_refresh_dag(dags_folder: Path) -> list[str]:
    from airflow_provider_aac.cli import readiness
    from airflow_provider_aac.dags.refresh import REFRESH_DAG_FILE

    assert readiness.REFRESH_DAG_FILE is REFRESH_DAG_FILE
    (dags_folder / "aac_token_refresh.py").write_text(
        REFRESH_DAG_FILE.format(dag_id="aac_token_refresh", conn_id="aac_default") + "\n"
    )
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow before 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    examples = Path(airflow_provider_aac.__file__).parent / "example_dags"
    dag_ids = []
    for folder in (dags_folder, examples):
        bag = DagBag(dag_folder=str(folder))  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
        assert not bag.import_errors, bag.import_errors
        dag_ids += sorted(bag.dag_ids)
    assert "aac_token_refresh" in dag_ids and len(dag_ids) == 7, dag_ids
    return dag_ids


def starts_the_simulator(workdir: Path) -> str:
    import requests

    ready, pair_file = workdir / "simulator-url", workdir / "pair.json"
    command = [sys.executable, "-m", "airflow_provider_aac.testing.simulator", "--port", "0"]
    simulator = subprocess.Popen([*command, "--pair-file", str(pair_file), "--ready-file", str(ready)])
    try:
        deadline = time.monotonic() + 60
        while not (ready.exists() and ready.read_text().strip()):
            assert simulator.poll() is None, f"the simulator ended with {simulator.returncode}"
            assert time.monotonic() < deadline, "the simulator did not start in 60 s"
            time.sleep(0.1)
        base_url = ready.read_text().strip()
        pair = json.loads(pair_file.read_text())
        answer = requests.get(
            f"{base_url}/v4/people/current",
            headers={"Authorization": f"Bearer {pair['access_token']}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.status_code
        return base_url
    finally:
        simulator.terminate()
        simulator.wait(timeout=30)


if __name__ == "__main__":
    dags = Path(sys.argv[1])
    dags.mkdir(parents=True, exist_ok=True)
    print(f"  imported {imports_every_module()} modules from site-packages")
    licence_in_dist_info()
    print("  LICENSE is in the dist-info")
    print(f"  parsed with no import error: {', '.join(parses_the_refresh_dag(dags))}")
    print(f"  the simulator served a minted pair at {starts_the_simulator(dags.parent)}")
