#!/usr/bin/env bash
# Installs the Debian packages the tests need (make test runs it first; so
# does nothing else: .ci/run is `make test` and adds nothing). Each line of
# PACKAGES is "command package": the package is installed when the command
# is missing. Without root, or without apt-get, it stops at once with the
# exact command to run.
set -euo pipefail

PACKAGES="
ip iproute2
unshare util-linux
nsenter util-linux
runc runc
nft nftables"

need=()
while read -r cmd pkg; do
  [ -n "$cmd" ] || continue
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done <<<"$PACKAGES"
if [ ${#need[@]} -eq 0 ]; then
  echo "deps: every Debian package the tests need is installed" >&2
  exit 0
fi
# (one package may serve two commands)
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: the tests need root (network namespaces) and these Debian packages: ${need[*]}" >&2
  echo "deps: run: sudo make test   (or first: sudo apt-get install -y ${need[*]})" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "deps: missing ${need[*]} and no apt-get here: install the packages that provide them (runc, nft, ip, unshare, nsenter), then run make test again" >&2
  exit 1
fi
echo "deps: installing ${need[*]} (apt-get)" >&2
start=$(date +%s)
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
echo "deps: installed ${need[*]} in $(( $(date +%s) - start )) s" >&2
