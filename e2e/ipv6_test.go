package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/lab"
)

// TestIPv6VIP runs the seed's environment with an IPv6 VIP (vip_subnet=128):
// the VIP is a deprecated /128 with a finite lifetime on one node, a client
// reaches it, and planned and unplanned failovers move it (announced with
// unsolicited neighbor advertisements) without ever two owners.
func TestIPv6VIP(t *testing.T) {
	vip := netip.MustParseAddr("2001:db8::200")
	l := newLabWith(t, lab.Options{Nodes: 3, IPv6: true, VIP: vip})
	ctx := context.Background()
	sc := seedScenario(t, l)
	base := sc.Container
	sc.Container = func(node string) (lab.Container, error) {
		c, err := base(node)
		for i, kv := range c.Env {
			if strings.HasPrefix(kv, "vip_subnet=") {
				c.Env[i] = "vip_subnet=128"
			}
		}
		return c, err
	}

	procs, owner, err := l.StartFresh(ctx, sc, 30*time.Second)
	dumpOnFailure(t, procs)
	if err != nil {
		t.Fatal(err)
	}
	n := l.Node(owner)
	addrs, err := n.Netlink().AddrList(mustLink(t, n), netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range addrs {
		if ip, _ := netip.AddrFromSlice(a.IP); ip == vip {
			found = true
			if ones, _ := a.Mask.Size(); ones != 128 || a.Flags&unix.IFA_F_DEPRECATED == 0 || a.ValidLft <= 0 || a.ValidLft > 3 {
				t.Errorf("VIP on %s: /%d flags %#x valid_lft %d; want /128, deprecated, 1-3 s", owner, ones, a.Flags, a.ValidLft)
			}
		}
	}
	if !found {
		t.Fatalf("VIP not on %s", owner)
	}
	lab.KillAll(procs)

	for _, f := range []lab.Fault{lab.Faults[0], lab.Faults[1]} {
		r, err := l.RunFault(ctx, sc, f)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("IPv6, %s on %s: %s", f.Name, r.OldOwner, r.Report.Summary(r.FaultAt))
		if err := r.Check(leaseDuration + 3*time.Second); err != nil {
			t.Errorf("%s: %v", f.Name, err)
		}
	}
}
