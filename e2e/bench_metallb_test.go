package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/lab"
)

// metalLB is MetalLB v0.15.2 in the lab, for the side-by-side Services
// benchmark: its controller on the control-plane host, a speaker in every
// node's namespace with memberlist (its fast dead-node detection) on, as its
// manifests install it. Differences from a real install: both run with the
// admin kubeconfig instead of their ServiceAccounts, the controller's
// webhooks are off (the lab has no Service network to reach them), and the
// speakers' Pods, which memberlist lists to find its peers, are objects
// created by the benchmark with the node's address as their podIP.
type metalLB struct {
	l          *lab.Lab
	bin        string
	kubeconfig string
	secret     string // folder with memberlist's key
}

const metalLBNamespace = "metallb-system"

// newMetalLB builds MetalLB if it is not cached (hack/build-metallb.sh),
// applies its CRDs and configures an IPAddressPool with the benchmark's
// range and an L2Advertisement for it.
func newMetalLB(ctx context.Context, b *testing.B, l *lab.Lab, pool string) *metalLB {
	out, err := exec.Command(filepath.Join(lab.RepoRoot(), "hack", "build-metallb.sh")).Output()
	if err != nil {
		b.Fatalf("hack/build-metallb.sh: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		b.Fatalf("hack/build-metallb.sh printed %q, want the bin and CRD folders", out)
	}
	m := &metalLB{l: l, bin: f[0], secret: filepath.Join(l.Dir, "metallb-memberlist")}
	crds, _ := filepath.Glob(filepath.Join(f[1], "*.yaml"))
	if len(crds) == 0 {
		b.Fatalf("no CRDs in %s", f[1])
	}
	for _, path := range crds {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Apply(ctx, data); err != nil {
			b.Fatalf("%s: %v", filepath.Base(path), err)
		}
	}
	c := l.Admin
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: metalLBNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	// The ServiceAccount admission wants it for the speakers' Pods.
	if _, err := c.CoreV1().ServiceAccounts(metalLBNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	cfg := fmt.Sprintf(`apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bench, namespace: %[1]s}
spec:
  addresses: [%[2]q]
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: bench, namespace: %[1]s}
spec:
  ipAddressPools: [bench]
`, metalLBNamespace, pool)
	deadline := time.Now().Add(30 * time.Second)
	for err = l.Apply(ctx, []byte(cfg)); err != nil; err = l.Apply(ctx, []byte(cfg)) {
		if time.Now().After(deadline) { // the CRDs are served a moment after they are created
			b.Fatalf("MetalLB's pool: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, n := range l.Nodes {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: metalLBNamespace, Name: "speaker-" + n.Name,
				Labels: map[string]string{"app": "metallb", "component": "speaker"}},
			Spec: corev1.PodSpec{NodeName: n.Name, HostNetwork: true,
				Containers: []corev1.Container{{Name: "speaker", Image: "quay.io/metallb/speaker:v0.15.2"}}},
		}
		pod, err := c.CoreV1().Pods(metalLBNamespace).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: n.IP.String(), PodIPs: []corev1.PodIP{{IP: n.IP.String()}}}
		if _, err := c.CoreV1().Pods(metalLBNamespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := os.MkdirAll(m.secret, 0o700); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.secret, "secretkey"), []byte("vipd-bench-memberlist-key"), 0o600); err != nil {
		b.Fatal(err)
	}
	if m.kubeconfig, err = l.Kubeconfig(netip.AddrPortFrom(lab.CPAddr, 6443)); err != nil {
		b.Fatal(err)
	}
	return m
}

func (m *metalLB) env() []string {
	return []string{"KUBECONFIG=" + m.kubeconfig, "METALLB_NAMESPACE=" + metalLBNamespace}
}

// start runs the controller and a speaker on every node; the controller is
// under the key "controller".
func (m *metalLB) start() (map[string]*lab.Proc, error) {
	procs := map[string]*lab.Proc{}
	p, err := m.l.Start(m.l.CP, "metallb-controller", m.env(), filepath.Join(m.bin, "controller"),
		"--webhook-mode=disabled", "--disable-cert-rotation", "--log-level=warn")
	if err != nil {
		return procs, err
	}
	procs["controller"] = p
	for _, n := range m.l.Nodes {
		if procs[n.Name], err = m.speaker(n); err != nil {
			return procs, err
		}
	}
	return procs, nil
}

func (m *metalLB) speaker(n *lab.Host) (*lab.Proc, error) {
	env := append(m.env(), "METALLB_NODE_NAME="+n.Name, "METALLB_POD_NAME=speaker-"+n.Name,
		"METALLB_HOST="+n.IP.String(), "METALLB_ML_BIND_ADDR="+n.IP.String(),
		"METALLB_ML_LABELS=app=metallb,component=speaker", "METALLB_ML_SECRET_KEY_PATH="+m.secret)
	return m.l.Start(n, "metallb-speaker-"+n.Name, env, filepath.Join(m.bin, "speaker"), "--log-level=warn")
}

// nodeProcs is procs without MetalLB's controller.
func nodeProcs(procs map[string]*lab.Proc) map[string]*lab.Proc {
	out := map[string]*lab.Proc{}
	for k, p := range procs {
		if k != "controller" {
			out[k] = p
		}
	}
	return out
}

// statusIPs returns the load-balancer address of each Service in ns that
// has exactly one.
func statusIPs(ctx context.Context, l *lab.Lab, ns string) ([]netip.Addr, error) {
	list, err := l.Admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, s := range list.Items {
		if in := s.Status.LoadBalancer.Ingress; len(in) == 1 {
			if ip, err := netip.ParseAddr(in[0].IP); err == nil {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

// wireUp reports whether all n Services in ns have their status set and
// exactly one node answers ARP for each address.
func wireUp(ctx context.Context, l *lab.Lab, w *lab.Wire, ns string, n int) (bool, string) {
	ips, err := statusIPs(ctx, l, ns)
	if err != nil {
		return false, err.Error()
	}
	if len(ips) < n {
		return false, fmt.Sprintf("%d of %d have an address", len(ips), n)
	}
	ans, err := w.Ask(ips, 150*time.Millisecond)
	if err != nil {
		return false, err.Error()
	}
	one := 0
	for _, nodes := range ans {
		if len(nodes) == 1 {
			one++
		}
	}
	return one == n, fmt.Sprintf("%d of %d answered by one node", one, n)
}

// wireOwners asks the wire who answers for addrs; it fails the benchmark
// when two nodes answer for one (it is used only where that must not happen).
func wireOwners(b *testing.B, w *lab.Wire, addrs []netip.Addr) map[netip.Addr]string {
	ans, err := w.Ask(addrs, 150*time.Millisecond)
	if err != nil {
		b.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for ip, nodes := range ans {
		if len(nodes) == 1 {
			out[ip] = nodes[0]
		}
	}
	return out
}

// wireFaultResult is what the wire showed around one fault of one node.
type wireFaultResult struct {
	vips      int           // the node's VIPs before the fault
	moved     time.Duration // fault → each of them answered by another node and not by it (the longest; -1: not all)
	twoOwners time.Duration // total time during which some of them were answered by two nodes
	twoVIPs   int           // how many of them were ever answered by two nodes
}

// wireFault injects a fault into victim and asks the wire, in rounds of
// 100 ms, who answers for the victim's VIPs, for at least watch.
func wireFault(b *testing.B, w *lab.Wire, ips []netip.Addr, victim string, inject func() error, watch time.Duration) wireFaultResult {
	var mine []netip.Addr
	for ip, node := range wireOwners(b, w, ips) {
		if node == victim {
			mine = append(mine, ip)
		}
	}
	r := wireFaultResult{vips: len(mine), moved: -1}
	if len(mine) == 0 {
		b.Fatalf("%s answers for none of %d VIPs", victim, len(ips))
	}
	start := time.Now()
	injected := make(chan error, 1)
	go func() { injected <- inject() }()
	moved := map[netip.Addr]time.Duration{}
	two := map[netip.Addr]bool{}
	for time.Since(start) < watch || len(moved) < len(mine) {
		if time.Since(start) > watch+time.Minute {
			break
		}
		t0 := time.Now()
		ans, err := w.Ask(mine, 100*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		round, both := time.Since(t0), false
		for _, ip := range mine {
			nodes := ans[ip]
			if len(nodes) > 1 {
				both, two[ip] = true, true
			}
			if _, ok := moved[ip]; !ok && len(nodes) > 0 && !slices.Contains(nodes, victim) {
				moved[ip] = time.Since(start)
			}
		}
		if both {
			r.twoOwners += round
		}
	}
	if err := <-injected; err != nil {
		b.Fatalf("fault on %s: %v", victim, err)
	}
	if len(moved) == len(mine) {
		r.moved = 0
		for _, d := range moved {
			r.moved = max(r.moved, d)
		}
	}
	r.twoVIPs = len(two)
	return r
}

// sigstop stops p for 10 s, then lets it go on.
func sigstop(p *lab.Proc) func() error {
	return func() error {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(10 * time.Second)
		return p.Signal(syscall.SIGCONT)
	}
}

// powerLoss kills p and takes its node's link down (restore: link up).
func powerLoss(p *lab.Proc) func() error {
	return func() error {
		if err := p.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		return p.Host.IPCmd("link", "set", "eth0", "down")
	}
}

func (r wireFaultResult) String() string {
	return fmt.Sprintf("%d VIPs, all answered by other nodes after %s, two nodes answered for %s (%d VIPs)", r.vips, seconds(r.moved)+" s", r.twoOwners.Round(time.Millisecond), r.twoVIPs)
}
