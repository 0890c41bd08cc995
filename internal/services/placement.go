package services

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
	"slices"
	"sort"
)

// Unit is what spread mode places on one node: addresses that must stay
// together (the addresses of one Service, joined with those of Services
// that share one of them), with the nodes allowed to hold them.
type Unit struct {
	// Addrs are sorted; the first is the unit's key.
	Addrs []netip.Addr
	// Nodes that may hold the unit; nil: every node given to Place.
	// (externalTrafficPolicy: Local: the nodes with a ready endpoint.)
	Nodes []string
	// Holder is the node whose heartbeat lists the unit now ("" none).
	Holder string
}

// Place assigns every unit to one node, so that no node holds more than
// ceil(units / nodes) units (unless a unit's own nodes are all full):
//
//  1. a unit stays with its holder while the holder may hold it and is
//     under the bound: a node that leaves moves only its own units, and
//     a node that joins takes only units beyond the others' new bound;
//  2. every other unit goes to its highest random weight node (rendezvous
//     hashing of (unit key, node)) among those under the bound.
//
// Units are taken in the order of their keys' hashes, so the result depends
// only on the sets given, not on their order: every node computes the same
// placement from the same caches. A unit whose nodes are all absent gets
// none ("").
func Place(units []Unit, nodes []string) map[netip.Addr]string {
	p := placing{out: make(map[netip.Addr]string, len(units)), all: map[string]bool{}, load: map[string]int{}, nodes: nodes}
	if len(units) == 0 {
		return p.out
	}
	for _, n := range nodes {
		p.all[n] = true
	}
	items := make([]placeItem, 0, len(units))
	for _, u := range units {
		if len(u.Addrs) == 0 {
			continue
		}
		items = append(items, placeItem{u, mix(hashAddr(u.Addrs[0]))})
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].key != items[j].key {
			return items[i].key < items[j].key
		}
		return items[i].u.Addrs[0].Less(items[j].u.Addrs[0])
	})
	if len(p.all) > 0 {
		p.limit = (len(items) + len(p.all) - 1) / len(p.all)
	}
	var rest []placeItem
	for _, it := range items {
		if h := it.u.Holder; h != "" && p.allowed(it.u, h) && p.load[h] < p.limit {
			p.assign(it.u, h)
		} else {
			rest = append(rest, it)
		}
	}
	for _, it := range rest {
		p.place(it)
	}
	return p.out
}

// placeItem is a unit and the hash of its key.
type placeItem struct {
	u   Unit
	key uint64
}

// placing is Place's work: the placement so far and each node's load.
type placing struct {
	out   map[netip.Addr]string
	all   map[string]bool
	load  map[string]int
	nodes []string
	limit int
}

func (p *placing) assign(u Unit, n string) {
	p.load[n]++
	for _, a := range u.Addrs {
		p.out[a] = n
	}
}

// allowed: n is given to Place and may hold u.
func (p *placing) allowed(u Unit, n string) bool {
	return p.all[n] && (u.Nodes == nil || slices.Contains(u.Nodes, n))
}

// place gives it to its highest-weight node under the bound, else (its
// nodes all full) to its highest-weight node, else to none.
func (p *placing) place(it placeItem) {
	cands := it.u.Nodes
	if cands == nil {
		cands = p.nodes
	}
	best, bestFree := "", ""
	var bw, bfw uint64
	for _, n := range cands {
		if !p.all[n] {
			continue
		}
		w := weight(it.key, n)
		if best == "" || w > bw || w == bw && n < best {
			best, bw = n, w
		}
		if p.load[n] < p.limit && (bestFree == "" || w > bfw || w == bfw && n < bestFree) {
			bestFree, bfw = n, w
		}
	}
	if bestFree != "" {
		best = bestFree
	}
	if best == "" {
		for _, a := range it.u.Addrs {
			p.out[a] = ""
		}
		return
	}
	p.assign(it.u, best)
}

func hashAddr(a netip.Addr) uint64 {
	h := fnv.New64a()
	b := a.As16()
	h.Write(b[:])
	return h.Sum64()
}

// weight is the rendezvous weight of node n for a unit with key k.
func weight(k uint64, n string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], k)
	h.Write(b[:])
	h.Write([]byte(n))
	return mix(h.Sum64())
}

// mix is splitmix64's finaliser: FNV alone spreads similar inputs poorly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
