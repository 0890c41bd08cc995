#!/usr/bin/env bash
# step.sh K N WHAT CMD...: runs one step of make test and says which, and
# how long it took.
set -uo pipefail
k="$1" n="$2" what="$3"
shift 3
echo "==> step $k of $n: $what" >&2
start=$(date +%s)
"$@"
rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" -ne 0 ]; then
  echo "==> step $k of $n failed after ${took} s: $what" >&2
  exit "$rc"
fi
echo "==> step $k of $n done in ${took} s: $what" >&2
