// Package ipam allocates LoadBalancer addresses from pools. It is pure: no
// Kubernetes client, no clock, no I/O; the Services controller feeds it and
// writes what it decides.
//
// Pools use kube-vip-cloud-provider's ConfigMap format (ConfigMap
// kube-system/kubevip), so its users can switch without rewriting it:
//
//	cidr-global:      198.51.100.64/28,2001:db8::/124
//	range-global:     198.51.100.200-198.51.100.210
//	cidr-<namespace>: ...      (takes precedence over the global pool)
//	range-<namespace>: ...
//
// No address is ever given to two Services, unless both ask to share it
// with the same key and their ports do not collide.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// ConfigMapNamespace and ConfigMapName locate the pools, where
// kube-vip-cloud-provider keeps them.
const (
	ConfigMapNamespace = "kube-system"
	ConfigMapName      = "kubevip"
)

// Range is an inclusive range of addresses of one family.
type Range struct{ From, To netip.Addr }

// Contains reports whether ip is in the range.
func (r Range) Contains(ip netip.Addr) bool {
	return ip.BitLen() == r.From.BitLen() && r.From.Compare(ip) <= 0 && ip.Compare(r.To) <= 0
}

func (r Range) String() string {
	if r.From == r.To {
		return r.From.String()
	}
	return r.From.String() + "-" + r.To.String()
}

// Pool is a named set of ranges ("global" or a namespace).
type Pool struct {
	Name   string
	Ranges []Range
}

// Contains reports whether ip is in the pool.
func (p Pool) Contains(ip netip.Addr) bool {
	for _, r := range p.Ranges {
		if r.Contains(ip) {
			return true
		}
	}
	return false
}

// String lists the pool's ranges, e.g. "198.51.100.10-198.51.100.20, 2001:db8::/124".
func (p Pool) String() string { return rangesString(p.Ranges) }

// Pools are the configured pools.
type Pools struct {
	Global     *Pool
	Namespaces map[string]Pool
}

// For returns the pool a Service in namespace allocates from: its
// namespace's pool if there is one, else the global pool.
func (ps *Pools) For(namespace string) (Pool, bool) {
	if ps == nil {
		return Pool{}, false
	}
	if p, ok := ps.Namespaces[namespace]; ok {
		return p, true
	}
	if ps.Global != nil {
		return *ps.Global, true
	}
	return Pool{}, false
}

// ParsePools reads the data of the kubevip ConfigMap. Keys it does not know
// are ignored (kube-vip-cloud-provider has a few more); every malformed value
// is an error naming the key and the value.
func ParsePools(data map[string]string) (*Pools, error) {
	ps := &Pools{Namespaces: map[string]Pool{}}
	var errs []error
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		kind, name, ok := strings.Cut(key, "-")
		if !ok || (kind != "cidr" && kind != "range") || name == "" {
			continue
		}
		var ranges []Range
		for _, item := range strings.Split(data[key], ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			r, err := parseItem(kind, item)
			if err != nil {
				errs = append(errs, fmt.Errorf("ConfigMap kube-system/kubevip key %s: %q: %w", key, item, err))
				continue
			}
			ranges = append(ranges, r)
		}
		pool := ps.Namespaces[name]
		if name == "global" && ps.Global != nil {
			pool = *ps.Global
		}
		pool.Name = name
		pool.Ranges = append(pool.Ranges, ranges...)
		if name == "global" {
			ps.Global = &pool
		} else {
			ps.Namespaces[name] = pool
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ps, nil
}

func parseItem(kind, item string) (Range, error) {
	if kind == "cidr" {
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return Range{}, errors.New("not a CIDR: write it like 198.51.100.64/28")
		}
		p = p.Masked()
		from, to := p.Addr(), last(p)
		// IPv4 network and broadcast addresses are not usable by hosts.
		if from.Is4() && p.Bits() < 31 {
			from, to = from.Next(), to.Prev()
		}
		return Range{from, to}, nil
	}
	a, b, ok := strings.Cut(item, "-")
	if !ok {
		return Range{}, errors.New("not a range: write it like 198.51.100.200-198.51.100.210")
	}
	from, err1 := netip.ParseAddr(strings.TrimSpace(a))
	to, err2 := netip.ParseAddr(strings.TrimSpace(b))
	switch {
	case err1 != nil || err2 != nil:
		return Range{}, errors.New("not a range of two IP addresses: write it like 198.51.100.200-198.51.100.210")
	case from.BitLen() != to.BitLen():
		return Range{}, errors.New("mixes IPv4 and IPv6")
	case to.Less(from):
		return Range{}, errors.New("ends before it starts")
	}
	return Range{from.Unmap(), to.Unmap()}, nil
}

