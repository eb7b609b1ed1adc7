#!/usr/bin/env bash
# Starts (once) a throwaway PostgreSQL server on loopback for the tests that need one, and prints
# its URL (a database `weir`, user `postgres`, trust authentication — a test server only).
#   Usage: URL=$(.ci/postgres.sh)   Environment: WEIR_PG_DIR (/tmp/weir-pg), WEIR_PG_PORT (54329)
# Installs Debian's postgresql package when it is missing (needs root). Running as root, the
# server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail
dir=${WEIR_PG_DIR:-/tmp/weir-pg}
port=${WEIR_PG_PORT:-54329}
url="postgres://postgres@127.0.0.1:${port}/weir"

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "PostgreSQL is not installed (apt-get install postgresql, as root)" >&2
    exit 1
  fi
  echo "installing postgresql" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# One at a time (tests may call this concurrently).
exec 9>"/tmp/weir-pg-$port.lock"
flock 9
if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then
  if ! "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d weir -c 'select 1' >/dev/null 2>&1; then
    "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres weir
  fi
  echo "$url"
  exit 0
fi
rm -rf "$dir"
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; fi
as_owner "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
# 9>&-: the server must not inherit the lock (it would hold it for its lifetime and every
# later call would wait on flock forever).
as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >&2 9>&-
as_owner "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres weir
echo "$url"
