// Package e2e runs vipd against a real kube-apiserver and etcd in a lab of
// network namespaces (internal/lab). It needs root. With VIPD_E2E=1 (set by
// .ci/run) a missing prerequisite fails the tests instead of skipping them.
package e2e

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

const (
	port      = 8080
	leaseNS   = "kube-system"
	leaseName = "plndr-cp-lock"
	// leaseDuration is the seed's vip_leaseduration.
	leaseDuration = 5 * time.Second
)

// newLab starts a lab with the seed's RBAC applied and a TCP server on every
// node, and removes it when the test ends.
func newLab(t testing.TB) *lab.Lab {
	t.Helper()
	return newLabWith(t, lab.Options{Nodes: 3})
}

// newLabWith is newLab with lab options.
func newLabWith(t testing.TB, o lab.Options) *lab.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VIPD_E2E") == "1" {
			t.Fatal("VIPD_E2E=1 but not running as root: the e2e tests need root for network namespaces")
		}
		t.Skip("e2e tests need root (set VIPD_E2E=1 to make this a failure)")
	}
	ctx := context.Background()
	o.Log = testWriter{t}
	l, err := lab.New(ctx, o)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(l.Close)
	if err := l.Apply(ctx, lab.SeedRBAC); err != nil {
		t.Fatalf("applying the seed's RBAC: %v", err)
	}
	if err := l.Serve(port); err != nil {
		t.Fatal(err)
	}
	return l
}

// seedScenario is the seed's DaemonSet environment, authenticated as the
// seed's ServiceAccount.
func seedScenario(t testing.TB, l *lab.Lab) lab.ScenarioOptions {
	t.Helper()
	token, err := l.Token(context.Background(), "kube-system", "kube-vip")
	if err != nil {
		t.Fatal(err)
	}
	ds := lab.SeedDaemonSet(l.VIP.String(), "eth0")
	return lab.ScenarioOptions{
		Container: func(node string) (lab.Container, error) { return lab.ContainerOf(ds, node) },
		Token:     token, Namespace: leaseNS, LeaseName: leaseName, Port: port,
		Settle: 3 * time.Second,
	}
}

// withEnv adds settings (name=value) to every node's container.
func withEnv(sc lab.ScenarioOptions, extra ...string) lab.ScenarioOptions {
	base := sc.Container
	sc.Container = func(node string) (lab.Container, error) {
		c, err := base(node)
		c.Env = append(c.Env, extra...)
		return c, err
	}
	return sc
}

// vipdStatus runs `vipd status` from the client host with an admin
// kubeconfig, as an operator would.
func vipdStatus(t testing.TB, l *lab.Lab) ([]byte, error) {
	t.Helper()
	kc, err := l.Kubeconfig(netip.AddrPortFrom(lab.CPAddr, 6443))
	if err != nil {
		t.Fatal(err)
	}
	bin, err := lab.VipdBinary()
	if err != nil {
		t.Fatal(err)
	}
	return exec.Command("ip", "netns", "exec", l.Client.NS, bin, "status", "--kubeconfig", kc).CombinedOutput()
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// dumpOnFailure prints the daemons' logs when the test fails.
// startDaemons starts vipd on every node; the daemons are killed at the end
// of the test, and their logs printed if it failed.
func startDaemons(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions) map[string]*lab.Proc {
	t.Helper()
	procs, err := l.StartDaemons(context.Background(), sc)
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	if err != nil {
		t.Fatal(err)
	}
	return procs
}

func dumpOnFailure(t testing.TB, procs map[string]*lab.Proc) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for name, p := range procs {
			t.Logf("--- log of vipd on %s ---\n%s", name, p.Tail(60))
		}
	})
}

func TestMain(m *testing.M) {
	code := m.Run()
	lab.Cleanup()
	os.Exit(code)
}
