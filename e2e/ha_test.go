package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

// haScenario runs vipd with the seed's environment (plus extra settings)
// in the "ha" lab: each vipd reaches the API through 198.51.100.2:6443,
// which forwards to any node's API server, like the in-cluster Service.
func haScenario(t testing.TB, l *lab.Lab, extra ...string) lab.ScenarioOptions {
	return withEnv(seedScenario(t, l), extra...)
}

// TestHAControlPlane is the seed's failover test: `systemctl stop k3s` on
// the leader stops its API server and etcd while vipd keeps running there.
func TestHAControlPlane(t *testing.T) {
	l := newLabWith(t, lab.Options{Nodes: 3, HA: true})
	ctx := context.Background()

	t.Run("gate moves the VIP", func(t *testing.T) {
		sc := haScenario(t, l)
		procs, owner, err := l.StartFresh(ctx, sc, 60*time.Second)
		dumpOnFailure(t, procs)
		defer lab.KillAll(procs)
		if err != nil {
			t.Fatal(err)
		}
		out, err := l.Kubectl(ctx, "get", "--raw", "/readyz")
		if err != nil || out != "ok" {
			t.Fatalf("kubectl --server https://VIP:6443 get --raw /readyz: %q %v", out, err)
		}
		// Let the health gates arm (they need one ready answer).
		time.Sleep(2 * time.Second)

		bound := 4*time.Second + leaseDuration + 2*time.Second // gate (3 checks, 1 s apart) + lease + 2 s
		r, err := l.StopLeaderControlPlane(ctx, l.Node(owner), bound+3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("control plane stopped on %s: %s; kubectl through the VIP again after %s", owner, r.Report.Summary(time.Now()), r.Outage.Round(time.Millisecond))
		if m := r.Report.MaxOwners(); m > 1 {
			t.Errorf("%d nodes had the VIP at once", m)
		}
		if seq := r.Report.OwnerChanges(); len(seq) != 2 || seq[0] != owner {
			t.Errorf("owners %v: want [%s <other>]", seq, owner)
		}
		if r.Outage < 0 || r.Outage > bound {
			t.Errorf("kubectl through the VIP back after %s, want within %s; last kubectl: %s", r.Outage, bound, r.LastKubectl)
		}
		select {
		case <-procs[owner].Done():
			t.Errorf("vipd on %s exited; it must keep running while its API server is down", owner)
		default:
		}
		for name, p := range procs {
			if !t.Failed() {
				break
			}
			for _, line := range strings.Split(p.Output(), "\n") {
				if strings.Contains(line, "gate") || strings.Contains(line, "acquired") || strings.Contains(line, "VIP added") || strings.Contains(line, "VIP removed") || strings.Contains(line, "released") || strings.Contains(line, "check failed") {
					t.Logf("%s: %s", name, line)
				}
			}
		}
		if !strings.Contains(procs[owner].Output(), "health gate closed") {
			t.Errorf("vipd on %s did not log the gate closing", owner)
		}

		// Start it again: the node rejoins as a follower, the VIP stays.
		if err := l.StartControlPlane(ctx, l.Node(owner)); err != nil {
			t.Fatal(err)
		}
		obs := l.Observe(l.VIP, 0, 50*time.Millisecond, 0)
		time.Sleep(8 * time.Second)
		rep := obs.Stop()
		if seq := rep.OwnerChanges(); len(seq) != 1 || seq[0] != r.NewOwner || rep.MaxOwners() != 1 {
			t.Errorf("after %s came back: owners %v (max %d at once), want only %s", owner, seq, rep.MaxOwners(), r.NewOwner)
		}
		if !strings.Contains(procs[owner].Output(), "health gate open") {
			t.Errorf("vipd on %s did not log the gate opening again", owner)
		}
	})

	t.Run("gate off leaves the VIP", func(t *testing.T) {
		if t.Failed() {
			return
		}
		sc := haScenario(t, l, "cp_healthcheck=false")
		procs, owner, err := l.StartFresh(ctx, sc, 60*time.Second)
		dumpOnFailure(t, procs)
		defer lab.KillAll(procs)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		r, err := l.StopLeaderControlPlane(ctx, l.Node(owner), 12*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gate off, control plane stopped on %s: %s", owner, r.Report.Summary(time.Now()))
		if !r.VIPStayed || r.Outage >= 0 {
			t.Errorf("with the gate off the VIP should stay on %s (its vipd still renews through other API servers): owners %v, kubectl back after %s",
				owner, r.Report.OwnerChanges(), r.Outage)
		}
		if err := l.StartControlPlane(ctx, l.Node(owner)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("k8s_api=local", func(t *testing.T) {
		// vipd talks to its own node's API server (static-Pod style): when
		// that server is gone the holder cannot renew, its fence removes the
		// VIP, and a follower takes over when the Lease expires.
		sc := haScenario(t, l, "k8s_api=local")
		bound := 4*time.Second + leaseDuration + 2*time.Second
		r, err := l.RunControlPlaneStop(ctx, sc, bound+3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("k8s_api=local, control plane stopped on %s: %s; kubectl back after %s", r.OldOwner, r.Report.Summary(time.Now()), r.Outage.Round(time.Millisecond))
		if seq := r.Report.OwnerChanges(); len(seq) != 2 || r.Report.MaxOwners() != 1 || r.Outage < 0 || r.Outage > bound {
			t.Errorf("owners %v (max %d at once), kubectl back after %s (bound %s); last kubectl %s", seq, r.Report.MaxOwners(), r.Outage, bound, r.LastKubectl)
		}
	})
}
