package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
)

// kubeletLab is a lab whose nodes run containerd, a kubelet and kube-proxy.
func kubeletLab(t testing.TB) *lab.Lab {
	t.Helper()
	// vipdManifests runs `vipd manifest`: built now (once, cached), not
	// inside the time from apply to Ready (it was 4-5 s of the 6.9 s once
	// reported for vipd's own manifests).
	if _, err := lab.VipdBinary(); err != nil {
		t.Fatal(err)
	}
	return newLabWith(t, lab.Options{Nodes: 3, Kubelet: true})
}

// withImage puts the lab's vipd image in a manifest in place of image.
func withImage(m []byte, image string) []byte {
	return bytes.ReplaceAll(m, []byte("image: "+image), []byte("image: "+lab.VipdImage))
}

// nodeErrors is the last error lines of each node's kubelet and
// containerd, for a failure message.
func nodeErrors(l *lab.Lab) string {
	var b strings.Builder
	for _, h := range l.Nodes {
		for _, p := range []*lab.Proc{l.Kubelet(h), l.Containerd(h)} {
			var errs []string
			for _, line := range strings.Split(p.Output(), "\n") {
				if strings.HasPrefix(line, "E") || strings.Contains(line, "level=error") {
					errs = append(errs, line)
				}
			}
			if len(errs) > 8 {
				errs = errs[len(errs)-8:]
			}
			fmt.Fprintf(&b, "--- %s:\n%s\n", p.Name, strings.Join(errs, "\n"))
		}
	}
	return b.String()
}

