package vip

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/election"
)

// inFreshNetns runs the test on a locked thread in a new network namespace
// with a veth interface "vip0" (dummy links are not built into every kernel) (address 198.51.100.11/24), as
// vishvananda/netlink's own tests do.
func inFreshNetns(t *testing.T) Netlink {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("VIPD_E2E") == "1" {
			t.Fatal("VIPD_E2E=1 but not root")
		}
		t.Skip("needs root")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		netns.Set(orig)
		orig.Close()
		runtime.UnlockOSThread()
	})
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vip0"}, PeerName: "vip1"}); err != nil {
		t.Fatal(err)
	}
	l, _ := h.LinkByName("vip0")
	a, _ := netlink.ParseAddr("198.51.100.11/24")
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return Netlink{H: h}
}

func TestNetlinkAddressIsDeprecatedWithFiniteLifetime(t *testing.T) {
	k := inFreshNetns(t)
	now := time.Now
	a := NewAddress(k, "vip0", vipPrefix, now)
	if err := a.Hold(now().Add(3500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	l, _ := k.H.LinkByName("vip0")
	addrs, err := k.H.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var got *netlink.Addr
	for i := range addrs {
		if addrs[i].IP.String() == "198.51.100.200" {
			got = &addrs[i]
		}
	}
	if got == nil {
		t.Fatalf("VIP not added: %v", addrs)
	}
	if got.Flags&unix.IFA_F_DEPRECATED == 0 || got.PreferedLft != 0 || got.ValidLft != 3 {
		t.Fatalf("flags %#x preferred %d valid %d: want deprecated, 0, 3", got.Flags, got.PreferedLft, got.ValidLft)
	}
	// Found reports it with its lifetime; the interface lookup lists vip0.
	f, err := k.Find(vipPrefix.Addr())
	if err != nil || len(f) != 1 || f[0].Iface != "vip0" || !f[0].Up || f[0].Valid != 3*time.Second {
		t.Fatalf("Find: %+v %v", f, err)
	}
	ifs, err := k.Interfaces()
	if err != nil || len(ifs) < 2 {
		t.Fatalf("Interfaces: %v %v", ifs, err)
	}
	if err := a.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(); err != nil {
		t.Fatalf("removing an absent VIP: %v", err)
	}
	if ok, _ := a.Present(); ok {
		t.Fatal("still present")
	}
}

// TestNetlinkKernelExpiresTheAddress: an address held with a 1 s lifetime
// carries vipd's mark, is there while its lifetime runs, and the kernel
// removes it by itself within the margin the timing rule allows
// (election.FenceMargin: lease duration >= renew deadline + 2 s). A kernel
// later than that would break the fence argument, so this test fails then.
func TestNetlinkKernelExpiresTheAddress(t *testing.T) {
	k := inFreshNetns(t)
	a := NewAddress(k, "vip0", vipPrefix, time.Now)
	start := time.Now()
	if err := a.Hold(start.Add(1500 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	found, err := k.Find(vipPrefix.Addr())
	if err != nil || len(found) != 1 || !found[0].Marked() || found[0].Valid != time.Second {
		t.Fatalf("after Hold: %+v (%v), want one marked copy with a 1 s lifetime", found, err)
	}
	margin := election.FenceMargin
	for {
		ok, err := a.Present()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Since(start) > time.Second+margin {
			t.Fatalf("the kernel has not removed the VIP %s after its 1 s lifetime ended", time.Since(start)-time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	gone := time.Since(start)
	if gone < 900*time.Millisecond {
		t.Fatalf("the VIP was gone after %s, before its 1 s lifetime ended", gone)
	}
	t.Logf("removed by the kernel %s after its lifetime ended", gone-time.Second)
}

func TestNetlinkCachedInterfaceRecreated(t *testing.T) {
	k := inFreshNetns(t)
	k.links = &sync.Map{}
	p := netip.MustParsePrefix("198.51.100.200/32")
	if err := k.Replace("vip0", p, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	old, _ := k.H.LinkByName("vip0")
	// The interface is deleted and created again: a new index behind the cached name.
	if err := k.H.LinkDel(old); err != nil {
		t.Fatal(err)
	}
	if err := k.H.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vip0"}, PeerName: "vip1"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := k.H.LinkByName("vip0"); l.Attrs().Index == old.Attrs().Index {
		t.Fatalf("the kernel reused index %d: the test needs a new one", old.Attrs().Index)
	}
	if err := k.Replace("vip0", p, 3*time.Second); err != nil {
		t.Fatalf("Replace after the interface was recreated: %v", err)
	}
	found, err := k.Find(p.Addr())
	if err != nil || len(found) != 1 || found[0].Iface != "vip0" {
		t.Fatalf("found %+v (%v), want the VIP on the new vip0", found, err)
	}
}

// TestNetlinkNeighbourhood: the interface's own addresses (not vipd's
// marked VIPs) with their prefixes, and the gateways of its routes.
func TestNetlinkNeighbourhood(t *testing.T) {
	k := inFreshNetns(t)
	l, err := k.H.LinkByName("vip0")
	if err != nil {
		t.Fatal(err)
	}
	own := netip.MustParsePrefix("198.51.100.11/24")                    // inFreshNetns put it there
	if err := k.Replace("vip0", vipPrefix, 3*time.Second); err != nil { // vipd's: left out
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("203.0.113.0/24")
	if err := k.H.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Gw: net.ParseIP("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	prefixes, gateways, err := k.Neighbourhood("vip0")
	if err != nil {
		t.Fatal(err)
	}
	if len(prefixes) != 1 || prefixes[0] != own {
		t.Errorf("prefixes %v, want only %s (not vipd's %s)", prefixes, own, vipPrefix)
	}
	if len(gateways) != 1 || gateways[0] != netip.MustParseAddr("198.51.100.1") {
		t.Errorf("gateways %v, want 198.51.100.1", gateways)
	}
}

// An address whose valid lifetime has just passed (0 left, the kernel has
// not removed it yet) still carries vipd's mark: it is vipd's VIP, not a
// node's address (Neighbourhood would otherwise count it as one, and a
// Service asking for it would be refused). A permanent address is never
// marked, whether the kernel says so by the infinite lifetime or the flag.
func TestFoundTellsExpiredFromPermanent(t *testing.T) {
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vip0"}}
	ip := netip.MustParseAddr("198.51.100.12")
	addr := func(preferred, valid, flags int) netlink.Addr {
		return netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}, PreferedLft: preferred, ValidLft: valid, Flags: flags}
	}
	for _, c := range []struct {
		name   string
		a      netlink.Addr
		marked bool
	}{
		{"vipd's, 2 s left", addr(0, 2, 0), true},
		{"vipd's, its lifetime just passed", addr(0, 0, 0), true},
		{"permanent, preferred 0", addr(0, 0xffffffff, 0), false},
		{"permanent by its flag", addr(0, 0, unix.IFA_F_PERMANENT), false},
		{"DHCP's /32", addr(1800, 3600, 0), false},
	} {
		if f := found(l, ip, c.a); f.Marked() != c.marked {
			t.Errorf("%s: %+v marked %v, want %v", c.name, f, f.Marked(), c.marked)
		}
	}
}
