# vipd — see README.md. The e2e tests, benchmarks and demo need root.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

.PHONY: all build image k8s metallb test bench-kubelet unit lint bench-failover bench-steady bench-services demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/vipd ./cmd/vipd

# The container image as an OCI archive, without a Docker engine (see Dockerfile for the same with one).
image: build
	$(GO) run ./hack/image -binary bin/vipd -tag ghcr.io/vipd/vipd:$(VERSION) -out bin/vipd-image.tar

# kube-apiserver, etcd and kubectl from the Go module proxy, cached in ~/.cache/vipd;
# and what a node of the kubelet lab runs (kubelet, kube-proxy, the controllers, containerd).
k8s:
	hack/build-k8s.sh
	hack/build-node.sh

# MetalLB's controller and speaker from the Go module proxy, cached (for bench-services).
metallb:
	hack/build-metallb.sh

# Everything, on a fresh Debian machine as root: the Debian packages the tests need, the
# Kubernetes builds (cached), lint, unit tests and the e2e tests in network namespaces.
test:
	@hack/step.sh 1 5 "Debian packages (runc, nftables, iproute2)" hack/deps.sh
	@hack/step.sh 2 5 "kube-apiserver, etcd, kubectl (cached in ~/.cache/vipd)" hack/build-k8s.sh
	@hack/step.sh 3 5 "kubelet, kube-proxy, controllers, containerd (cached)" hack/build-node.sh
	@hack/step.sh 4 5 "lint (gofmt, go vet, staticcheck, gocyclo)" $(MAKE) --no-print-directory lint
	@hack/step.sh 5 5 "unit and e2e tests" hack/test.sh

# Unit tests only (no root needed).
unit:
	$(GO) test -count=1 ./internal/...

STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOCYCLO ?= github.com/fzipp/gocyclo/cmd/gocyclo@v0.6.0

# gocyclo: no function of the product's code above 20 (tests, the lab, e2e and hack aside).
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(GOCYCLO) -over 20 -ignore '_test.go|internal/lab/|e2e/|hack/' .

# Failover gaps and two-owner time per fault at the seed's timings and the fast profile, median of 5 runs,
# and the time to report an address conflict (about 15 minutes); a timeline per fault in docs/img.
bench-failover: k8s
	VIPD_BENCH_IMG=$(CURDIR)/docs/img $(GO) test ./e2e -run '^$$' -bench 'BenchmarkFailover|BenchmarkControlPlaneStop|BenchmarkConflict' -benchtime 1x -timeout 60m

# 100 and 1000 LoadBalancer Services, vipd's two modes and MetalLB side by side: convergence, API
# requests, memory and CPU, SIGSTOP and power loss seen on the wire (about 12 minutes); charts in docs/img.
bench-services: k8s metallb
	VIPD_BENCH_IMG=$(CURDIR)/docs/img $(GO) test ./e2e -run '^$$' -bench BenchmarkServices -benchtime 1x -timeout 30m

# vipd run by real kubelets and containerd: apply → Ready, apply → VIP, a rolling update (about 2 minutes).
bench-kubelet: k8s
	$(GO) test ./e2e -run '^$$' -bench BenchmarkKubelet -benchtime 1x -timeout 20m

# Lease requests per second, and each daemon's memory and CPU, with nothing failing (about 1 minute).
bench-steady: k8s
	$(GO) test ./e2e -run '^$$' -bench BenchmarkSteadyState -benchtime 1x -timeout 10m

# Three nodes, the seed's manifests, a failover you can watch (root). It builds only what
# it runs: kube-apiserver, etcd and kubectl (no node components).
demo:
	@hack/step.sh 1 1 "kube-apiserver, etcd, kubectl (cached in ~/.cache/vipd)" hack/build-k8s.sh
	$(GO) run ./hack/demo

clean:
	rm -rf bin