// podsReady waits until n Pods matching selector in ns are Running and
// Ready, one on each of n nodes, and returns them by node.
func podsReady(t testing.TB, l *lab.Lab, ns, selector string, n int, timeout time.Duration) map[string]corev1.Pod {
	t.Helper()
	var byNode map[string]corev1.Pod
	eventually(t, timeout, fmt.Sprintf("%d Pods %s Running and Ready", n, selector), func() error {
		list, err := l.Admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		byNode = map[string]corev1.Pod{}
		var not []string
		for _, p := range list.Items {
			ready := p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
					ready = false
				}
			}
			if ready {
				byNode[p.Spec.NodeName] = p
			} else {
				not = append(not, fmt.Sprintf("%s on %s: %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, containerStates(p)))
			}
		}
		if len(byNode) != n {
			return fmt.Errorf("%d ready (%v); not: %v\n%s", len(byNode), keys(byNode), not, nodeErrors(l))
		}
		return nil
	})
	return byNode
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func containerStates(p corev1.Pod) string {
	var s []string
	for _, c := range p.Status.ContainerStatuses {
		switch {
		case c.State.Waiting != nil:
			s = append(s, c.Name+" waiting: "+c.State.Waiting.Reason+" "+c.State.Waiting.Message)
		case c.State.Terminated != nil:
			s = append(s, fmt.Sprintf("%s terminated: %s %d", c.Name, c.State.Terminated.Reason, c.State.Terminated.ExitCode))
		case c.State.Running != nil:
			s = append(s, fmt.Sprintf("%s running, ready %v, restarts %d", c.Name, c.Ready, c.RestartCount))
		}
	}
	return strings.Join(s, "; ")
}

// vipdProcess finds the vipd process of a container on node h (its network
// namespace is the node's) and returns its pid.
func vipdProcess(t *testing.T, l *lab.Lab, h *lab.Host) int {
	t.Helper()
	want, err := os.Stat("/run/netns/" + h.NS)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(cmd, []byte("/vipd\x00")) {
			continue
		}
		st, err := os.Stat(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err == nil && os.SameFile(st, want) {
			return pid
		}
	}
	t.Fatalf("no /vipd process in %s's network namespace\n%s", h.Name, l.ContainerLogs(h, "", 20))
	return 0
}

// effectiveCaps returns the CapEff line of a process.
func effectiveCaps(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			c, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no CapEff for %d", pid)
	return 0
}

// TestKubeletSeedManifests: the seed's kube-vip-rbac.yaml and
// kube-vip.yaml.tpl, with only the image replaced, applied as a user
// applies them: a kubelet on each of the 3 nodes runs a vipd Pod, Running
// and Ready within 60 s, with only NET_ADMIN and NET_RAW and the token the
// kubelet projects; one node holds the Lease and the VIP, and the client
// reaches a server through it.
func TestKubeletSeedManifests(t *testing.T) {
	l := kubeletLab(t)
	ctx := context.Background()
	if err := l.Apply(ctx, lab.SeedRBAC); err != nil {
		t.Fatal(err)
	}
	ds := withImage(lab.SeedDaemonSet(l.VIP.String(), "eth0"), "ghcr.io/kube-vip/kube-vip:v1.0.2")
	start := time.Now()
	if err := l.Apply(ctx, ds); err != nil {
		t.Fatal(err)
	}
	pods := podsReady(t, l, "kube-system", "app.kubernetes.io/name=kube-vip-ds", 3, 60*time.Second)
	t.Logf("3 vipd Pods Ready %s after apply", time.Since(start).Round(100*time.Millisecond))
	checkPodsAsWritten(t, l, pods)
	checkOneHolder(t, l, start)
}

// checkPodsAsWritten: each Pod runs with the securityContext as written
// (only NET_ADMIN and NET_RAW, ALL dropped: the process's effective
// capabilities are exactly those two) and with the ServiceAccount token
// the kubelet projects.
func checkPodsAsWritten(t *testing.T, l *lab.Lab, pods map[string]corev1.Pod) {
	t.Helper()
	const netAdmin, netRaw = 12, 13
	for _, h := range l.Nodes {
		p := pods[h.Name]
		if c := effectiveCaps(t, vipdProcess(t, l, h)); c != 1<<netAdmin|1<<netRaw {
			t.Errorf("%s: vipd's effective capabilities are %#x, want NET_ADMIN and NET_RAW only (%#x)", h.Name, c, 1<<netAdmin|1<<netRaw)
		}
		projected := false
		for _, v := range p.Spec.Volumes {
			if v.Projected != nil && strings.HasPrefix(v.Name, "kube-api-access-") {
				projected = true
			}
		}
		if !projected {
			t.Errorf("%s: Pod %s has no projected ServiceAccount token volume", h.Name, p.Name)
		}
	}
}

// checkOneHolder: one Lease holder, the VIP on its interface only, and the
// client reaches a server through it.
func checkOneHolder(t *testing.T, l *lab.Lab, start time.Time) {
	t.Helper()
	ctx := context.Background()
	var holder string
	eventually(t, 60*time.Second, "the VIP answering", func() error {
		var err error
		if holder, err = l.Holder(ctx, leaseNS, leaseName); err != nil || holder == "" {
			return fmt.Errorf("no holder (%v)\n%s", err, l.ContainerLogs(l.Nodes[0], "", 10))
		}
		s, err := l.Owners(l.VIP)
		if err != nil {
			return err
		}
		if len(s.Owners) != 1 || s.Owners[0] != holder {
			return fmt.Errorf("VIP on %v, Lease held by %s", s.Owners, holder)
		}
		_, err = l.Reach(ctx, l.VIP, port, time.Second)
		return err
	})
	t.Logf("VIP answering on %s %s after apply", holder, time.Since(start).Round(100*time.Millisecond))
}

// rollDaemonSet changes one environment value of the DaemonSet's
// container and waits until the rolling update has replaced every Pod.
func rollDaemonSet(t testing.TB, l *lab.Lab, name string) {
	t.Helper()
	ctx := context.Background()
	ds, err := l.Admin.AppsV1().DaemonSets("kube-system").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := &ds.Spec.Template.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: "VIPD_ROLLOUT", Value: "1"})
	if _, err := l.Admin.AppsV1().DaemonSets("kube-system").Update(ctx, ds, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Minute, "the rolling update done", func() error {
		d, err := l.Admin.AppsV1().DaemonSets("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedNumberScheduled != 3 || d.Status.NumberAvailable != 3 {
			return fmt.Errorf("updated %d, available %d", d.Status.UpdatedNumberScheduled, d.Status.NumberAvailable)
		}
		return nil
	})
}

// longestGap is the longest time between two successful client probes
// with failures between them (0: none failed).
func longestGap(r *lab.Report) time.Duration {
	var lastOK time.Time
	var gap time.Duration
	failed := false
	for _, p := range r.Probes {
		switch {
		case p.Err != nil:
			failed = true
		case failed && !lastOK.IsZero():
			gap = max(gap, p.At.Sub(lastOK))
			failed = false
			lastOK = p.At
		default:
			failed, lastOK = false, p.At
		}
	}
	return gap
}

