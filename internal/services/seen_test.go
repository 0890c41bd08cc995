package services

import (
	"net/netip"
	"testing"
	"time"
)

// A read that raced the holder's last renewal answers with the version
// before it, after the watch showed the renewal. The view keeps the newer
// version and when it was first seen: the holder's Lease stops blocking one
// lease duration after its last renewal, not two (the slow takeover of
// about 2 × lease duration seen in the e2e fault matrix).
func TestLeaseViewIgnoresAStaleRead(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	x := netip.MustParseAddr("198.51.100.10")
	v := func(rv string) leaseVersion {
		return leaseVersion{key: "kube-system/vipd-node-a", rv: rv, holder: "a", holds: x.String(), dur: 5 * time.Second}
	}
	w := leaseView{}
	w.saw(v("10"), t0)                                                                                    // the watch: a renewal
	w.saw(v("11"), t0.Add(time.Second))                                                                   // the watch: a's last renewal
	blocked, _ := w.claimed("b", []leaseVersion{v("10")}, []netip.Addr{x}, t0.Add(1100*time.Millisecond)) // the read raced it
	if blocked[x] == "" {
		t.Fatalf("a's live Lease does not block %s", x)
	}
	if s := w["kube-system/vipd-node-a"]; s.rv != "11" || !s.at.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a stale read the view holds version %s seen at %s; want 11 seen at %s", s.rv, s.at, t0.Add(time.Second))
	}
	// a is dead: one lease duration after its last renewal was seen, the
	// address is free.
	if blocked, _ := w.claimed("b", []leaseVersion{v("11")}, []netip.Addr{x}, t0.Add(6*time.Second)); blocked[x] != "" {
		t.Fatalf("%s still blocked by %s one lease duration after a's last renewal", x, blocked[x])
	}
	// The watch delivering a version the read already showed does not
	// restart the count either.
	w.saw(v("12"), t0.Add(7*time.Second)) // read first (claimed records it)
	w.saw(v("12"), t0.Add(8*time.Second)) // then the watch
	if s := w["kube-system/vipd-node-a"]; !s.at.Equal(t0.Add(7 * time.Second)) {
		t.Fatalf("version 12 counted from %s; want %s (first seen)", s.at, t0.Add(7*time.Second))
	}
	// A renewal seen later is new: it blocks again.
	if blocked, _ := w.claimed("b", []leaseVersion{v("13")}, []netip.Addr{x}, t0.Add(13*time.Second)); blocked[x] == "" {
		t.Fatal("a renewed Lease does not block")
	}
}

// A Lease deleted behind its holder's back still counts for its duration
// from when a read first missed it; a Lease without a holder, or this
// node's, never blocks.
func TestLeaseViewDeletedLease(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	x := netip.MustParseAddr("198.51.100.10")
	w := leaseView{}
	w.saw(leaseVersion{key: "ns/a", rv: "1", holder: "a", holds: x.String(), dur: 5 * time.Second}, t0)
	w.saw(leaseVersion{key: "ns/free", rv: "2", holds: x.String(), dur: 5 * time.Second}, t0)
	w.saw(leaseVersion{key: "ns/mine", rv: "3", holder: "b", holds: x.String(), dur: 5 * time.Second}, t0)
	for _, at := range []time.Duration{time.Second, 5 * time.Second} {
		blocked, listed := w.claimed("b", nil, []netip.Addr{x}, t0.Add(at))
		if blocked[x] != "ns/a (held by a)" || !listed[x] {
			t.Fatalf("at %s: blocked %q listed %t; want ns/a (held by a)", at, blocked[x], listed[x])
		}
	}
	if blocked, _ := w.claimed("b", nil, []netip.Addr{x}, t0.Add(6*time.Second+time.Millisecond)); blocked[x] != "" {
		t.Fatalf("a deleted Lease blocks %s a lease duration after it was missed: %s", x, blocked[x])
	}
	if len(w) != 0 {
		t.Fatalf("the view keeps deleted Leases: %v", w)
	}
}

// A lagging watch delivers a version older than one a read has already
// shown (a's Lease before it listed x). The view must not fall back to it:
// the next read, which still shows the newer version (a is frozen, its
// fence not passed), must still find x blocked. The view once took the
// older version for new and answered the read with its list, without x.
func TestLeaseViewIgnoresAnOlderVersionFromALaggingWatch(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	x := netip.MustParseAddr("198.51.100.10")
	v := func(rv, holds string) leaseVersion {
		return leaseVersion{key: "kube-system/vipd-node-a", rv: rv, holder: "a", holds: holds, dur: 4 * time.Second}
	}
	w := leaseView{}
	if blocked, _ := w.claimed("b", []leaseVersion{v("11", x.String())}, []netip.Addr{x}, t0); blocked[x] == "" {
		t.Fatalf("a's Lease listing %s does not block it", x)
	}
	w.saw(v("10", ""), t0.Add(100*time.Millisecond)) // the watch, behind the read
	w.saw(v("11", x.String()), t0.Add(200*time.Millisecond))
	if blocked, _ := w.claimed("b", []leaseVersion{v("11", x.String())}, []netip.Addr{x}, t0.Add(300*time.Millisecond)); blocked[x] == "" {
		t.Fatalf("after the watch delivered an older version, a's Lease listing %s no longer blocks it", x)
	}
	if s := w["kube-system/vipd-node-a"]; s.rv != "11" || !s.at.Equal(t0) {
		t.Fatalf("the view holds version %s seen at %s; want 11 seen at %s", s.rv, s.at, t0)
	}
}
