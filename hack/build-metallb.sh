#!/usr/bin/env bash
# Builds MetalLB's controller and speaker from the Go module proxy, for the
# side-by-side Services benchmark (make bench-services), cached like
# hack/build-k8s.sh under ${VIPD_CACHE:-~/.cache/vipd}/bin/metallb-<version>/.
# The CRDs come from the same module (printed as the second line).
# Idempotent; the first build takes about 4 minutes.
#
#   hack/build-metallb.sh      # build what is missing, print the bin and CRD folders
set -euo pipefail

METALLB_VERSION="${METALLB_VERSION:-v0.15.2}"
cache="${VIPD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipd}"
bin="$cache/bin/metallb-${METALLB_VERSION}"
work="$cache/build/metallb-${METALLB_VERSION}"
mkdir -p "$bin" "$work"
if [ ! -x "$bin/controller" ] || [ ! -x "$bin/speaker" ]; then
  echo "building MetalLB ${METALLB_VERSION} in $work; the first build takes several minutes" >&2
  cd "$work"
  [ -f go.mod ] || go mod init vipd.local/metallbbuild >/dev/null 2>&1
  cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
GO
  go get "go.universe.tf/metallb@${METALLB_VERSION}" >&2
  go mod tidy >&2
  for b in controller speaker; do
    CGO_ENABLED=0 go build -trimpath -o "$bin/$b.tmp" "go.universe.tf/metallb/$b"
    mv "$bin/$b.tmp" "$bin/$b"
  done
fi
echo "$bin"
echo "$(go env GOMODCACHE)/go.universe.tf/metallb@${METALLB_VERSION}/config/crd/bases"