// vipdManifests applies `vipd manifest rbac` and `vipd manifest daemonset`
// for the lab's VIP with Services on, the image replaced by the lab's, and
// waits until a Pod is Ready on every node.
func vipdManifests(t testing.TB, l *lab.Lab, extra ...string) map[string]corev1.Pod {
	t.Helper()
	ctx := context.Background()
	// The same flags for both: the ClusterRole grants what they enable.
	flags := append([]string{"--address", l.VIP.String(), "--vip-interface", "eth0", "--svc-enable", "--image", "ghcr.io/vipd/vipd:test"}, extra...)
	if err := l.Apply(ctx, mustGen(t, append([]string{"manifest", "rbac"}, flags...)...)); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"manifest", "daemonset"}, flags...)
	ds := withImage(mustGen(t, args...), "ghcr.io/vipd/vipd:test")
	if err := l.Apply(ctx, ds); err != nil {
		t.Fatal(err)
	}
	return podsReady(t, l, "kube-system", "app.kubernetes.io/name=vipd", 3, 60*time.Second)
}

// TestKubeletRollingUpdate: vipd's own manifests run by the kubelets as
// written (probes, capabilities, token); then a rolling update of the
// DaemonSet (a changed environment value) replaces the Pods one node at a
// time: never the control-plane VIP or a Service VIP on two nodes (sampled
// every 50 ms), and the client's longest gap through either is at most
// 500 ms; then `kubectl delete pod` of the leader's vipd hands the VIP over
// the same way.
func TestKubeletRollingUpdate(t *testing.T) {
	l := kubeletLab(t)
	ctx := context.Background()
	start := time.Now()
	pods := vipdManifests(t, l)
	t.Logf("3 vipd Pods Ready %s after apply", time.Since(start).Round(100*time.Millisecond))
	checkPodsAsWritten(t, l, pods)
	checkOneHolder(t, l, start)
	svcIP := netip.MustParseAddr("198.51.100.210")
	create(t, l.Admin, lbService("default", "web", port, withIPs(svcIP.String())))
	// Its backends, the servers on the nodes: kube-proxy sends the VIP's
	// traffic to them (without endpoints it rejects it).
	es := endpointSlice("default", "web", l.Nodes[0].Name)
	es.Endpoints = nil
	for _, h := range l.Nodes {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{h.IP.String()}, NodeName: ptr.To(h.Name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	if _, err := l.Admin.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the Service VIP answering", func() error {
		_, err := l.Reach(ctx, svcIP, port, time.Second)
		return err
	})

	cp := l.Observe(l.VIP, port, 50*time.Millisecond, 20*time.Millisecond)
	svc := l.Observe(svcIP, port, 50*time.Millisecond, 20*time.Millisecond)
	rollout := time.Now()
	rollDaemonSet(t, l, "vipd")
	took := time.Since(rollout)
	time.Sleep(2 * time.Second)
	for name, o := range map[string]*lab.Observer{"control-plane VIP": cp, "Service VIP": svc} {
		r := o.Stop()
		t.Logf("rolling update, %s: %s; longest gap %s", name, r.Summary(rollout), longestGap(r))
		if r.MaxOwners() > 1 {
			t.Errorf("rolling update: the %s was on two nodes for %s", name, r.TwoOwnerTime())
		}
		if g := longestGap(r); g > 500*time.Millisecond {
			t.Errorf("rolling update: the client's longest gap through the %s was %s, want ≤ 500 ms", name, g)
		}
	}
	t.Logf("rolling update of 3 nodes took %s", took.Round(100*time.Millisecond))

	// kubectl delete pod of the leader's vipd.
	holder, err := l.Holder(ctx, leaseNS, leaseName)
	if err != nil {
		t.Fatal(err)
	}
	pods = podsReady(t, l, "kube-system", "app.kubernetes.io/name=vipd", 3, 60*time.Second)
	cp = l.Observe(l.VIP, port, 50*time.Millisecond, 20*time.Millisecond)
	del := time.Now()
	if err := l.Admin.CoreV1().Pods("kube-system").Delete(ctx, pods[holder].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the VIP moved off "+holder, func() error {
		h, err := l.Holder(ctx, leaseNS, leaseName)
		if err != nil || h == holder || h == "" {
			return fmt.Errorf("holder %q (%v)", h, err)
		}
		return nil
	})
	time.Sleep(time.Second)
	r := cp.Stop()
	t.Logf("delete pod on %s: %s; longest gap %s", holder, r.Summary(del), longestGap(r))
	if r.MaxOwners() > 1 || longestGap(r) > 500*time.Millisecond {
		t.Errorf("delete pod of the leader: two owners %s, longest gap %s, want 0 and ≤ 500 ms", r.TwoOwnerTime(), longestGap(r))
	}
	podsReady(t, l, "kube-system", "app.kubernetes.io/name=vipd", 3, 60*time.Second)
	drainLeader(t, l, svcIP)
}

