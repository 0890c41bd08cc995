package services

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The permutation test of spread mode's claim rule (S8). It runs the code
// that decides, on each node, who is live, where each VIP goes and whether
// another node may still hold it (beatView, eligible, Place, leaseView) in
// a model of everything around it that enumerates the orders in which
// events can arrive:
//
//   - a heartbeat write has three steps, each its own event: it starts
//     (the fence counts from here), it commits in the store (every node's
//     watch queues the new version), and its answer reaches the node,
//     which then holds the Lease until start + renew deadline. A write
//     can commit long after it started and answer long after it
//     committed; an answer after the deadline counts for nothing;
//   - each node's watch delivers the versions in order, each when the
//     schedule says: caches on different nodes disagree for as long as
//     the schedule wants;
//   - the claim check's read is two events: the store is read, and the
//     answer is used later (after newer versions were delivered, say);
//   - a node plans (placement from its own view) when the schedule says;
//   - time passes in ticks of a second: an address leaves the kernel one
//     second after its fence at the latest (the kernel's late removal),
//     or when the node's fence timer fires (an event of its own, which a
//     frozen process never runs);
//   - a node can be frozen (SIGSTOP, or cut off from the API server: it
//     does nothing, its writes in flight may still commit), and thawed;
//     a node's heartbeat Lease can be deleted (kubectl delete lease);
//   - a node can stop (SIGTERM, spread.handOver): it stops planning, its
//     next writes say it stops, and at any later moment (its new owners
//     listed its VIPs, or handOverWait passed) it halts: its addresses
//     leave the kernel, and its next write releases the heartbeat.
//
// After every event the test asserts that no address is in two kernels.
// With the schedule fair again (every node thawed and acting), every
// address must end on exactly one node.

const (
	pLD    = 4 * time.Second // lease duration: renew deadline + elector.FenceMargin
	pRD    = 2 * time.Second // renew deadline
	pSlack = time.Second     // the kernel removes an expired address up to a second late
	pNS    = "kube-system"
)

type pLease struct {
	rv       int
	holder   string
	holds    string
	deleting bool // marked for deletion; HeartbeatFinalizer keeps it
	stopping bool // StoppingAnnotation
}

type pWrite struct {
	start     time.Time
	set       map[netip.Addr]bool
	committed bool
	created   bool // the write created the Lease
	readOnly  bool // the Lease was marked for deletion: not written
	stopping  bool // says the node stops
	release   bool // the release after a halt (holder "")
}

type pRead struct {
	list  []leaseVersion
	want  []netip.Addr
	gen   int
	marks map[netip.Addr]int // group.marks
}

// pWait is group.waiting's waitOn.
type pWait struct {
	by   map[string]string
	mark int
}

type pEvent struct {
	lease string // Lease name
	l     pLease
	gone  bool
}

type pNode struct {
	name      string
	frozen    bool
	beats     beatView
	seen      leaseView
	queue     []pEvent
	kernel    map[netip.Addr]time.Time // address → when the kernel removes it
	vips      map[netip.Addr]bool      // placed here: the group's addresses
	published map[netip.Addr]bool
	cleared   map[netip.Addr]bool
	removed   map[netip.Addr]int // group.removed
	waiting   map[netip.Addr]pWait
	leading   bool
	until     time.Time
	gen       int
	write     *pWrite
	read      *pRead
	// stopping: SIGTERM (handing over); halted: its addresses removed;
	// released: its heartbeat released (it does nothing more).
	stopping, halted, released bool
}

type pWorld struct {
	now    time.Time
	rv     int
	store  map[string]*pLease // by Lease name
	nodes  []*pNode
	addrs  []netip.Addr
	trace  []string
	mutate string // a deliberately broken rule, to show the test can fail
	stops  bool   // a node may stop (random runs)
}

