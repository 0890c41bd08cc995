package services

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipd/vipd/internal/ipam"
)

// More annotations. Names under vipd.io are vipd's own; kube-vip.io/vipHost
// is kube-vip's, so tools that read it keep working.
const (
	// AnnotationShare lets Services with the same value share one address
	// when their ports do not collide (MetalLB's allow-shared-ip, in vipd's name).
	AnnotationShare = "vipd.io/allow-shared-ip"
	// AnnotationAllocated marks an address vipd took from a pool and wrote
	// into AnnotationIPs; its value is the pool's name.
	AnnotationAllocated = "vipd.io/allocated-from"
	// AnnotationHost names the node that owns the Service's VIP now.
	AnnotationHost = "kube-vip.io/vipHost"
)

// Problem is bad input on one Service: nothing is announced for it.
type Problem struct {
	Reason  string
	Message string
}

// Entry is the plan for one Service.
type Entry struct {
	Key string
	Svc *corev1.Service
	// Addrs are the Service's addresses, valid and not in conflict. Empty
	// with no Problem means: waiting for an allocation.
	Addrs []netip.Addr
	// Allocated are addresses this plan took from a pool; they must be
	// written to the Service before anyone announces them.
	Allocated []netip.Addr
	Pool      string
	// Local is externalTrafficPolicy: Local.
	Local   bool
	Problem *Problem
	// Warning is something to tell the user about a Service that is
	// served all the same (an address outside the interface's subnets).
	Warning *Problem
}

// Input is what a plan is made from; every node makes the same plan from
// the same input, so the ones that do not allocate agree with the one that does.
type Input struct {
	// Services are vipd's Services (already filtered by class).
	Services []*corev1.Service
	// Pools may be nil: no ConfigMap, so only explicit addresses.
	Pools *ipam.Pools
	// PoolsOnly (svc_pools_only) accepts only addresses inside a pool the
	// Service's namespace may use. Off, a Service may ask for any address
	// outside the pools (kube-vip's behaviour), except Others and Reserved.
	PoolsOnly bool
	// Reserved is the control-plane VIP, never given to a Service.
	Reserved netip.Addr
	// Allocate: this node is the allocator and may take pool addresses.
	Allocate bool
	// Peek (without Allocate): plan the allocation of the Services that
	// wait for one only until the first that would get an address (its
	// Entry.Allocated says so; the others after it stay waiting): enough
	// for a node that is not the allocator to know that there is work for
	// one, at the cost of one allocation, not one per Service.
	Peek bool
	// Others are addresses that belong to someone else, with whose they
	// are (nodes, the API server, the subnet's network and broadcast
	// addresses, the gateway): never a Service VIP, whatever it asks or
	// the pools say (S7).
	Others map[netip.Addr]string
	// Subnets are the prefixes of the interface that carries Service VIPs;
	// an address outside all of them is served with a warning. Empty: unknown.
	Subnets []netip.Prefix
	// Unconfirmed are allocations this node wrote that the cache does not
	// show yet (Service key -> addresses). They count as the Services'
	// requests, so a Service planned before its cache catches up (created
	// in the same second with a smaller name) is not given the same address.
	Unconfirmed map[string][]netip.Addr
}

