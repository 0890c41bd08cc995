package services

import (
	"fmt"
	"math/rand"
	"net/netip"
	"testing"
)

func addrUnits(n int) []Unit {
	us := make([]Unit, n)
	for i := range us {
		us[i] = Unit{Addrs: []netip.Addr{netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})}}
	}
	return us
}

func nodeNames(n int) []string {
	ns := make([]string, n)
	for i := range ns {
		ns[i] = fmt.Sprintf("n%d", i+1)
	}
	return ns
}

// withHolders gives each unit its holder in p.
func withHolders(us []Unit, p map[netip.Addr]string) []Unit {
	out := make([]Unit, len(us))
	for i, u := range us {
		u.Holder = p[u.Addrs[0]]
		out[i] = u
	}
	return out
}

func loads(p map[netip.Addr]string) map[string]int {
	l := map[string]int{}
	for _, n := range p {
		l[n]++
	}
	return l
}

// TestPlaceBalances: no node holds more than ceil(units / nodes).
func TestPlaceBalances(t *testing.T) {
	for _, tc := range []struct{ units, nodes int }{{60, 3}, {100, 3}, {1000, 3}, {100, 10}, {1000, 10}, {5, 3}, {1, 3}} {
		p := Place(addrUnits(tc.units), nodeNames(tc.nodes))
		limit := (tc.units + tc.nodes - 1) / tc.nodes
		for n, c := range loads(p) {
			if c > limit || n == "" {
				t.Errorf("%d units on %d nodes: %s holds %d, limit %d", tc.units, tc.nodes, n, c, limit)
			}
		}
		if len(p) != tc.units {
			t.Errorf("%d units placed, want %d", len(p), tc.units)
		}
	}
}

// TestPlaceIsDeterministic: every node computes the same placement from
// the same sets, whatever the order of its caches.
func TestPlaceIsDeterministic(t *testing.T) {
	us, ns := addrUnits(200), nodeNames(5)
	want := Place(us, ns)
	r := rand.New(rand.NewSource(1))
	for range 20 {
		r.Shuffle(len(us), func(i, j int) { us[i], us[j] = us[j], us[i] })
		r.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
		got := Place(us, ns)
		for a, n := range want {
			if got[a] != n {
				t.Fatalf("%s: %s after a shuffle, %s before", a, got[a], n)
			}
		}
	}
}

// TestPlaceMovesLittle: when a node leaves, its units move, and few others;
// when it comes back, about its share moves back. The figures are printed.
func TestPlaceMovesLittle(t *testing.T) {
	for _, tc := range []struct{ units, nodes int }{{60, 3}, {1000, 3}, {1000, 10}} {
		us, ns := addrUnits(tc.units), nodeNames(tc.nodes)
		before := Place(us, ns)
		after := Place(withHolders(us, before), ns[1:])
		others := 0
		for a, n := range before {
			if n != ns[0] && after[a] != n {
				others++
			}
			if after[a] == ns[0] {
				t.Fatalf("%s still on the node that left", a)
			}
		}
		back := Place(withHolders(us, after), ns)
		returned := 0
		for a, n := range after {
			if back[a] != n {
				returned++
			}
		}
		share := loads(before)[ns[0]]
		t.Logf("%d units on %d nodes: %s leaves: its %d move and %d others; it returns: %d move", tc.units, tc.nodes, ns[0], share, others, returned)
		if others != 0 {
			t.Errorf("%d units on %d nodes: %d units not on the leaving node moved", tc.units, tc.nodes, others)
		}
		// Coming back, it takes about its share, and the split is even.
		limit := (tc.units + tc.nodes - 1) / tc.nodes
		if returned > limit {
			t.Errorf("%d units on %d nodes: %d moved when %s came back, more than its share %d", tc.units, tc.nodes, returned, ns[0], limit)
		}
		for n, c := range loads(back) {
			if c > limit {
				t.Errorf("after the return %s holds %d, limit %d", n, c, limit)
			}
		}
	}
}

// TestPlaceHonoursEachUnitsNodes: a Local Service's unit goes only to a node
// with a ready endpoint, even past the bound; none: no node.
func TestPlaceHonoursEachUnitsNodes(t *testing.T) {
	us := addrUnits(30)
	for i := range 10 {
		us[i].Nodes = []string{"n2"}
	}
	us[10].Nodes = []string{"n9"} // not live
	us[11].Nodes = []string{}     // no endpoint anywhere
	p := Place(us, nodeNames(3))
	for i := range 10 {
		if n := p[us[i].Addrs[0]]; n != "n2" {
			t.Errorf("%s: on %q, want n2, its only node", us[i].Addrs[0], n)
		}
	}
	for _, i := range []int{10, 11} {
		if n, ok := p[us[i].Addrs[0]]; !ok || n != "" {
			t.Errorf("%s: on %q (%t), want no node", us[i].Addrs[0], n, ok)
		}
	}
}

// TestPlaceKeepsAUnitTogether: a dual-stack Service's addresses stay on one node.
func TestPlaceKeepsAUnitTogether(t *testing.T) {
	u := Unit{Addrs: []netip.Addr{netip.MustParseAddr("198.51.100.150"), netip.MustParseAddr("2001:db8::150")}}
	for _, ns := range [][]string{nodeNames(2), nodeNames(3), nodeNames(7)} {
		p := Place(append(addrUnits(10), u), ns)
		if p[u.Addrs[0]] != p[u.Addrs[1]] || p[u.Addrs[0]] == "" {
			t.Errorf("on %d nodes: %s on %q, %s on %q", len(ns), u.Addrs[0], p[u.Addrs[0]], u.Addrs[1], p[u.Addrs[1]])
		}
	}
}
