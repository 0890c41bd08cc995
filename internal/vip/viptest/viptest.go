// Package viptest has an in-memory vip.Kernel for unit tests.
package viptest

import (
	"net/netip"
	"sync"
	"time"

	"github.com/vipd/vipd/internal/vip"
)

// Kernel is an in-memory vip.Kernel: one host's addresses, each with its
// interface and valid lifetime.
type Kernel struct {
	mu    sync.Mutex
	addrs map[netip.Prefix]entry
}

type entry struct {
	iface string
	valid time.Duration
}

// New returns a Kernel with addresses already on interfaces (prefix -> interface).
func New(initial map[string]string) *Kernel {
	k := &Kernel{addrs: map[netip.Prefix]entry{}}
	for p, i := range initial {
		k.addrs[netip.MustParsePrefix(p)] = entry{iface: i}
	}
	return k
}

// Replace implements vip.Kernel.
func (k *Kernel) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.addrs[p] = entry{iface, valid}
	return nil
}

// Delete implements vip.Kernel.
func (k *Kernel) Delete(_ string, p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.addrs, p)
	return nil
}

// Find implements vip.Kernel.
func (k *Kernel) Find(a netip.Addr) ([]vip.Found, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []vip.Found
	for p, e := range k.addrs {
		if p.Addr() == a {
			out = append(out, vip.Found{Iface: e.iface, Prefix: p, Up: true, Valid: e.valid})
		}
	}
	return out, nil
}

// Has reports whether prefix (e.g. "198.51.100.200/32") is on any interface.
func (k *Kernel) Has(prefix string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.addrs[netip.MustParsePrefix(prefix)]
	return ok
}
