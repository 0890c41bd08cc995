package conflict

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
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

// TestHeardAnnouncing: a host that only announces a held address (it
// ignores probes) is reported when heard, once however often it
// announces; its conflict stays while it announces within Quiet, and is
// resolved once it has been quiet that long (and missed two probes). A
// host heard for an address this node does not hold is not reported.
func TestHeardAnnouncing(t *testing.T) {
	held := addrs(1)
	other := netip.MustParseAddr("198.51.100.99")
	clk := testingclock.NewFakeClock(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{}} // answers no probe
	var reports, resolved []Finding
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Clock: clk, Quiet: 10 * time.Second,
		Report: func(f Finding) { reports = append(reports, f) }, Resolve: func(f Finding) { resolved = append(resolved, f) }})
	ctx := context.Background()
	m.Heard(held[0], rogue.String())
	if len(reports) != 0 {
		t.Fatal("reported before the first round said what this node holds")
	}
	m.Round(ctx)
	m.Heard(other, rogue.String())
	if len(reports) != 0 {
		t.Fatalf("reported %v for an address this node does not hold", reports)
	}
	for range 5 { // announcing every 4 s, probed every second
		m.Heard(held[0], rogue.String())
		for range 4 {
			clk.Step(time.Second)
			m.Round(ctx)
		}
	}
	if len(reports) != 1 || reports[0].Addr != held[0] || reports[0].MAC != rogue.String() {
		t.Fatalf("reports %v, want one for %s from %s", reports, held[0], rogue)
	}
	if len(resolved) != 0 {
		t.Fatalf("resolved %v while the host announced every 4 s (missing every probe)", resolved)
	}
	for range 5 { // 4 + 5 = 9 s since the last announcement
		clk.Step(time.Second)
		m.Round(ctx)
	}
	if len(resolved) != 0 {
		t.Fatalf("resolved %v 9 s after the last announcement (Quiet 10 s)", resolved)
	}
	clk.Step(time.Second)
	m.Round(ctx)
	if len(resolved) != 1 || len(m.Active()) != 0 {
		t.Fatalf("resolved %v, active %v after 10 s of quiet", resolved, m.Active())
	}
}

// TestRunHearsTheListener: Run takes what Options.Listen hears, on its
// own goroutine (Report is never called from the listener's).
func TestRunHearsTheListener(t *testing.T) {
	held := addrs(1)
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{}}
	reported := make(chan Finding, 1)
	ready := make(chan func(netip.Addr, net.HardwareAddr), 1)
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Every: 10 * time.Millisecond,
		Listen: func(ctx context.Context, seen func(netip.Addr, net.HardwareAddr)) error {
			ready <- seen
			<-ctx.Done()
			return nil
		},
		Report: func(f Finding) { reported <- f }, Resolve: func(Finding) {}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	seen := <-ready
	deadline := time.After(5 * time.Second)
	for {
		seen(held[0], rogue)
		select {
		case f := <-reported:
			if f.Addr != held[0] || f.MAC != rogue.String() {
				t.Fatalf("reported %v", f)
			}
			return
		case <-time.After(20 * time.Millisecond): // the first round has not run yet
		case <-deadline:
			t.Fatal("the listener's claim was never reported")
		}
	}
}

// TestHearOnlyWhatIsHeldNow: an announcement of an address this node let
// go after the last round (a planned move: its new owner announces it) is
// not taken, though the last round's set still lists it.
func TestHearOnlyWhatIsHeldNow(t *testing.T) {
	held := addrs(1)
	w := &wire{answers: map[netip.Addr]net.HardwareAddr{}}
	m := New(Options{Probe: w.probe, Held: func() []netip.Addr { return held }, Report: func(Finding) {}, Resolve: func(Finding) {}})
	m.Round(context.Background())
	m.hear(held[0], rogue)
	if len(m.heard) != 1 {
		t.Fatalf("a claim on a held address not taken (%d queued)", len(m.heard))
	}
	<-m.heard
	a := held[0]
	held = nil
	m.hear(a, rogue)
	if len(m.heard) != 0 {
		t.Fatal("a claim on an address let go since the last round was taken")
	}
}
