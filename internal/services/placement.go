package services

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
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
	out := make(map[netip.Addr]string, len(units))
	if len(units) == 0 {
		return out
	}
	all := map[string]bool{}
	for _, n := range nodes {
		all[n] = true
	}
	type item struct {
		u   Unit
		key uint64
	}
	items := make([]item, 0, len(units))
	for _, u := range units {
		if len(u.Addrs) == 0 {
			continue
		}
		items = append(items, item{u, mix(hashAddr(u.Addrs[0]))})
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].key != items[j].key {
			return items[i].key < items[j].key
		}
		return items[i].u.Addrs[0].Less(items[j].u.Addrs[0])
	})
	limit := 0
	if len(all) > 0 {
		limit = (len(items) + len(all) - 1) / len(all)
	}
	load := map[string]int{}
	assign := func(u Unit, n string) {
		load[n]++
		for _, a := range u.Addrs {
			out[a] = n
		}
	}
	allowed := func(u Unit, n string) bool {
		if !all[n] {
			return false
		}
		if u.Nodes == nil {
			return true
		}
		for _, m := range u.Nodes {
			if m == n {
				return true
			}
		}
		return false
	}
	var rest []item
	for _, it := range items {
		if h := it.u.Holder; h != "" && allowed(it.u, h) && load[h] < limit {
			assign(it.u, h)
		} else {
			rest = append(rest, it)
		}
	}
	for _, it := range rest {
		cands := it.u.Nodes
		if cands == nil {
			cands = nodes
		}
		best, bestFree := "", ""
		var bw, bfw uint64
		for _, n := range cands {
			if !all[n] {
				continue
			}
			w := weight(it.key, n)
			if best == "" || w > bw || w == bw && n < best {
				best, bw = n, w
			}
			if load[n] < limit && (bestFree == "" || w > bfw || w == bfw && n < bestFree) {
				bestFree, bfw = n, w
			}
		}
		if bestFree != "" {
			best = bestFree
		}
		if best == "" {
			for _, a := range it.u.Addrs {
				out[a] = ""
			}
			continue
		}
		assign(it.u, best)
	}
	return out
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