// last is the last address of a prefix.
func last(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// Port is a service port, for sharing checks.
type Port struct {
	Protocol string
	Port     int32
}

// Claim is what a Service asks of an address.
type Claim struct {
	// Service is namespace/name.
	Service string
	// ShareKey, when not empty, allows sharing the address with other
	// Services of the same key whose ports do not collide.
	ShareKey string
	Ports    []Port
}

// ErrExhausted means the pool has no free address left.
var ErrExhausted = errors.New("no free address left in the pool")

// InUseError names the Service that already has an address.
type InUseError struct {
	Addr netip.Addr
	By   []string
}

func (e *InUseError) Error() string {
	return fmt.Sprintf("%s is already used by %s (two Services may share an address only with the same share key and different ports)", e.Addr, strings.Join(e.By, ", "))
}

// Allocator tracks which Service uses which address.
type Allocator struct {
	pools *Pools
	used  map[netip.Addr][]Claim
	by    map[string]netip.Addr
}

// New returns an allocator over pools (which may be nil: only explicit
// addresses can then be assigned).
func New(pools *Pools) *Allocator {
	return &Allocator{pools: pools, used: map[netip.Addr][]Claim{}, by: map[string]netip.Addr{}}
}

// Assign gives ip to c.Service (an address the Service asked for, or one
// recorded in its annotation at start-up). It fails when another Service
// uses ip and sharing is not allowed.
func (a *Allocator) Assign(c Claim, ip netip.Addr) error {
	ip = ip.Unmap()
	if cur, ok := a.by[c.Service]; ok && cur == ip {
		a.replace(c, ip)
		return nil
	}
	if err := a.compatible(c, ip); err != nil {
		return err
	}
	a.Release(c.Service)
	a.used[ip] = append(a.used[ip], c)
	a.by[c.Service] = ip
	return nil
}

// replace updates the claim of a Service that keeps its address.
func (a *Allocator) replace(c Claim, ip netip.Addr) {
	for i, o := range a.used[ip] {
		if o.Service == c.Service {
			a.used[ip][i] = c
		}
	}
}

func (a *Allocator) compatible(c Claim, ip netip.Addr) error {
	var others []string
	for _, o := range a.used[ip] {
		if o.Service == c.Service {
			continue
		}
		if c.ShareKey == "" || o.ShareKey != c.ShareKey || collide(c.Ports, o.Ports) {
			others = append(others, o.Service)
		}
	}
	if len(others) > 0 {
		return &InUseError{Addr: ip, By: others}
	}
	return nil
}

func collide(a, b []Port) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// Allocate gives c.Service an address from the pool of namespace, of the
// given family (4 or 6): the address it already has if that is still valid,
// else one shared under its key if possible, else the lowest free one.
func (a *Allocator) Allocate(c Claim, namespace string, family int) (netip.Addr, error) {
	pool, ok := a.pools.For(namespace)
	if !ok {
		return netip.Addr{}, fmt.Errorf("no address pool for namespace %s and no global pool: add cidr-global or range-global (or cidr-%s) to ConfigMap kube-system/kubevip", namespace, namespace)
	}
	if cur, ok := a.by[c.Service]; ok && pool.Contains(cur) && bits(family) == cur.BitLen() {
		a.replace(c, cur)
		return cur, nil
	}
	if c.ShareKey != "" {
		var shared []netip.Addr
		for ip := range a.used {
			if pool.Contains(ip) && ip.BitLen() == bits(family) && a.compatible(c, ip) == nil {
				shared = append(shared, ip)
			}
		}
		if len(shared) > 0 {
			sort.Slice(shared, func(i, j int) bool { return shared[i].Less(shared[j]) })
			return shared[0], a.Assign(c, shared[0])
		}
	}
	for _, r := range pool.Ranges {
		if r.From.BitLen() != bits(family) {
			continue
		}
		for ip := r.From; ip.IsValid() && r.Contains(ip); ip = ip.Next() {
			if len(a.used[ip]) == 0 {
				return ip, a.Assign(c, ip)
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("pool %q (%s): %w", pool.Name, pool, ErrExhausted)
}

func bits(family int) int {
	if family == 6 {
		return 128
	}
	return 32
}

func rangesString(rs []Range) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.String())
	}
	return strings.Join(s, ", ")
}

// Release frees the address of service.
func (a *Allocator) Release(service string) {
	ip, ok := a.by[service]
	if !ok {
		return
	}
	delete(a.by, service)
	claims := a.used[ip][:0]
	for _, c := range a.used[ip] {
		if c.Service != service {
			claims = append(claims, c)
		}
	}
	if len(claims) == 0 {
		delete(a.used, ip)
	} else {
		a.used[ip] = claims
	}
}

// InPools reports whether ip is in any pool. An address a Service asks for
// explicitly must be: one outside every pool is refused as bad input.
func (a *Allocator) InPools(ip netip.Addr) bool {
	if a.pools == nil {
		return false
	}
	if a.pools.Global != nil && a.pools.Global.Contains(ip) {
		return true
	}
	for _, p := range a.pools.Namespaces {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