// drainLeader runs `kubectl drain` of the control-plane VIP holder's node,
// which cordons it and evicts every Pod but DaemonSets': vipd, still
// running there, hands its VIPs over (planned, like a SIGTERM): never on
// two nodes, the client's longest gap ≤ 500 ms; the Services Lease leaves
// the node too if it held it. Then uncordon: nothing moves back.
func drainLeader(t *testing.T, l *lab.Lab, svcIP netip.Addr) {
	ctx := context.Background()
	holder, err := l.Holder(ctx, leaseNS, leaseName)
	if err != nil || holder == "" {
		t.Fatalf("control-plane Lease holder %q (%v)", holder, err)
	}
	cp := l.Observe(l.VIP, port, 50*time.Millisecond, 20*time.Millisecond)
	svc := l.Observe(svcIP, port, 50*time.Millisecond, 20*time.Millisecond)
	start := time.Now()
	out, err := l.KubectlAPI(ctx, "drain", holder, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
	if err != nil {
		t.Fatalf("kubectl drain %s: %v\n%s", holder, err, out)
	}
	t.Logf("kubectl drain %s (%s): %s", holder, time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
	for _, lease := range []string{leaseName, svcLease} {
		eventually(t, 30*time.Second, lease+" off the drained "+holder, func() error {
			h, err := l.Holder(ctx, leaseNS, lease)
			if err != nil || h == holder || h == "" {
				return fmt.Errorf("holder %q (%v)", h, err)
			}
			return nil
		})
	}
	moved := time.Since(start)
	time.Sleep(time.Second)
	for name, o := range map[string]*lab.Observer{"control-plane VIP": cp, "Service VIP": svc} {
		r := o.Stop()
		t.Logf("drain of %s, %s: %s; longest gap %s (both Leases off it %s after the drain began)", holder, name, r.Summary(start), longestGap(r), moved.Round(time.Millisecond))
		if r.MaxOwners() > 1 || longestGap(r) > 500*time.Millisecond {
			t.Errorf("drain of the leader's node, %s: two owners %s, longest gap %s, want 0 and ≤ 500 ms", name, r.TwoOwnerTime(), longestGap(r))
		}
	}
	if out, err := l.KubectlAPI(ctx, "uncordon", holder); err != nil {
		t.Fatalf("kubectl uncordon %s: %v\n%s", holder, err, out)
	}
	time.Sleep(3 * time.Second)
	if h, _ := l.Holder(ctx, leaseNS, leaseName); h == holder || h == "" {
		t.Errorf("after uncordon the control-plane Lease is held by %q; want it to stay where it went", h)
	}
}

// restarts returns the restart count of each vipd container, by node.
func restarts(t *testing.T, l *lab.Lab) map[string]int32 {
	t.Helper()
	list, err := l.Admin.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vipd"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for _, p := range list.Items {
		for _, c := range p.Status.ContainerStatuses {
			out[p.Spec.NodeName] += c.RestartCount
		}
	}
	return out
}

// TestKubeletProbes: with vipd's manifests (liveness on /healthz, readiness
// on /readyz), 5 minutes with no fault restart no container; a 12 s
// blackhole to the API server on the leader's node moves the VIP once and
// restarts nothing; a VIP removed behind vipd's back on the leader comes
// back there and restarts nothing (/healthz fails once, the liveness probe
// needs 3 failures), as the README says.
func TestKubeletProbes(t *testing.T) {
	quiet := 5 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("VIPD_KUBELET_QUIET")); err == nil {
		quiet = d // shorter when developing; CI runs the 5 minutes
	}
	l := kubeletLab(t)
	ctx := context.Background()
	start := time.Now()
	vipdManifests(t, l)
	checkOneHolder(t, l, start)
	deadline := time.Now().Add(quiet)
	for time.Now().Before(deadline) {
		for node, n := range restarts(t, l) {
			if n != 0 {
				t.Fatalf("%s's vipd container restarted %d times with no fault\n%s", node, n, l.ContainerLogs(l.Node(node), "vipd", 30))
			}
		}
		time.Sleep(10 * time.Second)
	}
	t.Logf("%s with no fault: no container restarted", quiet)

	holder, err := l.Holder(ctx, leaseNS, leaseName)
	if err != nil {
		t.Fatal(err)
	}
	leader := l.Node(holder)
	o := l.Observe(l.VIP, port, 50*time.Millisecond, 50*time.Millisecond)
	route := []string{"route", "add", "blackhole", lab.CPAddr.String() + "/32"}
	if err := leader.IPCmd(route...); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	time.Sleep(12 * time.Second)
	route[1] = "del"
	if err := leader.IPCmd(route...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second) // past three liveness periods after the blackhole
	r := o.Stop()
	t.Logf("API blackhole 12 s on %s: %s", holder, r.Summary(at))
	if r.MaxOwners() > 1 || len(r.OwnerChanges()) > 2 {
		t.Errorf("API blackhole on the leader: owners %v, two owners %s; want one move and never two", r.OwnerChanges(), r.TwoOwnerTime())
	}
	for node, n := range restarts(t, l) {
		if n != 0 {
			t.Errorf("%s's vipd container restarted %d times during or after the blackhole\n%s", node, n, l.ContainerLogs(l.Node(node), "vipd", 30))
		}
	}

	// The VIP removed behind vipd's back on the leader.
	if holder, err = l.Holder(ctx, leaseNS, leaseName); err != nil {
		t.Fatal(err)
	}
	leader = l.Node(holder)
	o = l.Observe(l.VIP, port, 50*time.Millisecond, 50*time.Millisecond)
	if err := leader.IPCmd("addr", "del", l.VIP.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	at = time.Now()
	time.Sleep(20 * time.Second)
	r = o.Stop()
	t.Logf("VIP removed on %s: %s", holder, r.Summary(at))
	if got := r.OwnerChanges(); len(got) == 0 || got[len(got)-1] != holder || r.MaxOwners() > 1 {
		t.Errorf("VIP removed on the leader %s: owners %v afterwards; want it back on %s only", holder, got, holder)
	}
	for node, n := range restarts(t, l) {
		if n != 0 {
			t.Errorf("%s's vipd container restarted %d times after the VIP was removed", node, n)
		}
	}
}

// TestKubeletStaticPod: kubeadm's way. `vipd manifest pod`, with only the
// image replaced and the kubeconfig it mounts at the path given, written
// into one node's static Pod folder, on a node whose 127.0.0.1:6443 reaches
// the API server (a kubeadm control-plane node's own): that node's kubelet
// runs it (its mirror Pod Running and Ready), and the VIP comes up there.
func TestKubeletStaticPod(t *testing.T) {
	l := kubeletLab(t)
	ctx := context.Background()
	h := l.Nodes[0]
	if err := l.LocalAPIServer(h); err != nil {
		t.Fatal(err)
	}
	kc, err := l.Kubeconfig(netip.AddrPortFrom(lab.CPAddr, 6443))
	if err != nil {
		t.Fatal(err)
	}
	pod := withImage(mustGen(t, "manifest", "pod", "--address", l.VIP.String(), "--vip-interface", "eth0",
		"--image", "ghcr.io/vipd/vipd:test", "--kubeconfig-path", kc), "ghcr.io/vipd/vipd:test")
	start := time.Now()
	if err := os.WriteFile(filepath.Join(l.StaticPods(h), "vipd.yaml"), pod, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the static Pod's mirror Running and Ready", func() error {
		p, err := l.Admin.CoreV1().Pods("kube-system").Get(ctx, "vipd-"+h.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("%s %s\n%s", p.Status.Phase, containerStates(*p), l.ContainerLogs(h, "vipd", 10))
	})
	t.Logf("static Pod Ready %s after it was written", time.Since(start).Round(100*time.Millisecond))
	checkOneHolder(t, l, start)
	if holder, _ := l.Holder(ctx, leaseNS, leaseName); holder != h.Name {
		t.Errorf("Lease held by %q, want %s (the only node running vipd)", holder, h.Name)
	}
}
