"""What the published package promises, read from the project's own files (scripts/check_dist.sh checks the built ones).

The metadata pins no Airflow and publishes no development extras; the version has one
source; the docs site builds the way ``make docs`` does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
import yaml

import airflow_provider_aac
from airflow_provider_aac.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[1]
USER_EXTRAS = {"postgres", "redis", "openlineage", "testing"}


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_published_requirements_pin_no_airflow_and_carry_no_development_tools() -> None:
    project = _pyproject()["project"]
    assert set(project["optional-dependencies"]) == USER_EXTRAS
    published = [
        *project["dependencies"],
        *(r for extra in project["optional-dependencies"].values() for r in extra),
    ]
    assert not [r for r in published if re.match(r"apache-airflow\s*(==|<|~=)", r)], published
    tools = {"pytest-timeout", "playwright", "ruff", "mypy", "sphinx", "apache-airflow-providers-celery"}
    assert not [r for r in published if re.split(r"[<>=!~\[ ;]", r)[0] in tools], published


def test_the_version_has_one_source() -> None:
    pyproject = _pyproject()
    assert "version" not in pyproject["project"] and pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "airflow_provider_aac.__version__"
    }
    assert get_provider_info()["versions"] == [airflow_provider_aac.__version__]


def test_read_the_docs_builds_what_make_docs_builds() -> None:
    config = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())
    assert config["sphinx"] == {"configuration": "docs/conf.py", "fail_on_warning": True}
    assert "graphviz" in config["build"]["apt_packages"]
    install = " ".join(config["build"]["jobs"]["install"])
    groups = re.findall(r"--group (\w+)", install)
    assert groups and set(groups) <= set(_pyproject()["dependency-groups"]), install
    makefile = (ROOT / "Makefile").read_text()
    assert "sphinx-build -W --keep-going -n -b html docs" in makefile


def test_every_diagram_a_page_draws_has_its_source() -> None:
    pages = {page: page.read_text() for page in (ROOT / "docs").glob("*.md")}
    drawn = [
        (page, name) for page, text in pages.items() for name in re.findall(r"```\{graphviz\} (\S+)", text)
    ]
    assert {name for _, name in drawn} >= {"diagrams/token-lifecycle.dot", "diagrams/modes.dot"}
    for page, name in drawn:
        assert (page.parent / name).is_file(), f"{page.name} draws {name}, which does not exist"


def test_the_testing_page_promises_exactly_what_the_simulator_offers() -> None:
    """docs/testing.md makes a stability promise by name: a new public name must be added there."""
    import inspect

    from airflow_provider_aac.testing.simulator import AACSimulator

    text = (ROOT / "docs" / "testing.md").read_text()
    public = {name for name in vars(AACSimulator) if not name.startswith("_")} | {"runs"}
    public |= set(inspect.signature(AACSimulator.__init__).parameters) - {"self"}
    assert not [name for name in sorted(public) if f"`{name}`" not in text]
    assert "`aac_simulator`" in text and "`aac_token_pair`" in text
    packaged = {path.stem for path in (ROOT / "airflow_provider_aac" / "testing").glob("*.py")}
    assert packaged == {"__init__", "pytest_plugin"}, (
        "the rest of testing/ is this repository's (tests/support)"
    )