func newWorld(nodes, addrs int) *pWorld {
	w := &pWorld{now: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), store: map[string]*pLease{}}
	for i := range nodes {
		w.nodes = append(w.nodes, &pNode{name: string(rune('a' + i)), beats: beatView{}, seen: leaseView{},
			kernel: map[netip.Addr]time.Time{}, vips: map[netip.Addr]bool{}, published: map[netip.Addr]bool{}, cleared: map[netip.Addr]bool{}, removed: map[netip.Addr]int{}, waiting: map[netip.Addr]pWait{}})
	}
	for i := range addrs {
		w.addrs = append(w.addrs, netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 10+i)))
	}
	return w
}

func (w *pWorld) clone() *pWorld {
	c := *w
	c.store = map[string]*pLease{}
	for k, l := range w.store {
		l := *l
		c.store[k] = &l
	}
	c.trace = append([]string(nil), w.trace...)
	c.nodes = nil
	for _, n := range w.nodes {
		m := *n
		m.beats = beatView{}
		for k, v := range n.beats {
			m.beats[k] = v
		}
		m.seen = leaseView{}
		for k, v := range n.seen {
			v.older = append([]string(nil), v.older...)
			m.seen[k] = v
		}
		m.queue = append([]pEvent(nil), n.queue...)
		m.kernel = copyMap(n.kernel)
		m.vips, m.published, m.cleared, m.removed, m.waiting = copyMap(n.vips), copyMap(n.published), copyMap(n.cleared), copyMap(n.removed), copyMap(n.waiting)
		if n.write != nil {
			wr := *n.write
			wr.set = copyMap(n.write.set)
			m.write = &wr
		}
		if n.read != nil {
			r := *n.read
			r.marks = copyMap(n.read.marks)
			m.read = &r
		}
		c.nodes = append(c.nodes, &m)
	}
	return &c
}

