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
	w.saw(v("10"), t0)                                                                                                   // the watch: a renewal
	w.saw(v("11"), t0.Add(time.Second))                                                                                  // the watch: a's last renewal
	blocked, _, _ := w.claimed(self{name: "b"}, []leaseVersion{v("10")}, []netip.Addr{x}, t0.Add(1100*time.Millisecond)) // the read raced it
	if blocked[x] == "" {
		t.Fatalf("a's live Lease does not block %s", x)
	}
	if s := w["kube-system/vipd-node-a"]; s.rv != "11" || !s.at.Equal(t0.Add(time.Second)) {
		t.Fatalf("after a stale read the view holds version %s seen at %s; want 11 seen at %s", s.rv, s.at, t0.Add(time.Second))
	}
	// a is dead: one lease duration after its last renewal was seen, the
	// address is free.
	if blocked, _, _ := w.claimed(self{name: "b"}, []leaseVersion{v("11")}, []netip.Addr{x}, t0.Add(6*time.Second)); blocked[x] != "" {
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
	if blocked, _, _ := w.claimed(self{name: "b"}, []leaseVersion{v("13")}, []netip.Addr{x}, t0.Add(13*time.Second)); blocked[x] == "" {
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
		blocked, listed, _ := w.claimed(self{name: "b"}, nil, []netip.Addr{x}, t0.Add(at))
		if blocked[x] != "ns/a (held by a)" || !listed[x] {
			t.Fatalf("at %s: blocked %q listed %t; want ns/a (held by a)", at, blocked[x], listed[x])
		}
	}
	if blocked, _, _ := w.claimed(self{name: "b"}, nil, []netip.Addr{x}, t0.Add(6*time.Second+time.Millisecond)); blocked[x] != "" {
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
	if blocked, _, _ := w.claimed(self{name: "b"}, []leaseVersion{v("11", x.String())}, []netip.Addr{x}, t0); blocked[x] == "" {
		t.Fatalf("a's Lease listing %s does not block it", x)
	}
	w.saw(v("10", ""), t0.Add(100*time.Millisecond)) // the watch, behind the read
	w.saw(v("11", x.String()), t0.Add(200*time.Millisecond))
	if blocked, _, _ := w.claimed(self{name: "b"}, []leaseVersion{v("11", x.String())}, []netip.Addr{x}, t0.Add(300*time.Millisecond)); blocked[x] == "" {
		t.Fatalf("after the watch delivered an older version, a's Lease listing %s no longer blocks it", x)
	}
	if s := w["kube-system/vipd-node-a"]; s.rv != "11" || !s.at.Equal(t0) {
		t.Fatalf("the view holds version %s seen at %s; want 11 seen at %s", s.rv, s.at, t0)
	}
}

// letGo: a blocked address is let go once every Lease that blocked it has
// a newer version in the view that no longer lists it (or no holder); not
// on the version that blocked, not on an older one, not while another
// blocking Lease still lists it, never for a Lease the read missed.
func TestLeaseViewLetGo(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	x := netip.MustParseAddr("198.51.100.10")
	v := func(key, rv, holder, holds string) leaseVersion {
		return leaseVersion{key: key, rv: rv, holder: holder, holds: holds, dur: 4 * time.Second}
	}
	w := leaseView{}
	w.saw(v("ns/a", "9", "a", ""), t0) // the watch, before a listed x
	blocked, _, by := w.claimed(self{name: "me"}, []leaseVersion{v("ns/a", "10", "a", x.String()), v("ns/b", "11", "b", x.String())}, []netip.Addr{x}, t0)
	if blocked[x] == "" || len(by[x]) != 2 || by[x]["ns/a"] != "10" || by[x]["ns/b"] != "11" {
		t.Fatalf("blocked %v by %v; want blocked by ns/a at 10 and ns/b at 11", blocked, by)
	}
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go on the versions that blocked")
	}
	w.saw(v("ns/a", "9", "a", ""), t0.Add(100*time.Millisecond)) // a lagging watch
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go on an older version of a that did not list x yet")
	}
	w.saw(v("ns/a", "12", "a", ""), t0.Add(200*time.Millisecond))
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go while b still lists x")
	}
	w.saw(v("ns/b", "13", "b", x.String()), t0.Add(300*time.Millisecond)) // a renewal
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go on b's renewal that still lists x")
	}
	w.saw(v("ns/b", "14", "", x.String()), t0.Add(400*time.Millisecond)) // released
	if !w.letGo(x, by[x], t0) {
		t.Fatal("not let go after a stopped listing x and b released its Lease")
	}
	// A Lease the read missed (deleted) is never let go by the watch.
	w = leaseView{}
	w.saw(v("ns/a", "10", "a", x.String()), t0)
	_, _, by = w.claimed(self{name: "me"}, nil, []netip.Addr{x}, t0.Add(time.Second))
	if by[x]["ns/a"] != "" || len(by[x]) != 1 {
		t.Fatalf("by %v; want ns/a with no version", by)
	}
	w.saw(v("ns/a", "15", "a", ""), t0.Add(2*time.Second))
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go of a Lease the read missed")
	}
	if w.letGo(x, nil, t0) {
		t.Fatal("let go with no blocking Lease")
	}
	// Versions that do not compare (not integers) never let go: which one
	// is newer cannot be told.
	w = leaseView{}
	_, _, by = w.claimed(self{name: "me"}, []leaseVersion{v("ns/a", "v1", "a", x.String())}, []netip.Addr{x}, t0)
	w.saw(v("ns/a", "v0", "a", ""), t0.Add(time.Second))
	if w.letGo(x, by[x], t0) {
		t.Fatal("let go on a version that does not compare")
	}
}
