#!/usr/bin/env bash
# The release check: the artifacts users get, built and installed as they install them.
# Builds the sdist and the wheel, runs `twine check --strict`, builds a wheel from the
# sdist alone (same files), reads the metadata (scripts/check_dist/artifacts.py), then
# installs the wheel, not editable, into a venv per Airflow release (the lowest and the
# highest supported) and there, from a directory outside the clone: `airflow providers
# get`, the CLI, every module imported, LICENSE in the dist-info, the refresh DAG and the
# examples parsed, the simulator started, a user's one-test file run with the fixtures.
#   usage: scripts/check_dist.sh [AIRFLOW_VERSION ...]   (default: 3.0.6 3.3.2)
# Each release's venv (Airflow and pytest) is cached outside the clone, keyed by what it holds
# and its constraints, as scripts/compat.sh does; the wheel is reinstalled on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.0.6 3.3.2)
python="${AAC_DIST_PYTHON:-$root/.venv/bin/python}"  # with the dist group: build, twine
cache="${AAC_COMPAT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/airflow-provider-aac}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

echo "check_dist: building the sdist and the wheel"
"$python" -m build --outdir "$work/dist" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
sdist=$(echo "$work"/dist/*.tar.gz)
wheel=$(echo "$work"/dist/*.whl)
"$python" -m twine check --strict "$sdist" "$wheel"
mkdir "$work/unpacked"
tar xzf "$sdist" -C "$work/unpacked"
"$python" -m build --wheel --outdir "$work/from-sdist" "$work"/unpacked/*/ >"$work/build-sdist.log" 2>&1 ||
  { cat "$work/build-sdist.log"; exit 1; }
if ! diff <(unzip -Z1 "$wheel" | sort) <(unzip -Z1 "$work"/from-sdist/*.whl | sort); then
  echo "check_dist: the wheel built from the sdist alone holds other files"; exit 1
fi
echo "check_dist: the sdist builds the same wheel by itself"
"$python" scripts/check_dist/artifacts.py "$sdist" "$wheel"
echo "check_dist: metadata, licence files and contents as published"

venv_recipe="pytest>=8"  # what each cached venv holds beside Airflow: a change here rebuilds them
status=0
for version in "${versions[@]}"; do
  constraints=".ci/constraints/airflow-${version%.*}.txt"
  pins=()
  [ -f "$constraints" ] && pins=(-c "$root/$constraints")
  key=$( (echo "$venv_recipe"; cat "${pins[@]:1}" </dev/null) | sha256sum | cut -c1-12)
  venv="$cache/dist-airflow-$version-$key"
  if [ ! -f "$venv/.built" ]; then
    echo "check_dist $version: building $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -qq --upgrade pip
    "$venv/bin/pip" install -qq "${pins[@]}" "apache-airflow==$version" $venv_recipe
    touch "$venv/.built"
  fi
  "$venv/bin/pip" install -qq "${pins[@]}" "apache-airflow==$version" "$wheel[testing]"
  "$venv/bin/pip" install -qq --force-reinstall --no-deps "$wheel"
  user="$work/user-$version"
  mkdir -p "$user/home"
  cp scripts/check_dist/test_user_dags.py "$user/"
  version_started=$(date +%s)
  # `&&` throughout: errexit does not hold inside an `if` condition.
  if (
    cd "$user" &&
      export AIRFLOW_HOME="$user/home" AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__CORE__DAGS_FOLDER="$user/dags" &&
      export PATH="$venv/bin:$PATH" &&
      airflow providers get airflow-provider-aac -o json | python "$root/scripts/check_dist/provider_listed.py" &&
      airflow-aac --help >/dev/null &&
      python "$root/scripts/check_dist/installed.py" "$user/dags" &&
      python -m pytest -p no:cacheprovider -q -W ignore::DeprecationWarning test_user_dags.py
  ) >"$work/$version.log" 2>&1; then
    echo "check_dist $version: passed in $(( $(date +%s) - version_started )) s"
    grep -E "^  |passed" "$work/$version.log"
  else
    echo "check_dist $version: FAILED"
    cat "$work/$version.log"
    status=1
  fi
done
echo "check_dist: $(( $(date +%s) - started )) s in all"
exit $status
