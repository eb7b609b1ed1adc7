#!/usr/bin/env bash
# Makes (once) a Python virtual environment with pyiceberg 0.12.0 (SQLite and PostgreSQL
# catalogs) for the interoperability tests and prints the path of its python.
#   Usage: PY=$(.ci/pyiceberg-venv.sh [DIR])   Environment: PYICEBERG_VENV (the directory,
#   default ~/.cache/weir-pyiceberg-venv)
# Safe to call from many tests at once: callers take turns on a lock, the venv is built in a
# directory of its own and moved into place only when complete (a marker file says so), and a
# half-made or broken venv left by a killed run is removed and made again, never used.
set -euo pipefail
dir=${1:-${PYICEBERG_VENV:-$HOME/.cache/weir-pyiceberg-venv}}
spec='pyiceberg[sql-sqlite,sql-postgres,pyarrow]==0.12.0'
marker="$dir/.weir-complete"

ready() {
  [ -f "$marker" ] && [ "$(cat "$marker")" = "$spec" ] &&
    "$dir/bin/python" -c 'import pyiceberg, pyarrow, psycopg2, sqlalchemy' >/dev/null 2>&1
}

# Fast path: a complete venv needs no lock.
if ready; then
  echo "$dir/bin/python"
  exit 0
fi

mkdir -p "$(dirname "$dir")"
exec 9>"$dir.lock"
flock 9
# Another caller may have made it while this one waited.
if ! ready; then
  if [ -e "$dir" ]; then
    echo "removing the incomplete pyiceberg venv $dir" >&2
    rm -rf "$dir"
  fi
  work="$dir.partial.$$"
  rm -rf "$work"
  trap 'rm -rf "$work"' EXIT
  echo "making the pyiceberg venv $dir" >&2
  python3 -m venv "$work" >&2
  "$work/bin/python" -m pip install -q --disable-pip-version-check "$spec" >&2
  echo "$spec" >"$work/.weir-complete"
  # Only `bin/python` is used, and it finds its packages relative to itself, so the move keeps
  # the venv whole (pip's own scripts would name the old path).
  mv "$work" "$dir"
  trap - EXIT
  ready || { echo "the pyiceberg venv $dir does not import pyiceberg" >&2; exit 1; }
fi
echo "$dir/bin/python"
