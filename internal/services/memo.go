package services

import (
	"maps"
	"net/netip"
	"slices"
	"sync/atomic"
)

// planMemo is the last pass's plan and what it was made from. Plan is a
// function of its Input alone, and most passes in spread mode follow a
// change of heartbeats only (a planned move: every node makes two or three
// in its first second, while the API server's writes and watches are what
// the move waits for): those reuse the plan, and the grouping of its
// addresses into units, instead of making them again for every Service.
//
// The Services, EndpointSlices, Nodes, the API server's endpoints and the
// pools' ConfigMap are counted by gen, bumped by their informers' handlers
// (after the informer's cache has the change): a pass reads gen before it
// lists, so a plan is never kept under a count that includes a change it
// did not see. The other inputs are compared as values.
type planMemo struct {
	gen atomic.Uint64 // informer events so far (the informers' onChange)

	// Pass only:
	made  uint64 // gen when plan was made
	in    Input  // what plan was made from
	plan  []*Entry
	units []Unit                  // units(plan), nil until asked for
	by    map[netip.Addr][]*Entry // with units
	plans atomic.Uint64           // plans made (tests)
}

// get returns the plan of in, made now or kept from the last pass; gen is
// memo.gen as read before in.Services were listed.
func (m *planMemo) get(gen uint64, in Input) []*Entry {
	if m.plan != nil && m.made == gen && m.same(in) {
		return m.plan
	}
	m.made, m.in, m.plan, m.units, m.by = gen, in, Plan(in), nil, nil
	m.plans.Add(1)
	return m.plan
}

// same: in is m.in but for its Services, which gen covers. Allocations
// waiting for the cache (Unconfirmed) are never compared: they come and go
// with writes, not with informer events.
func (m *planMemo) same(in Input) bool {
	o := m.in
	return len(in.Services) == len(o.Services) && in.Pools == o.Pools && in.PoolsOnly == o.PoolsOnly &&
		in.Reserved == o.Reserved && in.Allocate == o.Allocate && in.Peek == o.Peek &&
		len(in.Unconfirmed) == 0 && len(o.Unconfirmed) == 0 &&
		maps.Equal(in.Others, o.Others) && slices.Equal(in.Subnets, o.Subnets)
}

// grouped returns units(plan) for the last plan get returned, made once
// per plan (endpoints are EndpointSlices, which gen covers). The units are
// a copy the caller may change (Place's holders).
func (m *planMemo) grouped(endpoints func(string) []string) ([]Unit, map[netip.Addr][]*Entry) {
	if m.units == nil {
		m.units, m.by = units(m.plan, endpoints)
	}
	return slices.Clone(m.units), m.by
}
