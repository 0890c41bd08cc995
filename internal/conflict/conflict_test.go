package conflict

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// wire is a fake segment: which MAC answers for which address.
type wire struct {
	answers map[netip.Addr]net.HardwareAddr
	probed  [][]netip.Addr
}

func (w *wire) probe(_ context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
	w.probed = append(w.probed, addrs)
	out := map[netip.Addr]net.HardwareAddr{}
	for _, a := range addrs {
		if m, ok := w.answers[a]; ok {
			out[a] = m
		}
	}
	return out, nil
}

var rogue = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x66}

func addrs(n int) []netip.Addr {
	var out []netip.Addr
	for i := range n {
		out = append(out, netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 10+i)))
	}
	return out
}

// TestReportOnceResolveAfterMisses: a rogue answering is reported once
// however many rounds it keeps answering; it is resolved after two probes
// it did not answer, and reported again if it comes back.
func TestReportOnceResolveAfterMisses(t *testing.T) {
	held := addrs(1)
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{}}
	var reports, resolved []Finding
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Report: func(f Finding) { reports = append(reports, f) }, Resolve: func(f Finding) { resolved = append(resolved, f) }})
	ctx := context.Background()
	m.Round(ctx)
	if len(reports) != 0 {
		t.Fatalf("reported %v with nobody else on the wire", reports)
	}
	w.answers[held[0]] = rogue
	for range 5 {
		m.Round(ctx)
	}
	if len(reports) != 1 || reports[0].MAC != rogue.String() || reports[0].Addr != held[0] {
		t.Fatalf("reports %v, want one for %s from %s", reports, held[0], rogue)
	}
	if a := m.Active(); len(a) != 1 {
		t.Fatalf("Active %v", a)
	}
	delete(w.answers, held[0])
	m.Round(ctx)
	if len(resolved) != 0 {
		t.Fatal("resolved after a single missed probe (one lost answer)")
	}
	m.Round(ctx)
	if len(resolved) != 1 || len(m.Active()) != 0 {
		t.Fatalf("resolved %v, active %v after two missed probes", resolved, m.Active())
	}
	w.answers[held[0]] = rogue
	m.Round(ctx)
	if len(reports) != 2 {
		t.Fatalf("a rogue that came back is not reported again: %v", reports)
	}
}

// TestBatchesCoverEveryAddress: with more addresses than a batch, the
// rounds go round all of them, each probe at most Batch addresses.
func TestBatchesCoverEveryAddress(t *testing.T) {
	held := addrs(70)
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{held[69]: rogue}}
	var reports []Finding
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Batch: 32, Report: func(f Finding) { reports = append(reports, f) }, Resolve: func(Finding) {}})
	for range 3 {
		m.Round(context.Background())
	}
	seen := map[netip.Addr]bool{}
	for _, p := range w.probed {
		if len(p) > 32 {
			t.Fatalf("a probe of %d addresses, batch 32", len(p))
		}
		for _, a := range p {
			seen[a] = true
		}
	}
	if len(seen) != 70 || len(reports) != 1 {
		t.Fatalf("3 rounds probed %d of 70 addresses, reports %v", len(seen), reports)
	}
}

// TestNotHeldForgotten: an address this node no longer holds is neither
// probed nor reported resolved.
func TestNotHeldForgotten(t *testing.T) {
	held := addrs(1)
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{held[0]: rogue}}
	var resolved []Finding
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Report: func(Finding) {}, Resolve: func(f Finding) { resolved = append(resolved, f) }})
	m.Round(context.Background())
	held = nil
	n := len(w.probed)
	m.Round(context.Background())
	if len(w.probed) != n || len(m.Active()) != 0 || len(resolved) != 0 {
		t.Fatalf("after letting go: probes %d→%d, active %v, resolved %v", n, len(w.probed), m.Active(), resolved)
	}
}
