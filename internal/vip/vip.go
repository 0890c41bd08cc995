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
	// Valid is the remaining valid lifetime; 0 means forever.
	Valid time.Duration
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
func (a *Address) Hold(until time.Time) error {
	left := until.Sub(a.now()).Truncate(time.Second)
	if left < time.Second {
		if err := a.Remove(); err != nil {
			return err
		}
		return ErrFenced
	}
	if err := a.k.Replace(a.iface, a.prefix, left); err != nil {
		return fmt.Errorf("adding %s to %s: %w", a.prefix, a.iface, err)
	}
	// The process may have been frozen between reading the clock and the
	// syscall; if the deadline passed meanwhile, undo at once.
	if !a.now().Before(until) {
		if err := a.Remove(); err != nil {
			return err
		}
		return ErrFenced
	}
	return nil
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

// Sweep removes addr from every interface of the host, whatever its prefix
// length: what a previous vipd run may have left behind (invariant S4). It
// returns what it removed.
func Sweep(k Kernel, addr netip.Addr) ([]Found, error) {
	return sweep(k, addr, func(Found) bool { return true })
}

// SweepMarked removes only the copies of addr that carry vipd's mark, a
// finite lifetime on a full-length prefix, so an address the node owns
// itself (permanent, with its subnet) is never touched. It is the sweep for
// addresses that users name, such as Service VIPs.
func SweepMarked(k Kernel, addr netip.Addr) ([]Found, error) {
	return sweep(k, addr, func(f Found) bool { return f.Valid > 0 && f.Prefix.Bits() == addr.BitLen() })
}

func sweep(k Kernel, addr netip.Addr, ours func(Found) bool) ([]Found, error) {
	found, err := k.Find(addr)
	if err != nil {
		return nil, fmt.Errorf("looking for leftover %s: %w", addr, err)
	}
	var removed []Found
	var errs []error
	for _, f := range found {
		if !ours(f) {
			continue
		}
		if err := k.Delete(f.Iface, f.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("removing leftover %s from %s: %w", f.Prefix, f.Iface, err))
			continue
		}
		removed = append(removed, f)
	}
	return removed, errors.Join(errs...)
}
