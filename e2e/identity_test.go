package e2e

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

// TestSameNodeName: three servers whose vipd has one name (cloned machines
// with one host name and no vip_nodename; the seed's DaemonSet sets none).
// Each Lease write carries its process's instance token, so a Lease that
// names "vm" but was written by another process is another holder's: never
// the VIP on two nodes (sampled every 50 ms for 12 s), and the others say
// why in their log. SIGTERM of the holder hands the VIP over as usual.
func TestSameNodeName(t *testing.T) {
	l := newLab(t)
	ctx := context.Background()
	sc := withEnv(seedScenario(t, l), "vip_nodename=vm", "svc_enable=false")
	o := l.Observe(l.VIP, port, 50*time.Millisecond, 50*time.Millisecond)
	procs, err := l.StartDaemons(ctx, sc)
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	if err != nil {
		t.Fatal(err)
	}
	var owner string
	eventually(t, 30*time.Second, "one node with the VIP", func() error {
		s, err := l.Owners(l.VIP)
		if err != nil || len(s.Owners) != 1 {
			return fmt.Errorf("owners %v (%v)", s.Owners, err)
		}
		owner = s.Owners[0]
		return nil
	})
	time.Sleep(12 * time.Second)
	r := o.Stop()
	t.Logf("three processes named vm: %s", r.Summary(time.Now()))
	if r.MaxOwners() > 1 {
		t.Fatalf("the VIP was on two nodes for %s (owners %v)", r.TwoOwnerTime(), r.OwnerChanges())
	}
	if got := r.OwnerChanges(); len(got) != 1 || got[0] != owner {
		t.Errorf("owners %v, want %s only", got, owner)
	}
	said := 0
	for name, p := range procs {
		if name != owner && strings.Contains(p.Output(), "another vipd process wrote it") {
			said++
		}
	}
	if said != 2 {
		t.Errorf("%d of the 2 other nodes logged why they wait, want 2", said)
	}

	o = l.Observe(l.VIP, port, 50*time.Millisecond, 20*time.Millisecond)
	at := time.Now()
	if err := procs[owner].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the VIP on another node", func() error {
		s, err := l.Owners(l.VIP)
		if err != nil || len(s.Owners) != 1 || s.Owners[0] == owner {
			return fmt.Errorf("owners %v (%v)", s.Owners, err)
		}
		return nil
	})
	time.Sleep(time.Second)
	r = o.Stop()
	t.Logf("SIGTERM of %s: %s", owner, r.Summary(at))
	if r.MaxOwners() > 1 || r.Gap(at) > time.Second || r.Gap(at) < 0 {
		t.Errorf("SIGTERM of the holder: two owners %s, gap %s; want none and a planned handover", r.TwoOwnerTime(), r.Gap(at))
	}
}
