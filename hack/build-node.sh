#!/usr/bin/env bash
# Builds what a node of the kubelet lab runs (issue "A real kubelet and
# container runtime in the lab"), from the Go module proxy, cached like
# hack/build-k8s.sh under ${VIPD_CACHE:-~/.cache/vipd}/bin/<versions>/:
# kubelet, kube-proxy, kube-controller-manager and kube-scheduler (the same
# Kubernetes version as kube-apiserver), containerd v2 with its shim, and ctr
# (to import images).
# runc comes from Debian (apt-get install runc). Idempotent; the kubelet lab
# (internal/lab/kubelet.go) runs them.
#
#   hack/build-node.sh            # build what is missing, print the bin folder
set -euo pipefail
. "$(dirname "$0")/k8s-module.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
cache="${VIPD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vipd}"
bin="$cache/bin/node-k8s-${K8S_VERSION}-containerd-${CONTAINERD_VERSION}"
work="$cache/build/node-k8s-${K8S_VERSION}-containerd-${CONTAINERD_VERSION}"
mkdir -p "$bin" "$work"

want=()
for b in kubelet kube-proxy kube-controller-manager kube-scheduler containerd containerd-shim-runc-v2 ctr; do
  [ -x "$bin/$b" ] || want+=("$b")
done
if [ ${#want[@]} -eq 0 ]; then
  echo "$bin"
  exit 0
fi
echo "building ${want[*]} in $work; the first build takes several minutes" >&2

cd "$work"
cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
k8s_module vipd.local/nodebuild "${K8S_VERSION}" "github.com/containerd/containerd/v2@${CONTAINERD_VERSION}"
minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
i=0
for b in "${want[@]}"; do
  i=$((i + 1))
  t0=$(date +%s)
  tags=""
  cgo=0
  ver=""
  case "$b" in
    kubelet|kube-proxy|kube-controller-manager|kube-scheduler)
      pkg="k8s.io/kubernetes/cmd/$b"
      # Without these the components say v0.0.0-master, and the kubelet
      # registers its Node with that version.
      v=k8s.io/component-base/version
      ver="-X $v.gitVersion=${K8S_VERSION} -X $v.gitMajor=1 -X $v.gitMinor=${minor} -X $v.gitTreeState=clean" ;;
    containerd|containerd-shim-runc-v2|ctr)
      pkg="github.com/containerd/containerd/v2/cmd/$b"
      tags="no_btrfs,no_devmapper,no_zfs" ;;
  esac
  echo "building $b ($i of ${#want[@]}): go build $pkg" >&2
  CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags "-s -w $ver" -o "$bin/$b.tmp" "$pkg"
  mv "$bin/$b.tmp" "$bin/$b"
  echo "built $b ($i of ${#want[@]}) in $(( $(date +%s) - t0 )) s" >&2
done
echo "$bin"