func copyMap[V any](m map[netip.Addr]V) map[netip.Addr]V {
	out := make(map[netip.Addr]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (n *pNode) fenceOK(now time.Time) bool { return n.leading && now.Before(n.until) }

// drop is group.dropLocked: every address leaves the kernel.
func (n *pNode) drop() {
	n.leading = false
	n.gen++
	n.published, n.cleared, n.waiting = map[netip.Addr]bool{}, map[netip.Addr]bool{}, map[netip.Addr]pWait{}
	n.kernel = map[netip.Addr]time.Time{}
}

func (w *pWorld) broadcast(e pEvent) {
	for _, n := range w.nodes {
		n.queue = append(n.queue, e)
	}
}

// actions are the events that can happen next.
func (w *pWorld) actions(faults bool) []string {
	var out []string
	someStop := false
	for _, n := range w.nodes {
		someStop = someStop || n.stopping
	}
	for i, n := range w.nodes {
		id := fmt.Sprint(i)
		if n.write != nil && !n.write.committed {
			out = append(out, "commit"+id) // the API server, even if the node is frozen
		}
		if n.released {
			continue
		}
		if n.stopping && !n.halted && !n.frozen {
			out = append(out, "halt"+id)
		}
		if faults && w.stops && !someStop && !n.frozen {
			out = append(out, "stop"+id) // one node of the run stops
		}
		if n.frozen {
			if faults {
				out = append(out, "thaw"+id)
			}
			continue
		}
		if n.write == nil {
			out = append(out, "write"+id)
		}
		if n.write != nil && n.write.committed {
			out = append(out, "answer"+id)
		}
		if len(n.queue) > 0 {
			out = append(out, "deliver"+id)
		}
		if n.read == nil && !n.halted && n.fenceOK(w.now) && (len(n.want()) > 0 || w.mutate == "no-publish" && len(n.vips) > len(n.cleared)) {
			out = append(out, "read"+id)
		}
		if n.read != nil {
			out = append(out, "use"+id)
		}
		if n.leading && !w.now.Before(n.until) {
			out = append(out, "fence"+id)
		}
		if len(w.letGo(n)) > 0 {
			out = append(out, "letgo"+id)
		}
		if faults {
			out = append(out, "freeze"+id)
			if l := w.store[HeartbeatName(n.name)]; l != nil && !l.deleting {
				out = append(out, "delete"+id)
			}
		}
	}
	return append(out, "tick")
}

func (n *pNode) want() []netip.Addr {
	var out []netip.Addr
	for a := range n.published {
		if n.vips[a] && !n.cleared[a] {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	return out
}

// do runs one event. Each event on a node but a write, a read and a
// fault is followed by a pass that plans (c.poke); a pass that runs later
// plans from a newer view, the same as a later event.
func (w *pWorld) do(act string) {
	w.trace = append(w.trace, fmt.Sprintf("%s@%ds", act, w.now.Second()))
	if act == "tick" {
		w.now = w.now.Add(time.Second)
		for _, n := range w.nodes {
			for a, end := range n.kernel {
				if !w.now.Before(end) {
					delete(n.kernel, a)
				}
			}
		}
		return
	}
	n := w.nodes[int(act[len(act)-1]-'0')]
	switch ev := act[:len(act)-1]; ev {
	case "write", "commit", "read", "freeze", "thaw", "delete", "letgo", "stop", "halt":
		w.event(n, ev)
	default:
		w.event(n, ev)
		if !n.stopping { // a stopping node's pass loop has ended
			w.plan(n)
		}
	}
}

func (w *pWorld) event(n *pNode, ev string) {
	name := HeartbeatName(n.name)
	switch ev {
	case "write": // the elector starts a renewal: annotations() lists g.vips
		n.write = &pWrite{start: w.now, set: copyMap(n.vips), stopping: n.stopping, release: n.halted}
	case "commit": // the elector never writes a Lease marked for deletion
		n.write.committed = true
		if cur := w.store[name]; cur != nil && cur.deleting {
			n.write.readOnly = true
			return
		}
		n.write.created = w.store[name] == nil
		w.rv++
		l := &pLease{rv: w.rv, holder: n.name, holds: joinSet(n.write.set), stopping: n.write.stopping}
		if n.write.release {
			l.holder, l.holds = "", ""
		}
		w.store[name] = l
		w.broadcast(pEvent{lease: name, l: *l})
	case "answer": // election: an answer after the deadline counts for nothing
		wr := n.write
		n.write = nil
		if wr.release {
			n.released, n.leading = true, false
			n.kernel = map[netip.Addr]time.Time{} // (mutation release-first: they leave only now)
			return
		}
		if wr.readOnly {
			w.finish(n)
			return
		}
		if n.leading && wr.created {
			n.drop() // the Lease was deleted under the holder: step down
		}
		until := wr.start.Add(pRD)
		if !w.now.Before(until) {
			return
		}
		// group.Hold
		if n.leading && !w.now.Before(n.until) {
			n.drop()
		}
		n.leading, n.until = true, until
		n.published = wr.set
		for a := range n.cleared {
			n.kernel[a] = until.Add(pSlack)
		}
	case "deliver":
		e := n.queue[0]
		n.queue = n.queue[1:]
		b := beat{rv: fmt.Sprint(e.l.rv), holder: e.l.holder, ready: true, dur: pLD, holds: e.l.holds, deleting: e.l.deleting, stopping: e.l.stopping}
		n.beats.observe(e.lease, b, e.gone, w.now)
		if !e.gone {
			n.seen.saw(leaseVersion{key: pNS + "/" + e.lease, rv: b.rv, holder: b.holder, holds: b.holds, dur: pLD}, w.now)
		}
		w.claimOnWatch(n)
		if e.lease == name && e.l.deleting {
			w.finish(n) // the elector sees its own Lease marked
		}
	case "read": // the claim check's quorum read
		r := &pRead{want: n.want(), gen: n.gen, marks: copyMap(n.removed)}
		if w.mutate == "no-publish" { // claim what its Lease does not list yet
			r.want = nil
			for a := range n.vips {
				if !n.cleared[a] {
					r.want = append(r.want, a)
				}
			}
		}
		for k, l := range w.store {
			if k != name {
				r.list = append(r.list, leaseVersion{key: pNS + "/" + k, rv: fmt.Sprint(l.rv), holder: l.holder, holds: l.holds, dur: pLD})
			}
		}
		sort.Slice(r.list, func(i, j int) bool { return r.list[i].key < r.list[j].key })
		n.read = r
	case "use": // the read's answer: hold what no live Lease lists
		r := n.read
		n.read = nil
		if r.gen != n.gen || !n.fenceOK(w.now) {
			return
		}
		blocked, _, by := n.seen.claimed(self{name: n.name}, r.list, r.want, w.now)
		if w.mutate == "no-block" {
			blocked = nil
		}
		for _, a := range r.want {
			delete(n.waiting, a)
			switch {
			case !(n.stands(a, r.marks[a]) || w.mutate == "no-publish" && n.vips[a]) || n.cleared[a]:
			case blocked[a] != "":
				n.waiting[a] = pWait{by: by[a], mark: r.marks[a]}
			default:
				n.hold(a)
			}
		}
		w.claimOnWatch(n) // the watch may have shown them let go meanwhile
	case "fence": // the fence timer: stop announcing, remove every address
		n.drop()
	case "stop": // SIGTERM: say so (the next write), keep the addresses
		n.stopping = true
	case "halt": // handOver returned: remove every address (c.stopping: no claim after)
		n.halted = true
		n.gen++
		n.vips, n.cleared = map[netip.Addr]bool{}, map[netip.Addr]bool{}
		if w.mutate != "release-first" {
			n.kernel = map[netip.Addr]time.Time{}
		}
	case "freeze":
		n.frozen = true
	case "thaw":
		n.frozen = false
	case "delete": // kubectl delete lease: the finalizer keeps it, marked
		if w.mutate == "no-finalizer" {
			delete(w.store, name)
			w.broadcast(pEvent{lease: name, gone: true})
			return
		}
		l := *w.store[name]
		w.rv++
		l.rv, l.deleting = w.rv, true
		w.store[name] = &l
		w.broadcast(pEvent{lease: name, l: l})
	case "letgo": // spread.letGo: another node's marked heartbeat, unchanged for its duration
		for _, k := range w.letGo(n) {
			delete(w.store, k)
			w.broadcast(pEvent{lease: k, gone: true})
		}
	}
}

// stands is group.stands: a is published and was not removed since the
// check that saw its removal count mark.
func (n *pNode) stands(a netip.Addr, mark int) bool {
	return n.vips[a] && n.published[a] && n.removed[a] == mark
}

// hold is holdLocked: the address goes into the kernel until the fence.
func (n *pNode) hold(a netip.Addr) {
	n.cleared[a] = true
	delete(n.waiting, a)
	n.kernel[a] = n.until.Add(pSlack)
}

// claimOnWatch is Controller.letGo, on every version the watch delivers:
// the addresses whose blocking Leases all let go of them since the read
// that found them blocked are held without another read.
func (w *pWorld) claimOnWatch(n *pNode) {
	if !n.fenceOK(w.now) || n.halted {
		return
	}
	for _, a := range slices.SortedFunc(maps.Keys(n.waiting), netip.Addr.Compare) {
		wt := n.waiting[a]
		if !n.stands(a, wt.mark) || n.cleared[a] {
			continue
		}
		ok := n.seen.letGo(a, wt.by, w.now)
		if w.mutate == "letgo-stopping" { // a stopping heartbeat taken for one that let go
			ok = true
			for k := range wt.by {
				ok = ok && n.beats[strings.TrimPrefix(k, pNS+"/")].stopping
			}
		}
		if ok {
			n.hold(a)
		}
	}
}

// finish is the elector's on its own Lease marked for deletion: step down
// (the addresses leave first), then release it and take the finalizer off.
func (w *pWorld) finish(n *pNode) {
	if n.leading {
		n.drop()
	}
	name := HeartbeatName(n.name)
	if l := w.store[name]; l != nil && l.deleting {
		delete(w.store, name)
		w.broadcast(pEvent{lease: name, gone: true})
	}
}

// letGo are the marked heartbeats of other nodes that n may let go: its
// view shows the version the store has, unchanged for its duration.
func (w *pWorld) letGo(n *pNode) []string {
	var out []string
	for k, l := range w.store {
		b, ok := n.beats[k]
		if k != HeartbeatName(n.name) && l.deleting && ok && b.deleting && b.rv == fmt.Sprint(l.rv) && w.now.Sub(b.at) >= b.dur {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// plan is spread.place and the pass that follows it on node n: addresses
// placed here join its group (published by its next write), addresses
// placed elsewhere leave the interface at once.
func (w *pWorld) plan(n *pNode) {
	live, _ := n.beats.live(n.name, w.now)
	if n.fenceOK(w.now) {
		live = append(live, candidate{n.name, true})
	}
	no := func(string) bool { return false }
	nodes := eligible(live, no, no)
	us := make([]Unit, 0, len(w.addrs))
	for _, a := range w.addrs {
		us = append(us, Unit{Addrs: []netip.Addr{a}})
	}
	where := n.beats.place(us, nodes, n.name, w.now)
	for _, a := range w.addrs {
		switch {
		case where[a] == n.name:
			n.vips[a] = true
		case n.vips[a]:
			delete(n.kernel, a)
			delete(n.vips, a)
			delete(n.cleared, a)
			delete(n.published, a)
			delete(n.waiting, a)
			n.removed[a]++
		}
	}
}

// overlap names an address that is in two kernels now.
func (w *pWorld) overlap() string {
	for _, a := range w.addrs {
		var on []string
		for _, n := range w.nodes {
			if end, ok := n.kernel[a]; ok && w.now.Before(end) {
				on = append(on, n.name)
			}
		}
		if len(on) > 1 {
			return fmt.Sprintf("%s on %s", a, strings.Join(on, " and "))
		}
	}
	return ""
}

// catchUp delivers every version queued for node i, unless it is frozen;
// it returns the node's id for events.
func (w *pWorld) catchUp(t *testing.T, i int) (string, bool) {
	t.Helper()
	id := fmt.Sprint(i)
	if w.nodes[i].frozen {
		return id, false
	}
	for len(w.nodes[i].queue) > 0 {
		w.step(t, "deliver"+id)
	}
	return id, true
}

// fair runs every node in turn for ticks seconds, as a healthy cluster
// does: every version delivered, a renewal per second, a plan and a check
// after each.
func (w *pWorld) fair(t *testing.T, ticks int) {
	t.Helper()
	for range ticks {
		for round := 0; round < 3; round++ {
			for i, n := range w.nodes {
				if n.released {
					continue
				}
				id, ok := w.catchUp(t, i)
				if !ok {
					continue
				}
				if n.stopping && !n.halted {
					w.step(t, "halt"+id)
				}
				if n.leading && !w.now.Before(n.until) {
					w.step(t, "fence"+id)
				}
				if n.write == nil {
					w.step(t, "write"+id)
				}
				if !n.write.committed {
					w.step(t, "commit"+id)
				}
				w.step(t, "answer"+id)
				if n.read != nil {
					w.step(t, "use"+id)
				}
			}
			for i, n := range w.nodes {
				if n.released {
					continue
				}
				id, ok := w.catchUp(t, i)
				if !ok {
					continue
				}
				if n.read == nil && !n.halted && n.fenceOK(w.now) && len(n.want()) > 0 {
					w.step(t, "read"+id)
					w.step(t, "use"+id)
				}
			}
		}
		w.step(t, "tick")
	}
}

func (w *pWorld) step(t *testing.T, act string) {
	t.Helper()
	w.do(act)
	if o := w.overlap(); o != "" {
		t.Fatalf("%s after:\n%s", o, strings.Join(w.trace, " "))
	}
}

// unsettled names an address that is not on exactly one node.
func (w *pWorld) unsettled() string {
	for _, a := range w.addrs {
		var on []string
		for _, n := range w.nodes {
			if end, ok := n.kernel[a]; ok && w.now.Before(end) {
				on = append(on, n.name)
			}
		}
		if len(on) != 1 {
			return fmt.Sprintf("%s is on %v after a fair schedule; want one node\n%s", a, on, strings.Join(w.trace, " "))
		}
	}
	return ""
}

// key is the state, for the exhaustive search (times relative to now).
func (w *pWorld) key() string {
	var b strings.Builder
	rel := func(at time.Time) int64 { return int64(at.Sub(w.now) / time.Second) }
	for _, k := range slices.Sorted(maps.Keys(w.store)) {
		fmt.Fprintf(&b, "%s=%+v;", k, *w.store[k])
	}
	for _, n := range w.nodes {
		fmt.Fprintf(&b, "|%s f%t l%t u%d g%d s%t%t%t q%v k", n.name, n.frozen, n.leading, rel(n.until), n.gen, n.stopping, n.halted, n.released, n.queue)
		for _, a := range w.addrs {
			if end, ok := n.kernel[a]; ok {
				fmt.Fprintf(&b, "%s:%d,", a, rel(end))
			}
		}
		fmt.Fprintf(&b, " v%s p%s c%s", joinSet(n.vips), joinSet(n.published), joinSet(n.cleared))
		if n.write != nil {
			fmt.Fprintf(&b, " w%d%s%t%t%t%t%t", rel(n.write.start), joinSet(n.write.set), n.write.committed, n.write.created, n.write.readOnly, n.write.stopping, n.write.release)
		}
		if n.read != nil {
			fmt.Fprintf(&b, " r%v%v%d", n.read.list, n.read.want, n.read.gen)
			for _, a := range n.read.want { // (the counts matter only as "removed since the read")
				fmt.Fprintf(&b, "%t", n.removed[a] != n.read.marks[a])
			}
		}
		for _, a := range slices.SortedFunc(maps.Keys(n.waiting), netip.Addr.Compare) {
			fmt.Fprintf(&b, " w%s:%v:%t", a, n.waiting[a].by, n.removed[a] != n.waiting[a].mark)
		}
		for _, k := range slices.Sorted(maps.Keys(n.beats)) {
			x := n.beats[k]
			fmt.Fprintf(&b, " b%s:%s:%s:%s:%d:%t:%t", k, x.rv, x.holder, x.holds, rel(x.at), x.deleting, x.stopping)
		}
		for _, k := range slices.Sorted(maps.Keys(n.seen)) {
			x := n.seen[k]
			fmt.Fprintf(&b, " s%s:%s:%s:%d:%d:%v", k, x.rv, x.holds, rel(x.at), rel(x.gone), x.older)
		}
	}
	return b.String()
}

// explore runs every schedule of up to ticks seconds from w, at most
// perTick events between two ticks (perTick < 0: -perTick events in all). It returns how many distinct states it
// saw, and the first overlap with the events that led to it.
func explore(w *pWorld, ticks, perTick int, faults bool) (int, string) {
	// A state seen before with as many ticks and at least as many events
	// left has had every continuation explored.
	seen := map[string]int{}
	bad := ""
	var walk func(w *pWorld, ticks, left int)
	walk = func(w *pWorld, ticks, left int) {
		k := fmt.Sprint(ticks, w.key())
		if l, ok := seen[k]; ok && l >= left || bad != "" {
			return
		}
		seen[k] = left
		for _, act := range w.actions(faults) {
			nt, nl := ticks, left-1
			if act == "tick" {
				if ticks == 0 {
					continue
				}
				nt, nl = ticks-1, left
				if perTick >= 0 {
					nl = perTick
				}
			} else if left == 0 {
				continue
			}
			c := w.clone()
			c.do(act)
			if o := c.overlap(); o != "" {
				bad = o + " after:\n" + strings.Join(c.trace, " ")
				return
			}
			walk(c, nt, nl)
		}
	}
	walk(w, ticks, max(perTick, -perTick))
	return len(seen), bad
}

// Two nodes, two VIPs, from nothing: every order of writes, commits,
// answers, deliveries, reads and fence timers, 4 events a second for 2
// seconds.
func TestPermuteSpreadColdStart(t *testing.T) {
	n, bad := explore(newWorld(2, 2), 2, 4, false)
	if bad != "" {
		t.Fatal(bad)
	}
	t.Logf("%d states, no address on two nodes", n)
}

// Node a holds both VIPs; node b has just started: it holds its heartbeat
// and has caught up with a's, and a has not seen b's yet. From there,
// every order of 9 events over 2 seconds: the planned move of one VIP to b
// (a removes it and writes, b claims after it read that) in all its
// interleavings with the other events.
func TestPermuteSpreadJoin(t *testing.T) {
	w := newWorld(2, 2)
	b := w.nodes[1]
	b.frozen = true // not started yet
	w.fair(t, 3)
	b.frozen = false
	for len(b.queue) > 0 {
		w.step(t, "deliver1")
	}
	for _, act := range []string{"write1", "commit1", "answer1"} {
		w.step(t, act)
	}
	if len(w.nodes[0].kernel) != 2 || len(b.vips) != 1 {
		t.Fatalf("a holds %v, b wants %v; want a holding both, b wanting one", w.nodes[0].kernel, b.vips)
	}
	w.trace = nil
	// The move fits in the budget: one of the schedules explored.
	exploreAfter(t, w, []string{"deliver0", "write0", "commit0", "answer0", "write1", "commit1", "answer1", "read1", "use1"}, 1, 1, 9)
}

// Node a holds both VIPs; node b starts behind a lagging watch: every
// version of a's heartbeat is still queued for it. b takes its heartbeat,
// places both VIPs on itself (it sees no other node) and lists them. From
// there, every order of 7 events over 2 seconds: b's claim checks read a's
// newest version (listing both) while its watch delivers a's older ones
// (the first lists none). The claim check once fell back to an older
// version the watch delivered after a read, and claimed an address a
// still held: TestLeaseViewIgnoresAnOlderVersionFromALaggingWatch.
func TestPermuteSpreadLaggingWatch(t *testing.T) {
	w := newWorld(2, 2)
	b := w.nodes[1]
	b.frozen = true
	w.fair(t, 3)
	b.frozen = false
	for _, act := range []string{"write1", "commit1", "answer1", "write1", "commit1", "answer1"} {
		w.step(t, act)
	}
	if len(w.nodes[0].kernel) != 2 || len(b.want()) != 2 || len(b.queue) < 3 {
		t.Fatalf("a holds %v, b wants %v with %d versions queued; want a holding both, b wanting both behind its watch", w.nodes[0].kernel, b.want(), len(b.queue))
	}
	w.trace = nil
	exploreAfter(t, w, []string{"read1", "use1", "deliver1", "read1", "use1"}, 2, 0, 7)
}

// exploreAfter runs acts on a copy of w, which must end with a holding
// na addresses and b nb (the schedule is one of those explored), then
// explores every order of the given number of events over 2 seconds from w.
func exploreAfter(t *testing.T, w *pWorld, acts []string, na, nb, events int) {
	t.Helper()
	m := w.clone()
	for _, act := range acts {
		m.step(t, act)
	}
	if len(m.nodes[0].kernel) != na || len(m.nodes[1].kernel) != nb {
		t.Fatalf("after %v a holds %v and b %v; want %d and %d", acts, m.nodes[0].kernel, m.nodes[1].kernel, na, nb)
	}
	n, bad := explore(w, 2, -events, false)
	if bad != "" {
		t.Fatal(bad)
	}
	t.Logf("%d states, no address on two nodes", n)
}

// stopWorld: node a holds one VIP and b the other; a stops (SIGTERM)
// and its write saying so has committed (b has not seen it yet).
func stopWorld(t *testing.T, mutate string) *pWorld {
	w := newWorld(2, 2)
	w.mutate = mutate
	w.fair(t, 3)
	if len(w.nodes[0].kernel) != 1 || len(w.nodes[1].kernel) != 1 {
		t.Fatalf("a holds %v, b %v; want one each", w.nodes[0].kernel, w.nodes[1].kernel)
	}
	for _, act := range []string{"stop0", "write0", "commit0", "answer0"} {
		w.step(t, act)
	}
	w.trace = nil
	return w
}

// Every order of 9 events over 2 seconds after a stopped: b's placement,
// heartbeat write and claim check, a's halt (at any moment: its new owner
// listed the VIP, or handOverWait passed) and its release. The hand-over
// (a halts once b lists the VIP, b claims on its next read) is one of
// the schedules explored, and ends with b holding both.
func TestPermuteSpreadStop(t *testing.T) {
	exploreAfter(t, stopWorld(t, ""), []string{"deliver1", "write1", "commit1", "answer1", "halt0", "write0", "commit0", "read1", "use1"}, 0, 2, 9)
	// The test can fail: a stop that releases the heartbeat before its
	// addresses leave the kernel puts one on two nodes; so does a claim on
	// the watch that takes the stopping node's heartbeat for one that let go.
	for _, m := range []string{"release-first", "letgo-stopping"} {
		if _, bad := explore(stopWorld(t, m), 2, -9, false); !strings.Contains(bad, " on ") {
			t.Errorf("%s: no overlap found", m)
		} else {
			t.Logf("%s: %s", m, strings.SplitN(bad, "\n", 2)[0])
		}
	}
}

// randomRun runs a random schedule of events, faults included, on three
// nodes and three VIPs, then a fair one; it returns an overlap, or an
// address that is not on exactly one node at the end.
func randomRun(t *testing.T, seed uint64, mutate string) string {
	r := rand.New(rand.NewPCG(seed, 11))
	w := newWorld(3, 3)
	w.mutate = mutate
	w.stops = seed%4 == 3 // the other runs are those of before stops were modelled
	if seed%2 == 0 {
		w.fair(t, 2)
	}
	for range 120 {
		acts := w.actions(true)
		w.do(acts[r.IntN(len(acts))])
		if o := w.overlap(); o != "" {
			return o + " after:\n" + strings.Join(w.trace, " ")
		}
	}
	for _, n := range w.nodes {
		n.frozen = false
	}
	w.fair(t, 8)
	if bad := w.unsettled(); bad != "" {
		return bad + "\n" + w.key()
	}
	return ""
}

// Random schedules with faults, each followed by a fair one after which
// every VIP is on exactly one node.
func TestPermuteSpreadRandom(t *testing.T) {
	runs := 5000
	if testing.Short() {
		runs = 500
	}
	for seed := range runs {
		if bad := randomRun(t, uint64(seed), ""); bad != "" {
			t.Fatalf("seed %d: %s", seed, bad)
		}
	}
}

// The test can fail: with a rule of the claim switched off, random
// schedules find two owners.
func TestPermuteSpreadFindsABrokenRule(t *testing.T) {
	for _, m := range []string{"no-block", "no-publish", "no-finalizer"} {
		found := ""
		for seed := 0; seed < 5000 && found == ""; seed++ {
			found = randomRun(t, uint64(seed), m)
		}
		if !strings.Contains(found, " on ") {
			t.Errorf("%s: no overlap found in 5000 schedules", m)
			continue
		}
		t.Logf("%s: %s", m, strings.SplitN(found, "\n", 2)[0])
	}
}
