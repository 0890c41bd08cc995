package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Netlink is the Kernel of the host (or of the network namespace the process
// runs in), through rtnetlink.
type Netlink struct {
	// H is the netlink handle; nil means the current network namespace,
	// with a new socket per call.
	H *netlink.Handle
	// links caches interfaces by name (see NewNetlink); nil: no cache.
	links *sync.Map
}

// NewNetlink returns a Kernel with one netlink socket kept open and the
// interfaces cached, for a daemon that refreshes many addresses every
// second (every Service VIP after every renewal).
func NewNetlink() (Netlink, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return Netlink{}, fmt.Errorf("opening a netlink socket: %w", err)
	}
	return Netlink{H: h, links: &sync.Map{}}, nil
}

func (n Netlink) h() *netlink.Handle {
	if n.H != nil {
		return n.H
	}
	return &netlink.Handle{}
}

func (n Netlink) link(iface string) (netlink.Link, error) {
	if n.links != nil {
		if l, ok := n.links.Load(iface); ok {
			return l.(netlink.Link), nil
		}
	}
	l, err := n.h().LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	if n.links != nil {
		n.links.Store(iface, l)
	}
	return l, nil
}

// retry runs op on the cached interface; if that fails, the interface may
// have been recreated with a new index: look it up again and retry once.
func (n Netlink) retry(iface string, op func(netlink.Link) error) error {
	l, err := n.link(iface)
	if err != nil {
		return err
	}
	err = op(l)
	if err == nil || n.links == nil {
		return err
	}
	n.links.Delete(iface)
	if l, lerr := n.link(iface); lerr == nil {
		return op(l)
	}
	return err
}

func toAddr(p netip.Prefix) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
}

// Replace implements Kernel.
func (n Netlink) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	a := toAddr(p)
	a.ValidLft = int(valid / time.Second)
	a.PreferedLft = 0
	if p.Addr().Is6() {
		// Duplicate address detection would keep the VIP tentative (unusable)
		// for a second after every takeover; the Lease already makes it unique.
		a.Flags = unix.IFA_F_NODAD
	}
	return n.retry(iface, func(l netlink.Link) error { return n.h().AddrReplace(l, a) })
}

// Delete implements Kernel.
func (n Netlink) Delete(iface string, p netip.Prefix) error {
	return n.retry(iface, func(l netlink.Link) error {
		err := n.h().AddrDel(l, toAddr(p))
		if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	})
}

// Find implements Kernel.
func (n Netlink) Find(addr netip.Addr) ([]Found, error) {
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	links, err := dump(n.h().LinkList)
	if err != nil {
		return nil, err
	}
	var out []Found
	for _, l := range links {
		addrs, err := dump(func() ([]netlink.Addr, error) { return n.h().AddrList(l, fam) })
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || ip.Unmap() != addr {
				continue
			}
			out = append(out, found(l, ip, a))
		}
	}
	return out, nil
}

// Neighbourhood lists iface's own addresses with their prefixes, leaving
// out vipd's (Found.Marked), and the gateways of the routes through iface:
// addresses that are never a Service VIP.
func (n Netlink) Neighbourhood(iface string) (prefixes []netip.Prefix, gateways []netip.Addr, err error) {
	l, err := n.h().LinkByName(iface)
	if err != nil {
		return nil, nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	addrs, err := dump(func() ([]netlink.Addr, error) { return n.h().AddrList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, nil, err
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		if f := found(l, ip, a); !f.Marked() {
			prefixes = append(prefixes, f.Prefix)
		}
	}
	routes, err := dump(func() ([]netlink.Route, error) { return n.h().RouteList(l, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, nil, err
	}
	for _, r := range routes {
		if gw, ok := netip.AddrFromSlice(r.Gw); ok && r.Gw != nil {
			gateways = append(gateways, gw.Unmap())
		}
	}
	return prefixes, gateways, nil
}

// found describes address a (IP ip) on link l, with its lifetimes.
func found(l netlink.Link, ip netip.Addr, a netlink.Addr) Found {
	bits, _ := a.Mask.Size()
	f := Found{
		Iface:      l.Attrs().Name,
		Prefix:     netip.PrefixFrom(ip.Unmap(), bits),
		Up:         l.Attrs().Flags&net.FlagUp != 0,
		Deprecated: a.PreferedLft == 0 || a.Flags&unix.IFA_F_DEPRECATED != 0,
	}
	// A permanent address reports the infinite lifetime and the flag;
	// an expired one that the kernel has not removed yet reports 0 left.
	f.Forever = uint32(a.ValidLft) == 0xffffffff || a.Flags&unix.IFA_F_PERMANENT != 0
	if !f.Forever && a.ValidLft > 0 {
		f.Valid = time.Duration(a.ValidLft) * time.Second
	}
	return f
}

// Interfaces lists the host's interfaces with their prefixes, for validation.
func (n Netlink) Interfaces() ([]Iface, error) {
	links, err := dump(n.h().LinkList)
	if err != nil {
		return nil, err
	}
	var out []Iface
	for _, l := range links {
		i := Iface{Name: l.Attrs().Name}
		addrs, err := dump(func() ([]netlink.Addr, error) { return n.h().AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			bits, _ := a.Mask.Size()
			i.Prefixes = append(i.Prefixes, netip.PrefixFrom(ip.Unmap(), bits).Masked())
		}
		out = append(out, i)
	}
	return out, nil
}

// Iface is an interface name with its (masked) prefixes.
type Iface struct {
	Name     string
	Prefixes []netip.Prefix
}

// dumpTries bounds the retries of a dump the kernel interrupted.
const dumpTries = 5

// dump runs a netlink dump again when the kernel reports it interrupted
// (the list changed while it was read; netlink.ErrDumpInterrupted, whose
// results may be incomplete), as happens on a node where thousands of
// addresses are added, refreshed and expire: an incomplete list could
// miss an address vipd must see (a leftover to sweep, a node address).
func dump[T any](list func() ([]T, error)) ([]T, error) {
	var out []T
	var err error
	for range dumpTries {
		if out, err = list(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, fmt.Errorf("the kernel interrupted %d dumps in a row: %w", dumpTries, err)
}
