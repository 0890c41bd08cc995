// Package vip puts a virtual IP on a network interface and takes it off again.
//
// The address is always added with a preferred lifetime of 0 (so the kernel
// marks it deprecated and never picks it as a source address) and a finite
// valid lifetime. The lifetime is the fence of invariant S2: it ends at the
// holder's renew deadline, so if vipd dies or freezes the kernel removes the
// address on its own, before another node can take the Lease.
//
// The kernel removes an expired address up to about one second late; the
// configuration rule "lease duration >= renew deadline + 2 s"
// (election.FenceMargin) covers that.
package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Kernel is the netlink seam: the few address operations vipd needs.
type Kernel interface {
	// Replace adds prefix to iface, or refreshes it, with preferred lifetime 0
	// and the given valid lifetime (whole seconds, at least 1).
	Replace(iface string, prefix netip.Prefix, valid time.Duration) error
	// Delete removes prefix from iface; absent is not an error.
	Delete(iface string, prefix netip.Prefix) error
	// Find lists the interfaces that carry addr, with any prefix length.
	Find(addr netip.Addr) ([]Found, error)
}

// Found is one address found on one interface.
type Found struct {
	Iface  string
	Prefix netip.Prefix
	Up     bool
	// Forever: the address has no valid lifetime (a permanent address).
	// Otherwise Valid is what is left of it: 0 once it has passed, until
	// the kernel gets round to removing the address (up to a second or so).
	Forever bool
	Valid   time.Duration
	// Deprecated is true when the preferred lifetime is 0, as vipd sets it
	// (the kernel then never picks the address as a source).
	Deprecated bool
}

// ErrFenced is returned by Hold when the deadline leaves less than one second
// of lifetime: the address is removed instead of added.
var ErrFenced = errors.New("fence deadline reached: VIP removed")

// Address is one VIP on one interface.
type Address struct {
	k      Kernel
	iface  string
	prefix netip.Prefix
	now    func() time.Time
}

// NewAddress returns the VIP prefix on iface. now is the monotonic clock
// (time.Now in production).
func NewAddress(k Kernel, iface string, prefix netip.Prefix, now func() time.Time) *Address {
	return &Address{k: k, iface: iface, prefix: prefix, now: now}
}

// Prefix is the address as it goes on the interface.
func (a *Address) Prefix() netip.Prefix { return a.prefix }

// Interface is the link that carries the VIP.
func (a *Address) Interface() string { return a.iface }

// Hold puts the address on the interface, or refreshes it, so that it lives
// no longer than until (a monotonic instant). The lifetime is rounded down to
// whole seconds, the kernel's granularity. With less than a second left the
// address is removed and ErrFenced returned.
//
// The kernel counts the lifetime from when it handles the call, not from
// when vipd read its clock: a stall in between (a freeze, CPU throttling,
// reclaim) would let the address outlive until by the stall. So after each
// call the lifetime is checked against the clock read after it, and set
// again, shorter, until now + lifetime <= until holds.
func (a *Address) Hold(until time.Time) error {
	for range 3 {
		left := until.Sub(a.now()).Truncate(time.Second)
		if left < time.Second {
			break
		}
		if err := a.k.Replace(a.iface, a.prefix, left); err != nil {
			return fmt.Errorf("adding %s to %s: %w", a.prefix, a.iface, err)
		}
		if !a.now().Add(left).After(until) {
			return nil
		}
	}
	if err := a.Remove(); err != nil {
		return err
	}
	return ErrFenced
}

// Remove takes the address off the interface; absent is not an error.
func (a *Address) Remove() error {
	if err := a.k.Delete(a.iface, a.prefix); err != nil {
		return fmt.Errorf("removing %s from %s: %w", a.prefix, a.iface, err)
	}
	return nil
}

// Present reports whether the address is on the interface now.
func (a *Address) Present() (bool, error) {
	found, err := a.k.Find(a.prefix.Addr())
	if err != nil {
		return false, err
	}
	for _, f := range found {
		if f.Iface == a.iface {
			return true, nil
		}
	}
	return false, nil
}

// Marked reports whether f carries vipd's mark: preferred lifetime 0
// (deprecated), a finite valid lifetime (also one that has just passed)
// and a full-length prefix. A node's own address has its subnet's prefix
// or a preferred lifetime (DHCP's /32 and DHCPv6's /128 too), and
// kube-vip's VIPs are permanent.
func (f Found) Marked() bool {
	return f.Deprecated && !f.Forever && f.Prefix.Bits() == f.Prefix.Addr().BitLen()
}

// SweepMarked removes the copies of addr that carry vipd's mark (Marked):
// what a previous vipd run may have left behind (invariant S4). Nothing
// else is touched. It returns what it removed, and what it left: copies of
// addr that are not vipd's.
func SweepMarked(k Kernel, addr netip.Addr) (removed, foreign []Found, err error) {
	found, err := k.Find(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("looking for leftover %s: %w", addr, err)
	}
	var errs []error
	for _, f := range found {
		if !f.Marked() {
			foreign = append(foreign, f)
			continue
		}
		if err := k.Delete(f.Iface, f.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("removing leftover %s from %s: %w", f.Prefix, f.Iface, err))
			continue
		}
		removed = append(removed, f)
	}
	return removed, foreign, errors.Join(errs...)
}
