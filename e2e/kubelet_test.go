package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/lab"
)

// kubeletLab is a lab whose nodes run containerd, a kubelet and kube-proxy.
func kubeletLab(t *testing.T) *lab.Lab {
	t.Helper()
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
func podsReady(t *testing.T, l *lab.Lab, ns, selector string, n int, timeout time.Duration) map[string]corev1.Pod {
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
