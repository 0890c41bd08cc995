// Package viptest has an in-memory vip.Kernel for unit tests.
package viptest

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vipd/vipd/internal/vip"
)

// Kernel is an in-memory vip.Kernel: one host's addresses, each on its
// interface with its lifetimes, as netlink reports them.
type Kernel struct {
	mu    sync.Mutex
	addrs map[slot]entry
}

type slot struct {
	iface  string
	prefix netip.Prefix
}

type entry struct {
	valid      time.Duration // 0: forever
	deprecated bool
}

// New returns a Kernel with permanent addresses already on interfaces
// (prefix -> interface), as a node's own addresses are.
func New(initial map[string]string) *Kernel {
	k := &Kernel{addrs: map[slot]entry{}}
	for p, i := range initial {
		k.Put(i, p, 0, false)
	}
	return k
}

// Put adds prefix to iface with the given valid lifetime (0: forever) and
// preferred lifetime 0 when deprecated: an address someone else added.
func (k *Kernel) Put(iface, prefix string, valid time.Duration, deprecated bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addrs[slot{iface, netip.MustParsePrefix(prefix)}] = entry{valid, deprecated}
}

// Replace implements vip.Kernel, as vipd's netlink does: preferred 0.
func (k *Kernel) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addrs[slot{iface, p}] = entry{valid, true}
	return nil
}

// Delete implements vip.Kernel: only the address on that interface.
func (k *Kernel) Delete(iface string, p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.addrs, slot{iface, p})
	return nil
}

// Find implements vip.Kernel.
func (k *Kernel) Find(a netip.Addr) ([]vip.Found, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []vip.Found
	for s, e := range k.addrs {
		if s.prefix.Addr() == a {
			out = append(out, vip.Found{Iface: s.iface, Prefix: s.prefix, Up: true, Forever: e.valid == 0, Valid: e.valid, Deprecated: e.deprecated})
		}
	}
	return out, nil
}

// Has reports whether prefix (e.g. "198.51.100.200/32") is on any interface.
func (k *Kernel) Has(prefix string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	p := netip.MustParsePrefix(prefix)
	for s := range k.addrs {
		if s.prefix == p {
			return true
		}
	}
	return false
}
