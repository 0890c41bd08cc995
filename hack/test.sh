#!/usr/bin/env bash
# Runs every test, e2e included, and fails if any test was skipped: the e2e
# tests skip only when the machine cannot run them (not root), and with
# VIPD_E2E=1 they fail instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export VIPD_E2E=1
log="$(mktemp)"
start=$(date +%s)
trap 'rm -f "$log" "$log.t"' EXIT
set +e
go test -count=1 -timeout 40m -v ./... 2>&1 | tee "$log" | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|ok |FAIL|panic)' | grep -v '=== RUN'
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "--- last 100 lines of the verbose log:"
  tail -n 100 "$log"
  # Last, so that a reader who sees only the end sees why: each failed
  # test's output (from its RUN line to its FAIL line), then its own
  # messages (t.Log, t.Error) without the lab's.
  for t in $(grep -oE -- '--- FAIL: [^ ]+' "$log" | awk '{print $3}' | grep -v / | sort -u); do
    awk -v t="$t" '$0 == "=== RUN   " t {on=1} on {print} on && index($0, "--- FAIL: " t " ") {exit}' "$log" >"$log.t"
    echo "--- $t: last 150 lines of its output:"
    tail -n 150 "$log.t"
    echo "--- $t: what it said (t.Log, t.Error):"
    grep -E '^\s+[A-Za-z0-9_]+_test\.go:[0-9]+: ' "$log.t" | grep -v ': \[lab\] ' | tail -n 60 || true
  done
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
