"""What importing the provider costs a DAG file, a worker or the scheduler, on top of Airflow.

Every DAG parse, task process and triggerer imports some of these modules; Airflow itself
imports ``get_provider_info`` in every process that loads the providers manager. The
question: how many milliseconds does each module add once ``airflow.sdk`` is imported
(which any DAG file pays anyway), and which dependencies make up that cost?

Each module is imported in fresh interpreters (N runs, median): ``import airflow.sdk``,
then the clock starts, then ``import <module>``. One more run under ``-X importtime``
names the three heaviest dependencies (outside this package) the module pulls in, by
cumulative time of the first import of each top-level package (``airflow.*`` by its second part).

    .venv/bin/python bench/import_cost.py            # every module, N=7
    .venv/bin/python bench/import_cost.py --runs 3 airflow_provider_aac.hooks.aac

Exit status 1 when a module's median is over the goal (``--goal``, 50 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "airflow_provider_aac"
MODULES = (
    PACKAGE,
    f"{PACKAGE}.get_provider_info",
    f"{PACKAGE}.hooks.aac",
    f"{PACKAGE}.operators.aac",
    f"{PACKAGE}.operators.run_base",
    f"{PACKAGE}.operators.token_health",
    f"{PACKAGE}.sensors.aac",
    f"{PACKAGE}.triggers.aac",
    f"{PACKAGE}.links.aac",
    f"{PACKAGE}.dags.refresh",
)
MARK = "-- import_cost: airflow.sdk imported --"
PROBE = """
import os, sys, time
import airflow.sdk
os.write(2, b"\\n{mark}\\n")
started = time.perf_counter()
import {module}
print(time.perf_counter() - started)
"""
RUN_TIMEOUT = 120.0


def _run(module: str, env: dict[str, str], *, importtime: bool) -> subprocess.CompletedProcess[str]:
    flags = ["-X", "importtime"] if importtime else []
    code = PROBE.format(mark=MARK, module=module)
    result = subprocess.run(
        [sys.executable, *flags, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"importing {module} failed:\n{result.stderr[-2000:]}")
    return result


def _group(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0] == "airflow" and len(parts) > 1 else parts[0]


def heavy_dependencies(stderr: str, top: int = 3) -> list[tuple[str, float]]:
    """The heaviest outside packages the module pulled in, from ``-X importtime`` output (ms).

    A package counts at its entry points: imports outside this package made directly by a
    module of this package (or at the top level), so that nested imports are not counted twice.
    """
    lines = stderr.split(MARK, 1)[-1].splitlines()
    rows: list[tuple[int, str, float]] = []
    for line in lines:
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name_field = line.split("|", 2)
        if not cumulative.strip().isdigit():
            continue  # the header line
        name = name_field[1:]
        depth = (len(name) - len(name.lstrip(" "))) // 2
        rows.append((depth, name.strip(), int(cumulative) / 1000))
    totals: dict[str, float] = defaultdict(float)
    parents: list[tuple[int, str]] = []
    for depth, name, ms in reversed(rows):  # reversed importtime output is pre-order
        while parents and parents[-1][0] >= depth:
            parents.pop()
        parent = parents[-1][1] if parents else None
        if not name.startswith(PACKAGE) and (parent is None or parent.startswith(PACKAGE)):
            totals[_group(name)] += ms
        parents.append((depth, name))
    heavy = [(name, ms) for name, ms in totals.items() if ms >= 0.5]  # below that is noise
    return sorted(heavy, key=lambda item: -item[1])[:top]


def measure(module: str, runs: int, env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    samples = [float(_run(module, env, importtime=False).stdout.split()[-1]) * 1000 for _ in range(runs)]
    return statistics.median(samples), heavy_dependencies(_run(module, env, importtime=True).stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", default=list(MODULES), help="modules to import (default: all)")
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per module (median)")
    parser.add_argument("--goal", type=float, default=50.0, help="most milliseconds a module may add")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aac-import-cost-") as home:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # cached bytecode, as in a deployment
        _run("airflow.sdk", env, importtime=False)  # warm the bytecode caches and the Airflow home
        width = max(len(module) for module in args.modules)
        print(f"\nImport cost on top of `import airflow.sdk` (median of {args.runs} fresh interpreters)")
        print(
            f"{'module':<{width}}  {'ms':>7}  heaviest dependencies pulled in (-X importtime, cumulative ms)"
        )
        over = []
        for module in args.modules:
            median, heavy = measure(module, args.runs, env)
            deps = ", ".join(f"{name} {ms:.0f}" for name, ms in heavy) or "-"
            print(f"{module:<{width}}  {median:>7.1f}  {deps}")
            if median > args.goal:
                over.append(module)
    print(
        f"goal: <= {args.goal:.0f} ms per module; {len(over) or 'none'} over it"
        + (f": {', '.join(over)}" if over else "")
    )
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