// Plan decides every Service's addresses. Explicit requests are honoured
// first, oldest Service first, so a pool allocation never takes an address a
// Service asked for; then Services without a request get pool addresses.
func Plan(in Input) []*Entry {
	svcs := append([]*corev1.Service(nil), in.Services...)
	sort.Slice(svcs, func(i, j int) bool {
		a, b := svcs[i], svcs[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return key(a) < key(b)
	})
	alloc := ipam.New(in.Pools)
	if in.Reserved.IsValid() {
		// Never allocated; asking for it is refused in assign.
		_ = alloc.Assign(ipam.Claim{Service: "the control-plane VIP"}, in.Reserved)
	}
	for ip, who := range in.Others {
		_ = alloc.Assign(ipam.Claim{Service: "reserved " + ip.String() + ": " + who}, ip)
	}
	out := make([]*Entry, 0, len(svcs))
	var pending []*Entry
	for _, s := range svcs {
		e := &Entry{Key: key(s), Svc: s, Local: s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
		out = append(out, e)
		req, err := Requested(s)
		if err != nil {
			e.Problem = &Problem{"InvalidAddress", err.Error()}
			continue
		}
		if len(req) == 0 && in.Unconfirmed[e.Key] != nil {
			req = in.Unconfirmed[e.Key]
		}
		if len(req) == 0 {
			pending = append(pending, e)
			continue
		}
		e.Problem = assign(alloc, in, e, req)
		if e.Problem != nil && s.Annotations[AnnotationAllocated] != "" && (e.Problem.Reason == "AddressInUse" || e.Problem.Reason == "AddressOutsidePools" || e.Problem.Reason == "AddressReserved") {
			// An allocation of ours collided (two allocators for a moment, or
			// a Service created with the same address meanwhile), or a pool
			// edit left it outside every pool: allocate again.
			e.Problem = nil
			pending = append(pending, e)
		}
	}
	allocate(alloc, in, pending)
	sharedLocal(out)
	if len(in.Subnets) > 0 {
		for _, e := range out {
			outsideSubnets(e, in.Subnets)
		}
	}
	return out
}

// allocate gives the Services that ask for no address one from the pools
// (only the allocator; with Peek, one, so that a node knows whether the
// allocator has work).
func allocate(alloc *ipam.Allocator, in Input, pending []*Entry) {
	peeked := false
	for _, e := range pending {
		if !in.Allocate && (!in.Peek || peeked) {
			continue // the allocator writes an address; then it is explicit
		}
		if in.Pools == nil {
			e.Problem = &Problem{"NoAddressPool", fmt.Sprintf("service %s asks for no address and there are no address pools: set annotation %s (or spec.loadBalancerIP), or add cidr-global/range-global to ConfigMap kube-system/kubevip", e.Key, AnnotationIPs)}
			continue
		}
		ip, err := alloc.Allocate(ipamClaim(e.Svc, 0), e.Svc.Namespace, family(e.Svc))
		if err != nil {
			reason := "NoAddressPool"
			if errors.Is(err, ipam.ErrExhausted) {
				reason = "PoolExhausted"
			}
			e.Problem = &Problem{reason, fmt.Sprintf("service %s: %v: widen the pool in ConfigMap kube-system/kubevip, or delete Services that no longer need an address", e.Key, err)}
			continue
		}
		pool, _ := in.Pools.For(e.Svc.Namespace)
		e.Addrs, e.Allocated, e.Pool = []netip.Addr{ip}, []netip.Addr{ip}, pool.Name
		peeked = true
	}
}

// outsideSubnets warns about an address that no subnet of the interface
// contains: served all the same (a router that carries that subnet on the
// same segment reaches it, and kube-vip users rely on that).
//
// Only addresses a Service asked for are warned about: a pool's addresses
// were chosen by the operator (and a warning per allocated Service would
// be a flood of Events).
func outsideSubnets(e *Entry, subnets []netip.Prefix) {
	if e.Problem != nil || len(e.Allocated) > 0 || e.Svc.Annotations[AnnotationAllocated] != "" {
		return
	}
	for _, ip := range e.Addrs {
		inside := false
		for _, p := range subnets {
			inside = inside || p.Contains(ip)
		}
		if !inside {
			e.Warning = &Problem{"AddressOutsideSubnet", fmt.Sprintf("service %s uses %s, which is outside every subnet of the nodes' interface (%s): only a router that carries that subnet on this segment reaches it; choose an address in the nodes' subnet unless that is intended", e.Key, ip, joinPrefixes(subnets))}
			return
		}
	}
}

func joinPrefixes(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}

// poolName names the pools a namespace may use, as ConfigMap keys.
func poolName(p *ipam.Pools, ns string) string {
	keys := "cidr-global/range-global"
	if _, ok := p.Namespaces[ns]; ok {
		keys = "cidr-" + ns + "/range-" + ns + " or " + keys
	}
	return keys
}

// otherNamespace returns the namespace whose dedicated pool holds ip when
// neither the global pool nor ns's own pool does.
func otherNamespace(p *ipam.Pools, ns string, ip netip.Addr) (string, bool) {
	if p == nil || p.Global != nil && p.Global.Contains(ip) {
		return "", false
	}
	if own, ok := p.Namespaces[ns]; ok && own.Contains(ip) {
		return "", false
	}
	var names []string
	for n, pool := range p.Namespaces {
		if pool.Contains(ip) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", false
	}
	sort.Strings(names)
	return names[0], true
}

// assign records the explicit addresses of e, or returns the problem.
func assign(alloc *ipam.Allocator, in Input, e *Entry, req []netip.Addr) *Problem {
	for i, ip := range req {
		switch {
		case ip == in.Reserved && in.Reserved.IsValid():
			return &Problem{"AddressReserved", fmt.Sprintf("service %s asks for %s, the control-plane VIP: choose another address", e.Key, ip)}
		case !ip.IsGlobalUnicast() && !ip.IsPrivate():
			return &Problem{"InvalidAddress", fmt.Sprintf("service %s asks for %s, which is not a unicast address a node can own: choose a free address in the nodes' subnet", e.Key, ip)}
		case in.Others[ip] != "":
			return &Problem{"AddressReserved", fmt.Sprintf("service %s asks for %s, which is %s: vipd never takes an address that belongs to someone else; choose a free address in the nodes' subnet", e.Key, ip, in.Others[ip])}
		}
		if ns, ok := otherNamespace(in.Pools, e.Svc.Namespace, ip); ok {
			return &Problem{"AddressInOtherNamespacePool", fmt.Sprintf("service %s asks for %s, which is in the address pool of namespace %s (cidr-%s/range-%s in ConfigMap kube-system/kubevip): only Services in %s may use it; choose an address from the global pool or from namespace %s's own pool", e.Key, ip, ns, ns, ns, ns, e.Svc.Namespace)}
		}
		// An address vipd allocated and a pool edit left outside every
		// pool is allocated again, whatever the policy.
		ours := e.Svc.Annotations[AnnotationAllocated] != ""
		switch {
		case in.PoolsOnly && in.Pools == nil:
			return &Problem{"AddressOutsidePools", fmt.Sprintf("service %s asks for %s, but svc_pools_only is on and ConfigMap kube-system/kubevip has no address pools: add a pool for namespace %s (cidr-%s or range-%s) or a global one (cidr-global or range-global)", e.Key, ip, e.Svc.Namespace, e.Svc.Namespace, e.Svc.Namespace)}
		case (in.PoolsOnly || ours) && in.Pools != nil && !alloc.InPools(ip):
			return &Problem{"AddressOutsidePools", fmt.Sprintf("service %s asks for %s, which is outside every address pool namespace %s may use (svc_pools_only is on): choose an address in %s of ConfigMap kube-system/kubevip, or ask the cluster's operator to add it to one", e.Key, ip, e.Svc.Namespace, poolName(in.Pools, e.Svc.Namespace))}
		}
		if err := alloc.Assign(ipamClaim(e.Svc, i), ip); err != nil {
			for j := range i {
				alloc.Release(claimKey(e.Key, j))
			}
			return &Problem{"AddressInUse", fmt.Sprintf("service %s: %v: choose a free address, or give both Services the same %s annotation", e.Key, err, AnnotationShare)}
		}
	}
	e.Addrs = req
	return nil
}

// sharedLocal refuses sharing for externalTrafficPolicy: Local, whose VIP
// must follow its own endpoints: the later Services get a problem.
func sharedLocal(es []*Entry) {
	first := map[netip.Addr]*Entry{}
	for _, e := range es {
		for _, ip := range e.Addrs {
			f, ok := first[ip]
			if !ok {
				first[ip] = e
				continue
			}
			if e.Local || f.Local {
				e.Problem = &Problem{"AddressInUse", fmt.Sprintf("service %s shares %s with %s, but a Service with externalTrafficPolicy: Local cannot share its address: use externalTrafficPolicy: Cluster on both, or separate addresses", e.Key, ip, f.Key)}
				e.Addrs, e.Allocated = nil, nil
				break
			}
		}
	}
}

func key(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

func claimKey(k string, i int) string {
	if i == 0 {
		return k
	}
	return fmt.Sprintf("%s#%d", k, i)
}

func ipamClaim(s *corev1.Service, i int) ipam.Claim {
	c := ipam.Claim{Service: claimKey(key(s), i), ShareKey: s.Annotations[AnnotationShare]}
	for _, p := range s.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		c.Ports = append(c.Ports, ipam.Port{Protocol: proto, Port: p.Port})
	}
	return c
}

func family(s *corev1.Service) int {
	if len(s.Spec.IPFamilies) > 0 && s.Spec.IPFamilies[0] == corev1.IPv6Protocol {
		return 6
	}
	return 4
}
