package vip

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// fakeKernel records calls; now is advanced by Replace to simulate a freeze
// between reading the clock and the syscall.
type fakeKernel struct {
	addrs    map[string][]netip.Prefix
	calls    []string
	onAdd    func()
	failFind error
}

func (k *fakeKernel) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	k.calls = append(k.calls, "replace "+iface+" "+p.String()+" "+valid.String())
	if k.onAdd != nil {
		k.onAdd()
	}
	for _, q := range k.addrs[iface] {
		if q == p {
			return nil
		}
	}
	k.addrs[iface] = append(k.addrs[iface], p)
	return nil
}

func (k *fakeKernel) Delete(iface string, p netip.Prefix) error {
	k.calls = append(k.calls, "delete "+iface+" "+p.String())
	var keep []netip.Prefix
	for _, q := range k.addrs[iface] {
		if q != p {
			keep = append(keep, q)
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
	for iface, ps := range k.addrs {
		for _, p := range ps {
			if p.Addr() == a {
				out = append(out, Found{Iface: iface, Prefix: p, Up: true})
			}
		}
	}
	return out, nil
}

var vipPrefix = netip.MustParsePrefix("198.51.100.200/32")

func TestHoldRoundsLifetimeDownToWholeSeconds(t *testing.T) {
	now := time.Unix(100, 0)
	k := &fakeKernel{addrs: map[string][]netip.Prefix{}}
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
	k := &fakeKernel{addrs: map[string][]netip.Prefix{}}
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

func TestSweepRemovesEveryCopy(t *testing.T) {
	k := &fakeKernel{addrs: map[string][]netip.Prefix{
		"eth0": {netip.MustParsePrefix("198.51.100.11/24"), vipPrefix},
		"eth1": {netip.MustParsePrefix("198.51.100.200/24")},
	}}
	found, err := Sweep(k, vipPrefix.Addr())
	if err != nil || len(found) != 2 {
		t.Fatalf("Sweep: %v %v", found, err)
	}
	if left, _ := k.Find(vipPrefix.Addr()); len(left) != 0 {
		t.Fatalf("left: %v", left)
	}
	if !reflect.DeepEqual(k.addrs["eth0"], []netip.Prefix{netip.MustParsePrefix("198.51.100.11/24")}) {
		t.Fatalf("node address touched: %v", k.addrs["eth0"])
	}
	k.failFind = errors.New("netlink down")
	if _, err := Sweep(k, vipPrefix.Addr()); err == nil {
		t.Fatal("error hidden")
	}
}
