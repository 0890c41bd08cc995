package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/lab"
)

// vipdCmd runs the vipd binary on the host (not in a lab namespace).
func vipdCmd(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin, err := lab.VipdBinary()
	if err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func mustGen(t testing.TB, args ...string) []byte {
	t.Helper()
	out, errOut, err := vipdCmd(t, args...)
	if err != nil {
		t.Fatalf("vipd %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return []byte(out)
}

// TestGeneratedManifests: every manifest vipd generates is accepted by the
// real API server, and vipd run with the container of the DaemonSet made
// from kube-vip's documented command line, authorised only by the
// generated ClusterRole, elects a leader and serves the VIP.
func TestGeneratedManifests(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	flags := []string{"--address", l.VIP.String(), "--vip-interface", "eth0", "--image", "ghcr.io/vipd/vipd:test"}
	ds := mustGen(t, append([]string{"manifest", "daemonset"}, flags...)...)
	pod := mustGen(t, append([]string{"manifest", "pod"}, flags...)...)
	// kube-vip's documented K3s command line, as users paste it (through
	// the image's entrypoint, with kube-vip's program name first), and
	// its RBAC; vipd manifest rbac needs no address.
	rbac := mustGen(t, "/kube-vip", "manifest", "rbac", "--services")
	kubeVipDS := mustGen(t, "manifest", "daemonset", "--interface", "eth0", "--address", l.VIP.String(), "--inCluster", "--taint",
		"--controlplane", "--services", "--arp", "--leaderElection", "--image", "ghcr.io/vipd/vipd:test")
	if same := mustGen(t, "manifest", "daemonset", "--vip-interface", "eth0", "--address", l.VIP.String(), "--cp-enable", "--svc-enable",
		"--vip-arp", "--vip-leaderelection", "--image", "ghcr.io/vipd/vipd:test"); !bytes.Equal(kubeVipDS, same) {
		t.Errorf("kube-vip's command line prints another DaemonSet than vipd's names:\n%s\n---\n%s", kubeVipDS, same)
	}
	if err := l.ApplyDryRun(ctx, mustGen(t, "manifest", "rbac")); err != nil {
		t.Errorf("server dry run of vipd manifest rbac without flags: %v", err)
	}

	for name, m := range map[string][]byte{"rbac": rbac, "daemonset": ds, "pod": pod, "kube-vip's daemonset": kubeVipDS} {
		if err := l.ApplyDryRun(ctx, m); err != nil {
			t.Errorf("server dry run of %s: %v\n%s", name, err, m)
		}
	}
	// For real: the generated ClusterRole replaces the seed's rules, so the
	// ServiceAccount is authorised by it alone.
	for name, m := range map[string][]byte{"rbac": rbac, "daemonset": ds, "pod": pod} {
		if err := l.Apply(ctx, m); err != nil {
			t.Fatalf("applying %s: %v", name, err)
		}
	}
	got, err := l.Admin.AppsV1().DaemonSets("kube-system").Get(ctx, "vipd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := got.Spec.Template.Spec
	c := spec.Containers[0]
	if !spec.HostNetwork || spec.ServiceAccountName != "kube-vip" || c.LivenessProbe == nil || c.ReadinessProbe == nil ||
		len(c.SecurityContext.Capabilities.Add) != 2 || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Errorf("stored DaemonSet lacks host network, ServiceAccount, probes or capabilities: %+v", spec)
	}

	token, err := l.Token(ctx, "kube-system", "kube-vip")
	if err != nil {
		t.Fatal(err)
	}
	// vipd runs with the container of the DaemonSet made from kube-vip's
	// command line (Control plane and Services).
	sc := lab.ScenarioOptions{
		Container: func(node string) (lab.Container, error) { return lab.ContainerOf(kubeVipDS, node) },
		Token:     token, Namespace: leaseNS, LeaseName: leaseName, Port: port,
	}
	procs, owner, err := l.StartFresh(ctx, sc, 30*time.Second)
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("generated DaemonSet: %s holds the Lease and the VIP", owner)
	for _, p := range procs {
		if strings.Contains(p.Output(), "forbidden") {
			t.Errorf("vipd on %s hit a forbidden call with the generated ClusterRole:\n%s", p.Host.Name, p.Tail(20))
		}
	}

	// vipd manifest k3s writes exactly rbac + daemonset, and says how to start K3s.
	dir := filepath.Join(t.TempDir(), "manifests")
	out := string(mustGen(t, append([]string{"manifest", "k3s", "--dir", dir}, flags...)...))
	for file, want := range map[string][]byte{"vipd-rbac.yaml": mustGen(t, append([]string{"manifest", "rbac"}, flags...)...), "vipd.yaml": ds} {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil || !bytes.Equal(b, want) {
			t.Errorf("%s differs from vipd manifest output (err %v)", file, err)
		}
	}
	for _, want := range []string{"--cluster-init", "--tls-san " + l.VIP.String(), "--disable servicelb", "--disable-cloud-controller", "--server https://" + l.VIP.String() + ":6443"} {
		if !strings.Contains(out, want) {
			t.Errorf("k3s instructions lack %q:\n%s", want, out)
		}
	}
}

// TestManifestBadInput: bad flags exit non-zero and name the flag.
func TestManifestBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"manifest", "daemonset"}, "--address"},
		{[]string{"manifest", "daemonset", "--address", "198.51.100.300"}, `--address="198.51.100.300" is neither an IP address nor a DNS name`},
		{[]string{"manifest", "daemonset", "--address", "198.51.100.200", "--vip-leaseduration", "3"}, "--vip-leaseduration=3 must exceed --vip-renewdeadline=3"},
		{[]string{"manifest", "daemonset", "--address", "198.51.100.200", "--vip-arp=maybe"}, `--vip-arp="maybe" is not a boolean`},
		{[]string{"manifest", "daemonset", "--address", "198.51.100.200", "--prometheus-server", "2112"}, `prometheus_server="2112"`},
		{[]string{"manifest", "daemonset", "--address", "198.51.100.200", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"manifest", "helm", "--address", "198.51.100.200"}, "unknown command"},
	} {
		_, stderr, err := vipdCmd(t, tc.args...)
		if err == nil {
			t.Errorf("vipd %s: exit 0", strings.Join(tc.args, " "))
			continue
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("vipd %s: stderr %q lacks %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
}
