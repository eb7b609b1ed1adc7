#!/usr/bin/env bash
# Runs the README's test command while busy loops keep the cores busy, to find tests that
# depend on scheduling. Prints the summary line "N passed, N failed" and lists failed tests.
#   Usage: .ci/under-load.sh [BUSY_LOOPS (default: the number of cores)] [-- extra args for the
#   test binaries, e.g. --test-threads=1]
#   Environment: WEIR_LOAD_LOG (where the log goes; default a temporary file, printed)
set -uo pipefail
cd "$(dirname "$0")/.."
loops=$(nproc)
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  loops=$1
  shift
fi
if [ "${1:-}" = "--" ]; then shift; fi
log=${WEIR_LOAD_LOG:-$(mktemp /tmp/weir-under-load.XXXXXX)}
pids=()
for _ in $(seq 1 "$loops"); do
  (while :; do :; done) &
  pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
echo "== ${loops} busy loops; log: $log"
start=$(date +%s)
if [ $# -gt 0 ]; then
  cargo test --workspace --no-fail-fast -- "$@" >"$log" 2>&1
else
  cargo test --workspace --no-fail-fast >"$log" 2>&1
fi
rc=$?
end=$(date +%s)
passed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed' "$log" | awk '{s += $4} END {print s + 0}')
failed=$(grep -oE 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' "$log" | awk '{s += $6} END {print s + 0}')
grep -E '^test .* FAILED$|^    [a-z_:]+$' "$log" | sort -u || true
echo "exit ${rc}, $((end - start)) s"
echo "${passed} passed, ${failed} failed"
