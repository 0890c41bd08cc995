package vip

import (
	"errors"
	"net/netip"
	"sort"
	"testing"
	"time"
)

// fakeKernel records calls and lifetimes; onAdd runs inside Replace to
// simulate a freeze between reading the clock and the syscall.
type fakeKernel struct {
	addrs    map[string][]Found
	calls    []string
	onAdd    func()
	failFind error
}

func (k *fakeKernel) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	k.calls = append(k.calls, "replace "+iface+" "+p.String()+" "+valid.String())
	if k.onAdd != nil {
		k.onAdd()
	}
	_ = k.Delete(iface, p)
	k.calls = k.calls[:len(k.calls)-1]
	k.addrs[iface] = append(k.addrs[iface], Found{Iface: iface, Prefix: p, Up: true, Valid: valid, Deprecated: true})
	return nil
}

func (k *fakeKernel) Delete(iface string, p netip.Prefix) error {
	k.calls = append(k.calls, "delete "+iface+" "+p.String())
	var keep []Found
	for _, f := range k.addrs[iface] {
		if f.Prefix != p {
			keep = append(keep, f)
		}
	}
	k.addrs[iface] = keep
	return nil
}

func (k *fakeKernel) Find(a netip.Addr) ([]Found, error) {
	if k.failFind != nil {
		return nil, k.failFind
	}
	var out []Found
	for _, fs := range k.addrs {
		for _, f := range fs {
			if f.Prefix.Addr() == a {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

var vipPrefix = netip.MustParsePrefix("198.51.100.200/32")

func TestHoldRoundsLifetimeDownToWholeSeconds(t *testing.T) {
	now := time.Unix(100, 0)
	k := &fakeKernel{addrs: map[string][]Found{}}
	a := NewAddress(k, "eth0", vipPrefix, func() time.Time { return now })
	for _, tc := range []struct {
		left time.Duration
		want string
	}{
		{3 * time.Second, "replace eth0 198.51.100.200/32 3s"},
		{2999 * time.Millisecond, "replace eth0 198.51.100.200/32 2s"},
		{1000 * time.Millisecond, "replace eth0 198.51.100.200/32 1s"},
		{999 * time.Millisecond, "delete eth0 198.51.100.200/32"},
		{-time.Second, "delete eth0 198.51.100.200/32"},
	} {
		k.calls = nil
		err := a.Hold(now.Add(tc.left))
		if got := k.calls[0]; got != tc.want {
			t.Errorf("left %s: %q, want %q", tc.left, got, tc.want)
		}
		if fenced := errors.Is(err, ErrFenced); fenced != (tc.left < time.Second) {
			t.Errorf("left %s: err %v", tc.left, err)
		}
	}
}

func TestHoldUndoesAnAddThatLandedAfterTheDeadline(t *testing.T) {
	now := time.Unix(100, 0)
	k := &fakeKernel{addrs: map[string][]Found{}}
	// The process is frozen for 5 s between the clock read and the syscall.
	k.onAdd = func() { now = now.Add(5 * time.Second) }
	a := NewAddress(k, "eth0", vipPrefix, func() time.Time { return now })
	if err := a.Hold(now.Add(3 * time.Second)); !errors.Is(err, ErrFenced) {
		t.Fatalf("err %v, want ErrFenced", err)
	}
	if ok, _ := a.Present(); ok {
		t.Fatal("address left on the interface after the deadline")
	}
}

// TestHoldNeverOutlivesUntil: a stall inside the netlink call (shorter
// than the time left) must not let the kernel's lifetime, counted from the
// call, run past until; the lifetime is set again, shorter.
func TestHoldNeverOutlivesUntil(t *testing.T) {
	now := time.Unix(100, 0)
	k := &fakeKernel{addrs: map[string][]Found{}}
	stalled := false
	var lastAt time.Time
	var last time.Duration
	k.onAdd = func() {
		if !stalled {
			stalled = true
			now = now.Add(950 * time.Millisecond)
		}
		lastAt = now
	}
	a := NewAddress(k, "eth0", vipPrefix, func() time.Time { return now })
	until := now.Add(3 * time.Second)
	if err := a.Hold(until); err != nil {
		t.Fatalf("Hold: %v", err)
	}
	found, _ := k.Find(vipPrefix.Addr())
	if len(found) != 1 {
		t.Fatalf("found %v", found)
	}
	last = found[0].Valid
	if end := lastAt.Add(last); end.After(until) {
		t.Fatalf("address lives until %s, %s past the fence (calls %v)", end.Sub(time.Unix(100, 0)), end.Sub(until), k.calls)
	}
}

// TestSweepMarkedTouchesOnlyVipdsAddresses: vipd's mark is preferred 0, a
// finite valid lifetime and a full-length prefix. A node's /24, a DHCP
// /32 (finite, preferred), a permanent /32 (kube-vip, or a hosting
// provider's primary address) and a copy on another interface that is not
// marked all stay, and are reported as foreign.
func TestSweepMarkedTouchesOnlyVipdsAddresses(t *testing.T) {
	ip := vipPrefix.Addr()
	k := &fakeKernel{addrs: map[string][]Found{
		"eth0": {{Iface: "eth0", Prefix: netip.MustParsePrefix("198.51.100.200/24")}},
		"eth1": {{Iface: "eth1", Prefix: vipPrefix, Valid: 3 * time.Second, Deprecated: true}},
		"eth2": {{Iface: "eth2", Prefix: vipPrefix, Valid: 3600 * time.Second}},
		"eth3": {{Iface: "eth3", Prefix: vipPrefix}},
		// preferred 0 but permanent: someone's address, not vipd's
		"eth4": {{Iface: "eth4", Prefix: vipPrefix, Forever: true, Deprecated: true}},
		// vipd's, its lifetime just passed, not yet removed by the kernel
		"eth5": {{Iface: "eth5", Prefix: vipPrefix, Deprecated: true}},
	}}
	removed, foreign, err := SweepMarked(k, ip)
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(removed, func(i, j int) bool { return removed[i].Iface < removed[j].Iface })
	if len(removed) != 2 || removed[0].Iface != "eth1" || removed[1].Iface != "eth5" {
		t.Fatalf("removed %v, want the marked copies on eth1 and eth5", removed)
	}
	if len(foreign) != 4 {
		t.Fatalf("foreign %v, want the copies on eth0, eth2, eth3, eth4", foreign)
	}
	left, _ := k.Find(ip)
	if len(left) != 4 {
		t.Fatalf("left %v", left)
	}
	k.failFind = errors.New("netlink down")
	if _, _, err := SweepMarked(k, ip); err == nil {
		t.Fatal("error hidden")
	}
}
