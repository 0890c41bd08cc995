#!/usr/bin/env bash
# Runs every test, e2e included, and fails if any test was skipped: the e2e
# tests skip only when the machine cannot run them (not root), and with
# VIPD_E2E=1 they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export VIPD_E2E=1
log="$(mktemp)"
start=$(date +%s)
trap 'rm -f "$log"' EXIT
set +e
go test -count=1 -timeout 40m -v ./... 2>&1 | tee "$log" | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|ok |FAIL|panic)' | grep -v '=== RUN'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "--- what the tests said (t.Log, t.Error), last 400 lines:"
  grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: ' "$log" | grep -v ': \[lab\] ' | tail -n 400 || true
  echo "--- last 300 lines of the verbose log:"
  tail -n 300 "$log"
fi
skipped=$(grep -c -- '--- SKIP' "$log" || true)
passed=$(grep -c -- '--- PASS' "$log" || true)
failed=$(grep -c -- '--- FAIL' "$log" || true)
echo "wall time of the suite: $(( $(date +%s) - start )) s"
echo "tests: $passed passed, $failed failed, $skipped skipped"
if [ "$skipped" -ne 0 ]; then
  echo "error: $skipped tests were skipped; CI requires every test, e2e included, to run" >&2
  exit 1
fi
exit "$rc"
