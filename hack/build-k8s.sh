#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the lab runs, from the Go module
# proxy, and caches them under ${VIPD_CACHE:-~/.cache/vipd}/bin/<versions>/ (outside the
# checkout, so a fresh clone on the same machine reuses them). Idempotent: a cached
# binary is never rebuilt. kubectl is built too (for the demo and for humans).
#
#   hack/build-k8s.sh            # build what is missing, print the bin folder
#
# kube-apiserver comes from module k8s.io/kubernetes, which cannot be required
# directly: its go.mod points every k8s.io/<staging> module at a local folder.
# A throwaway module replaces each of them with the published v0.X.Y.
set -euo pipefail
. "$(dirname "$0")/k8s-module.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
cache="${VIPD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipd}"
bin="$cache/bin/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
work="$cache/build/k8s-${K8S_VERSION}"
mkdir -p "$bin" "$work"

want=()
for b in kube-apiserver etcd kubectl; do
  [ -x "$bin/$b" ] || want+=("$b")
done
if [ ${#want[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi
echo "building ${want[*]} (k8s ${K8S_VERSION}, etcd ${ETCD_VERSION}) in $work; first build takes several minutes" >&2

cd "$work"
mkdir -p cmd/etcd
cat > cmd/etcd/main.go <<'GO'
// Command etcd is the upstream etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
k8s_module vipd.local/k8sbuild "${K8S_VERSION}" "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
export CGO_ENABLED=0
i=0
for b in "${want[@]}"; do
  i=$((i + 1))
  t0=$(date +%s)
  case "$b" in
    kube-apiserver) pkg=k8s.io/kubernetes/cmd/kube-apiserver ;;
    kubectl) pkg=k8s.io/kubernetes/cmd/kubectl ;;
    etcd) pkg=./cmd/etcd ;;
  esac
  echo "building $b ($i of ${#want[@]}): go build $pkg" >&2
  go build -trimpath -ldflags "-s -w" -o "$bin/$b.tmp" "$pkg"
  mv "$bin/$b.tmp" "$bin/$b"
  echo "built $b ($i of ${#want[@]}) in $(( $(date +%s) - t0 )) s" >&2
done
echo "$bin"
