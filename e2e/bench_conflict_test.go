package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipd/vipd/internal/lab"
)

// BenchmarkConflict: a rogue host on the segment takes an address vipd
// holds (the control-plane VIP, then a Service VIP), as a host configured
// by hand would; printed: the time from the rogue having the address (its
// kernel answers the first ARP request from then on) to the AddressConflict
// Event, and from the rogue letting go to AddressConflictResolved.
// VIPD_BENCH_RUNS runs each (default 5).
func BenchmarkConflict(b *testing.B) {
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("VIPD_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	l, sc := servicesLab(b)
	ctx := context.Background()
	procs, owner, err := l.StartFresh(ctx, sc, 30*time.Second)
	defer lab.KillAll(procs)
	if err != nil {
		b.Fatal(err)
	}
	svcIP := netip.MustParseAddr("198.51.100.210")
	create(b, l.Admin, lbService("default", "web", port, withIPs(svcIP.String())))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if o, err := l.Owners(svcIP); err == nil && len(o.Owners) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the Service VIP never came up")
		}
		time.Sleep(100 * time.Millisecond)
	}
	rogue := l.CP
	mac := mustLink(b, rogue).Attrs().HardwareAddr.String()
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nAddress conflicts: a rogue host takes an address vipd holds (3 nodes, seed settings), %d runs, median [min-max]\n", runs)
	fmt.Fprintf(&sb, "| address | rogue has it → AddressConflict Event (ms) | rogue lets go → AddressConflictResolved (ms) |\n|---|---|---|\n")
	for range b.N {
		for _, c := range []struct {
			what     string
			addr     netip.Addr
			ns, name string
		}{
			{"control-plane VIP (holder " + owner + ")", l.VIP, "kube-system", leaseName},
			{"Service VIP", svcIP, "default", "web"},
		} {
			var found, resolved []time.Duration
			for range runs {
				p := c.addr.String() + "/32"
				if err := rogue.IPCmd("addr", "add", p, "dev", "eth0"); err != nil {
					b.Fatal(err)
				}
				found = append(found, eventAfter(b, l, c.ns, c.name, corev1.EventTypeWarning, "AddressConflict", mac))
				if err := rogue.IPCmd("addr", "del", p, "dev", "eth0"); err != nil {
					b.Fatal(err)
				}
				resolved = append(resolved, eventAfter(b, l, c.ns, c.name, corev1.EventTypeNormal, "AddressConflictResolved", mac))
				time.Sleep(1100 * time.Millisecond) // the next run's Events fall in another second
			}
			fmt.Fprintf(&sb, "| %s | %s | %s |\n", c.what, stats(found), stats(resolved))
		}
	}
	fmt.Print(sb.String())
}

// eventAfter is waitEventOf for benchmarks: how long until the Event.
func eventAfter(b *testing.B, l *lab.Lab, ns, name, typ, reason, want string) time.Duration {
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		if msg, err := eventSince(l, ns, name, typ, reason, want, start); err == nil && msg != "" {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("no %s %s Event containing %q", typ, reason, want)
	return 0
}
