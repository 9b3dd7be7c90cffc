"""What the built sdist and wheel hold, read from the files themselves (no install).

usage: python artifacts.py SDIST WHEEL
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from email.parser import Parser

USER_EXTRAS = {"postgres", "redis", "openlineage", "testing"}
NOT_IN_WHEEL = ("tests/",)
# Of testing/, only what docs/testing.md makes public ships; the Airflow harness is tests/support's.
TESTING = "airflow_provider_aac/testing/"
PUBLIC_TESTING = (f"{TESTING}__init__.py", f"{TESTING}pytest_plugin.py", f"{TESTING}simulator/")
IN_SDIST = (
    "LICENSE",
    "NOTICE",
    "CHANGELOG.md",
    "tests/conftest.py",
    "docs/index.md",
    "docs/conf.py",
    "Makefile",
)


def main(sdist: str, wheel: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        licence = archive.read(f"{dist_info}/licenses/LICENSE").decode()
    if "Apache License" not in licence or "Version 2.0" not in licence:
        problems.append("the wheel's dist-info/licenses/LICENSE is not the Apache 2.0 text")
    if sorted(metadata.get_all("License-File") or []) != ["LICENSE", "NOTICE"]:
        problems.append(f"License-File: {metadata.get_all('License-File')}")
    if metadata["License-Expression"] != "Apache-2.0":
        problems.append(f"License-Expression: {metadata['License-Expression']}")
    for requirement in metadata.get_all("Requires-Dist") or []:
        name, _, marker = requirement.partition(";")
        extra = marker.split("extra ==")[-1].strip().strip("'\"") if "extra ==" in marker else None
        if extra is not None and extra not in USER_EXTRAS:
            problems.append(f"a development extra is published: {requirement}")
        if name.replace(" ", "").startswith("apache-airflow==") or "apache-airflow<" in name.replace(" ", ""):
            problems.append(f"the metadata pins Airflow: {requirement}")
    urls = {url.split(",")[0] for url in metadata.get_all("Project-URL") or []}
    if not {"Documentation", "Source", "Issues", "Changelog"} <= urls:
        problems.append(f"Project-URL names {sorted(urls)}")
    if "Framework :: Apache Airflow :: Provider" not in (metadata.get_all("Classifier") or []):
        problems.append("no 'Framework :: Apache Airflow :: Provider' classifier")
    if "](docs/" in (metadata.get_payload() or ""):
        problems.append("the long description has relative docs/ links, which break on the package index")
    problems += [f"the wheel holds {n}" for n in names if n.startswith(NOT_IN_WHEEL)]
    problems += [
        f"the wheel holds {n}, which is not public"
        for n in names
        if n.startswith(TESTING) and not n.startswith(PUBLIC_TESTING)
    ]
    if not any(n.endswith("example_dags/aac_token_refresh.py") for n in names):
        problems.append("the wheel has no example_dags/aac_token_refresh.py")
    with tarfile.open(sdist) as archive:
        root = archive.getnames()[0].split("/")[0]
        held = {n.removeprefix(f"{root}/") for n in archive.getnames()}
    problems += [f"the sdist has no {n}" for n in IN_SDIST if n not in held]
    return problems


if __name__ == "__main__":
    found = main(*sys.argv[1:3])
    for problem in found:
        print(f"check_dist: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
