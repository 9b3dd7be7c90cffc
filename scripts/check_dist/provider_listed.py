"""Reads ``airflow providers get airflow-provider-aac -o json`` on stdin: the installed version is listed.

Airflow 3.0 prints its plugins' log lines before the JSON, so the JSON line is looked for.
"""

from __future__ import annotations

import json
import sys

import airflow_provider_aac

line = next((x for x in sys.stdin.read().splitlines() if x.startswith("[{")), None)
assert line is not None, "airflow providers get printed no provider"
[listed] = json.loads(line)
name, version = (
    listed.get("Provider", listed.get("package_name")),
    listed.get("Version", listed.get("version")),
)
assert (name, version) == ("airflow-provider-aac", airflow_provider_aac.__version__), listed
print(f"  airflow providers get: {name} {version}")
