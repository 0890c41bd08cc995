package services

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/ipam"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// lb is a LoadBalancer Service created age seconds after t0.
func lb(ns, name string, age int, mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{},
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Second))},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Protocol: "TCP", Port: 80}}},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func annotate(k, v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[k] = v }
}

func pools(t *testing.T, data map[string]string) *ipam.Pools {
	t.Helper()
	p, err := ipam.ParsePools(data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func byKey(es []*Entry) map[string]*Entry {
	m := map[string]*Entry{}
	for _, e := range es {
		m[e.Key] = e
	}
	return m
}

func addrs(e *Entry) string { return joinAddrs(e.Addrs) }

func TestPlanOrderAnnotationSpecPool(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.12", "cidr-team": "203.0.113.0/30"})
	plan := byKey(Plan(Input{Allocate: true, Pools: p, Services: []*corev1.Service{
		lb("default", "pooled", 0, nil),
		lb("default", "annotated", 1, func(s *corev1.Service) {
			s.Annotations[AnnotationIPs] = "198.51.100.10"
			s.Spec.LoadBalancerIP = "198.51.100.11"
		}),
		lb("default", "spec", 2, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.11" }),
		lb("team", "ns-pool", 3, nil),
	}}))
	for k, want := range map[string]string{
		"default/annotated": "198.51.100.10", "default/spec": "198.51.100.11",
		// The older pooled Service still does not take an address asked for.
		"default/pooled": "198.51.100.12", "team/ns-pool": "203.0.113.1", // a cidr skips its network address
	} {
		if e := plan[k]; e.Problem != nil || addrs(e) != want {
			t.Errorf("%s: got %q problem %+v, want %s", k, addrs(e), e.Problem, want)
		}
	}
	if e := plan["default/pooled"]; len(e.Allocated) != 1 || e.Pool != "global" {
		t.Errorf("pooled: allocated %v from %q, want one from global", e.Allocated, e.Pool)
	}
	if e := plan["default/annotated"]; len(e.Allocated) != 0 {
		t.Errorf("an explicit address is not an allocation: %v", e.Allocated)
	}
}

func TestPlanOnlyTheAllocatorAllocates(t *testing.T) {
	p := pools(t, map[string]string{"cidr-global": "198.51.100.0/30"})
	e := Plan(Input{Pools: p, Services: []*corev1.Service{lb("default", "a", 0, nil)}})[0]
	if e.Problem != nil || len(e.Addrs) != 0 || len(e.Allocated) != 0 {
		t.Fatalf("a node that is not the allocator must wait, got %+v", e)
	}
}

// A node that peeks (spread mode, not the allocator) plans the allocation
// of the first Service that would get an address, and no other: it only
// needs to know that there is work for the allocator. Services before it
// that cannot get one have their Problem.
func TestPlanPeekStopsAtTheFirstAllocation(t *testing.T) {
	p := pools(t, map[string]string{"cidr-team": "198.51.100.0/30"})
	svcs := []*corev1.Service{lb("other", "a", 0, nil), lb("team", "b", 1, nil), lb("team", "c", 2, nil)}
	plan := Plan(Input{Pools: p, Services: svcs, Peek: true})
	var allocated []string
	for _, e := range plan {
		if len(e.Allocated) > 0 {
			allocated = append(allocated, e.Key)
		}
	}
	if len(allocated) != 1 || allocated[0] != "team/b" {
		t.Fatalf("peek allocated %v, want team/b only", allocated)
	}
	if plan[0].Problem == nil || plan[0].Problem.Reason != "NoAddressPool" {
		t.Errorf("other/a (no pool for its namespace): %+v, want NoAddressPool", plan[0].Problem)
	}
	if e := plan[2]; e.Problem != nil || len(e.Addrs) != 0 {
		t.Errorf("team/c after the first allocation: %+v, want waiting", e)
	}
	full := Plan(Input{Pools: p, Services: svcs, Allocate: true})
	if len(full[1].Allocated) != 1 || len(full[2].Allocated) != 1 || full[1].Allocated[0] != plan[1].Allocated[0] {
		t.Errorf("the allocator's plan %v %v, the peek's %v: want the same first address", full[1].Allocated, full[2].Allocated, plan[1].Allocated)
	}
}

func TestPlanBadInput(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.11"})
	cp := netip.MustParseAddr("198.51.100.200")
	for _, tc := range []struct {
		name      string
		pools     *ipam.Pools
		poolsOnly bool
		svcs      []*corev1.Service
		key       string
		reason    string
		msg       []string
	}{
		{"outside pools", p, true, []*corev1.Service{lb("default", "x", 0, annotate(AnnotationIPs, "203.0.113.9"))},
			"default/x", "AddressOutsidePools", []string{"default/x", "203.0.113.9", "outside every address pool namespace default may use", "range-global"}},
		{"pools only without pools", nil, true, []*corev1.Service{lb("team", "x", 0, annotate(AnnotationIPs, "203.0.113.9"))},
			"team/x", "AddressOutsidePools", []string{"team/x", "203.0.113.9", "svc_pools_only is on", "cidr-team"}},
		{"in use", nil, false, []*corev1.Service{
			lb("default", "old", 0, annotate(AnnotationIPs, "198.51.100.10")),
			lb("default", "new", 1, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.10" })},
			"default/new", "AddressInUse", []string{"198.51.100.10 is already used by default/old", AnnotationShare}},
		{"exhausted", p, false, []*corev1.Service{lb("default", "a", 0, nil), lb("default", "b", 1, nil), lb("default", "c", 2, nil)},
			"default/c", "PoolExhausted", []string{"default/c", "198.51.100.10-198.51.100.11", "widen the pool"}},
		{"no pools", nil, false, []*corev1.Service{lb("default", "a", 0, nil)},
			"default/a", "NoAddressPool", []string{"asks for no address and there are no address pools"}},
		{"not an address", nil, false, []*corev1.Service{lb("default", "a", 0, annotate(AnnotationIPs, "198.51.100.300"))},
			"default/a", "InvalidAddress", []string{`"198.51.100.300" is not an IP address`}},
		{"control-plane VIP", nil, false, []*corev1.Service{lb("default", "a", 0, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.200" })},
			"default/a", "AddressReserved", []string{"the control-plane VIP"}},
		{"local cannot share", nil, false, []*corev1.Service{
			lb("default", "a", 0, func(s *corev1.Service) {
				s.Annotations[AnnotationIPs] = "198.51.100.10"
				s.Annotations[AnnotationShare] = "k"
			}),
			lb("default", "b", 1, func(s *corev1.Service) {
				s.Annotations[AnnotationIPs] = "198.51.100.10"
				s.Annotations[AnnotationShare] = "k"
				s.Spec.Ports[0].Port = 443
				s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			})},
			"default/b", "AddressInUse", []string{"externalTrafficPolicy: Local cannot share"}},
	} {
		e := byKey(Plan(Input{Allocate: true, Pools: tc.pools, PoolsOnly: tc.poolsOnly, Reserved: cp, Services: tc.svcs}))[tc.key]
		if e.Problem == nil || e.Problem.Reason != tc.reason {
			t.Errorf("%s: problem %+v, want reason %s", tc.name, e.Problem, tc.reason)
			continue
		}
		if len(e.Addrs) != 0 {
			t.Errorf("%s: a Service with a problem must get no address, got %s", tc.name, addrs(e))
		}
		for _, m := range tc.msg {
			if !strings.Contains(e.Problem.Message, m) {
				t.Errorf("%s: message %q lacks %q", tc.name, e.Problem.Message, m)
			}
		}
	}
}

func TestPlanNeverAllocatesTheControlPlaneVIP(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.200-198.51.100.201"})
	e := Plan(Input{Allocate: true, Pools: p, Reserved: netip.MustParseAddr("198.51.100.200"), Services: []*corev1.Service{lb("default", "a", 0, nil)}})[0]
	if addrs(e) != "198.51.100.201" {
		t.Fatalf("got %s (%+v), want 198.51.100.201: the control-plane VIP is never allocated", addrs(e), e.Problem)
	}
}

func TestPlanSharingNeedsTheSameKeyAndOtherPorts(t *testing.T) {
	shared := func(port int32) func(*corev1.Service) {
		return func(s *corev1.Service) { s.Annotations[AnnotationShare] = "dns"; s.Spec.Ports[0].Port = port }
	}
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.20"})
	plan := byKey(Plan(Input{Allocate: true, Pools: p, Services: []*corev1.Service{
		lb("default", "tcp", 0, shared(53)),
		lb("default", "udp", 1, func(s *corev1.Service) { shared(53)(s); s.Spec.Ports[0].Protocol = "UDP" }),
		lb("default", "clash", 2, shared(53)),
		lb("default", "other", 3, nil),
	}}))
	if addrs(plan["default/tcp"]) != "198.51.100.10" || addrs(plan["default/udp"]) != "198.51.100.10" {
		t.Errorf("tcp %s udp %s: want both on 198.51.100.10", addrs(plan["default/tcp"]), addrs(plan["default/udp"]))
	}
	if a := addrs(plan["default/clash"]); a == "198.51.100.10" || a == "" {
		t.Errorf("clash (same port) got %q: want an address of its own", a)
	}
	if a := addrs(plan["default/other"]); a == "198.51.100.10" || a == addrs(plan["default/clash"]) {
		t.Errorf("other got %q: want an address of its own", a)
	}
}

func TestPlanReallocatesACollidingAllocation(t *testing.T) {
	// Two allocators for a moment gave one address to two Services: the
	// older keeps it, the younger's allocation is redone.
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.20"})
	mine := func(s *corev1.Service) {
		s.Annotations[AnnotationIPs] = "198.51.100.10"
		s.Annotations[AnnotationAllocated] = "global"
	}
	plan := byKey(Plan(Input{Allocate: true, Pools: p, Services: []*corev1.Service{lb("default", "a", 0, mine), lb("default", "b", 1, mine)}}))
	if addrs(plan["default/a"]) != "198.51.100.10" || addrs(plan["default/b"]) != "198.51.100.11" || len(plan["default/b"].Allocated) != 1 {
		t.Fatalf("a %s, b %s (allocated %v): want b moved to 198.51.100.11", addrs(plan["default/a"]), addrs(plan["default/b"]), plan["default/b"].Allocated)
	}
}

func TestPlanDeletedServicesReturnTheirAddresses(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.10"})
	first := Plan(Input{Allocate: true, Pools: p, Services: []*corev1.Service{lb("default", "a", 0, nil)}})[0]
	if addrs(first) != "198.51.100.10" {
		t.Fatalf("a got %s", addrs(first))
	}
	// a is gone; b gets the only address.
	second := Plan(Input{Allocate: true, Pools: p, Services: []*corev1.Service{lb("default", "b", 1, nil)}})[0]
	if addrs(second) != "198.51.100.10" {
		t.Fatalf("b got %s problem %+v", addrs(second), second.Problem)
	}
}

// TestPlanCountsUnconfirmedAllocations: the allocator wrote web=.10, the
// cache does not show it yet, and api, created in the same second with a
// smaller name, is planned first: it must not get .10 as well.
func TestPlanCountsUnconfirmedAllocations(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.10-198.51.100.12"})
	svcs := []*corev1.Service{lb("default", "web", 0, nil), lb("default", "api", 0, nil)}
	plan := byKey(Plan(Input{Allocate: true, Pools: p, Services: svcs,
		Unconfirmed: map[string][]netip.Addr{"default/web": {netip.MustParseAddr("198.51.100.10")}}}))
	if got := addrs(plan["default/web"]); got != "198.51.100.10" {
		t.Errorf("web %q, want its unconfirmed 198.51.100.10", got)
	}
	if len(plan["default/web"].Allocated) != 0 {
		t.Errorf("web allocated again: %v", plan["default/web"].Allocated)
	}
	if got := addrs(plan["default/api"]); got == "198.51.100.10" || got == "" {
		t.Errorf("api %q, want another pool address", got)
	}
}

// TestPlanReallocatesAnAllocationOutsideThePools: a pool edit leaves an
// address vipd allocated outside every pool: it is allocated again rather
// than left stranded with AddressOutsidePools, whatever the pools policy.
func TestPlanReallocatesAnAllocationOutsideThePools(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.20-198.51.100.21"})
	for _, only := range []bool{false, true} {
		plan := byKey(Plan(Input{Allocate: true, Pools: p, PoolsOnly: only, Services: []*corev1.Service{
			lb("default", "web", 0, func(s *corev1.Service) {
				s.Annotations[AnnotationIPs] = "198.51.100.10"
				s.Annotations[AnnotationAllocated] = "range-global"
			}),
			lb("default", "mine", 0, annotate(AnnotationIPs, "198.51.100.11")),
		}}))
		if e := plan["default/web"]; e.Problem != nil || addrs(e) != "198.51.100.20" || len(e.Allocated) != 1 {
			t.Errorf("poolsOnly=%t: web: problem %v, addrs %q, allocated %v; want a new pool address", only, e.Problem, addrs(e), e.Allocated)
		}
		// An address the user chose is never rewritten: refused with the
		// policy on, served as asked with it off.
		e := plan["default/mine"]
		switch {
		case only && (e.Problem == nil || e.Problem.Reason != "AddressOutsidePools"):
			t.Errorf("poolsOnly: mine: %v, want AddressOutsidePools", e.Problem)
		case !only && (e.Problem != nil || addrs(e) != "198.51.100.11"):
			t.Errorf("pools policy off: mine: problem %v, addrs %q; want 198.51.100.11 as asked", e.Problem, addrs(e))
		}
	}
}

// TestPlanPoolsPolicy: with svc_pools_only off (kube-vip's behaviour) an
// address outside the pools is served; on, only an address in the global
// pool or the Service's namespace's pool. Either way another namespace's
// pool and the addresses of others are refused.
func TestPlanPoolsPolicy(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.20-198.51.100.29", "cidr-team-a": "203.0.113.0/28"})
	others := map[netip.Addr]string{netip.MustParseAddr("198.51.100.2"): "the API server's address"}
	for _, tc := range []struct {
		ns, ip string
		off    string // reason with the policy off ("" = served)
		on     string // reason with it on
	}{
		{"team-b", "198.51.100.50", "", "AddressOutsidePools"},
		{"team-b", "198.51.100.21", "", ""},
		{"team-a", "198.51.100.22", "", ""}, // the global pool is open to all
		{"team-a", "203.0.113.3", "", ""},
		{"team-b", "203.0.113.4", "AddressInOtherNamespacePool", "AddressInOtherNamespacePool"},
		{"team-b", "198.51.100.2", "AddressReserved", "AddressReserved"},
	} {
		for _, only := range []bool{false, true} {
			want := tc.off
			if only {
				want = tc.on
			}
			e := Plan(Input{Pools: p, PoolsOnly: only, Others: others, Services: []*corev1.Service{lb(tc.ns, "s", 0, annotate(AnnotationIPs, tc.ip))}})[0]
			got := ""
			if e.Problem != nil {
				got = e.Problem.Reason
			}
			if got != want || want == "" && addrs(e) != tc.ip || want != "" && len(e.Addrs) > 0 {
				t.Errorf("%s asks for %s, svc_pools_only=%t: problem %q, addrs %q; want problem %q", tc.ns, tc.ip, only, got, addrs(e), want)
			}
		}
	}
}

// TestPlanRefusesOthersAddresses: S7 for Services. Addresses of nodes, the
// API server, the subnet's network and broadcast addresses and the gateway
// are refused whatever is asked, named with whose they are, and never
// allocated from a pool that covers them.
func TestPlanRefusesOthersAddresses(t *testing.T) {
	others := map[netip.Addr]string{
		netip.MustParseAddr("198.51.100.0"):   "the network address of 198.51.100.0/24",
		netip.MustParseAddr("198.51.100.1"):   "the gateway of eth0",
		netip.MustParseAddr("198.51.100.2"):   "the API server (an endpoint of Service default/kubernetes)",
		netip.MustParseAddr("198.51.100.11"):  "node n1's address (InternalIP)",
		netip.MustParseAddr("198.51.100.255"): "the broadcast address of 198.51.100.0/24",
		netip.MustParseAddr("2001:db8::11"):   "node n1's address (InternalIP)",
	}
	var svcs []*corev1.Service
	for ip := range others {
		svcs = append(svcs, lb("default", "ask-"+ip.String(), 0, annotate(AnnotationIPs, ip.String())))
	}
	// A pool that covers four of them: allocation skips them.
	p := pools(t, map[string]string{"range-global": "198.51.100.0-198.51.100.3"})
	svcs = append(svcs, lb("default", "pooled", 1, nil))
	plan := byKey(Plan(Input{Allocate: true, Others: others, Services: svcs}))
	for ip, who := range others {
		e := plan["default/ask-"+ip.String()]
		if e.Problem == nil || e.Problem.Reason != "AddressReserved" || !strings.Contains(e.Problem.Message, who) || len(e.Addrs) != 0 {
			t.Errorf("%s: problem %+v, addrs %v; want AddressReserved naming %q", ip, e.Problem, e.Addrs, who)
		}
	}
	plan = byKey(Plan(Input{Allocate: true, Others: others, Pools: p, Services: []*corev1.Service{lb("default", "pooled", 1, nil)}}))
	if got := addrs(plan["default/pooled"]); got != "198.51.100.3" {
		t.Errorf("pool allocation %q, want 198.51.100.3 (the only address of the pool nobody else has)", got)
	}
	// An allocation of ours that became someone else's is allocated again.
	plan = byKey(Plan(Input{Allocate: true, Others: others, Pools: p, Services: []*corev1.Service{lb("default", "stale", 1, func(s *corev1.Service) {
		s.Annotations[AnnotationIPs] = "198.51.100.2"
		s.Annotations[AnnotationAllocated] = "range-global"
	})}}))
	if e := plan["default/stale"]; e.Problem != nil || addrs(e) != "198.51.100.3" {
		t.Errorf("stale allocation: problem %v, addrs %q; want 198.51.100.3", e.Problem, addrs(e))
	}
}

// TestPlanNamespacePools: an address in namespace team-a's dedicated pool
// is only for team-a's Services; the global pool is open to all.
func TestPlanNamespacePools(t *testing.T) {
	p := pools(t, map[string]string{"range-global": "198.51.100.100-198.51.100.110", "cidr-team-a": "203.0.113.0/28"})
	plan := byKey(Plan(Input{Pools: p, Services: []*corev1.Service{
		lb("team-b", "steal", 0, annotate(AnnotationIPs, "203.0.113.5")),
		lb("team-a", "own", 1, annotate(AnnotationIPs, "203.0.113.6")),
		lb("team-b", "global", 2, annotate(AnnotationIPs, "198.51.100.105")),
	}}))
	if e := plan["team-b/steal"]; e.Problem == nil || e.Problem.Reason != "AddressInOtherNamespacePool" || !strings.Contains(e.Problem.Message, "namespace team-a") {
		t.Errorf("team-b asking for team-a's address: %+v", e.Problem)
	}
	for _, k := range []string{"team-a/own", "team-b/global"} {
		if e := plan[k]; e.Problem != nil || len(e.Addrs) != 1 {
			t.Errorf("%s: %+v %v", k, e.Problem, e.Addrs)
		}
	}
}

// TestPlanWarnsOutsideTheSubnets: an address outside every subnet of the
// interface is served, with a warning.
func TestPlanWarnsOutsideTheSubnets(t *testing.T) {
	plan := byKey(Plan(Input{Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Services: []*corev1.Service{
		lb("default", "far", 0, annotate(AnnotationIPs, "203.0.113.50")),
		lb("default", "near", 0, annotate(AnnotationIPs, "198.51.100.50")),
	}}))
	if e := plan["default/far"]; e.Problem != nil || e.Warning == nil || e.Warning.Reason != "AddressOutsideSubnet" || addrs(e) != "203.0.113.50" {
		t.Errorf("far: problem %v warning %v addrs %q", e.Problem, e.Warning, addrs(e))
	}
	if e := plan["default/near"]; e.Warning != nil {
		t.Errorf("near: warning %v", e.Warning)
	}
	// A pool address outside the subnets: the operator chose it, no warning.
	plan = byKey(Plan(Input{Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, Services: []*corev1.Service{
		lb("default", "pooled", 0, func(s *corev1.Service) {
			s.Annotations[AnnotationIPs] = "198.18.64.1"
			s.Annotations[AnnotationAllocated] = "range-global"
		}),
	}}))
	if e := plan["default/pooled"]; e.Warning != nil {
		t.Errorf("pooled: warning %v", e.Warning)
	}
}
