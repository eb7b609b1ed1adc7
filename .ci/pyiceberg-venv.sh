#!/usr/bin/env bash
# Creates (once) a Python virtual environment with pyiceberg 0.12.0 (SQLite and PostgreSQL
# catalogs) for interoperability tests and prints the path of its python.   Usage: PY=$(.ci/pyiceberg-venv.sh [DIR]) (from the shared recipe)
set -euo pipefail
dir=${1:-${PYICEBERG_VENV:-$HOME/.cache/weir-pyiceberg-venv}}
if [ ! -x "$dir/bin/python" ] || ! "$dir/bin/python" -c 'import pyiceberg, pyarrow, psycopg2' >/dev/null 2>&1; then
  python3 -m venv "$dir" >&2
  "$dir/bin/python" -m pip install -q --upgrade pip >&2
  "$dir/bin/python" -m pip install -q 'pyiceberg[sql-sqlite,sql-postgres,pyarrow]==0.12.0' >&2
fi
echo "$dir/bin/python"
