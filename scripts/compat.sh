#!/usr/bin/env bash
# The compat job: part of the suite on the newest patch of each older Airflow 3 release.
# Unit tests, the hook end to end on a real metadata DB, the connection form, and one DAG run
# under the real task supervisor with a deferral. The full suite runs on the pinned 3.3.
#   usage: scripts/compat.sh [AIRFLOW_VERSION ...]   (default: 3.0.6 3.1.8 3.2.2)
# Each release's venv is cached outside the clone, keyed by this script and its constraints;
# the provider and its own dependencies are (re)installed into it on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.0.6 3.1.8 3.2.2)
cache="${AAC_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-provider-aac}"
test_deps=("psycopg2-binary>=2.9" "redis>=5.0" "asyncpg>=0.29" "pytest>=8" "pytest-timeout>=2.3" "wtforms>=3.1")
tests=(
  tests/test_compat.py
  tests/test_get_provider_info.py
  tests/core
  tests/hooks
  "tests/system/test_supervised_tasks.py::test_tasks_refresh_in_lock_mode_with_the_orm_blocked"
)
status=0
for version in "${versions[@]}"; do
  constraints=".ci/constraints/airflow-${version%.*}.txt"
  key=$(cat "$0" "$constraints" | sha256sum | cut -c1-12)
  venv="$cache/airflow-$version-$key"
  if [ ! -f "$venv/.built" ]; then
    echo "compat $version: building $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -qq --upgrade pip
    "$venv/bin/pip" install -qq -c "$constraints" "apache-airflow==$version" "${test_deps[@]}"
    touch "$venv/.built"
  fi
  "$venv/bin/pip" install -qq -c "$constraints" -e ".[postgres,redis]" "apache-airflow==$version"
  home=$(mktemp -d)
  started=$(date +%s)
  if AIRFLOW_HOME="$home" "$venv/bin/pytest" -p no:cacheprovider -q "${tests[@]}"; then
    echo "compat $version: passed in $(( $(date +%s) - started )) s"
  else
    echo "compat $version: FAILED"
    status=1
  fi
  rm -rf "$home"
done
exit $status
