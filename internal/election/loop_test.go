package election

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// This file drives two election loops by hand against a model of the API
// server, so that a test can choose the order of every event: a write that
// commits and a separate, possibly late, answer; a watch that lags on one
// node only; a deletion; a gate change; a timer. Each scenario is a
// multiset of such steps, and the test runs every order of it, checking
// the safety invariants after every single step.

// store is the model API server: one Lease, resourceVersions, history.
type store struct {
	lease *coordinationv1.Lease // nil: absent
	rv    int
	// history is every version written, the oldest first.
	history []*coordinationv1.Lease
	nodes   []*node
	fail    func(format string, args ...any)
}

func (st *store) publish() {
	if st.lease != nil {
		st.history = append(st.history, st.lease.DeepCopy())
	}
	for _, n := range st.nodes {
		var l *coordinationv1.Lease
		if st.lease != nil {
			l = st.lease.DeepCopy()
		}
		n.watchQ = append(n.watchQ, l)
	}
}

// apply runs one attempt (or a release) against the store, as attempt and
// write do against a real API server.
func (st *store) apply(n *node, r request) result {
	res := result{start: r.start, epoch: r.epoch, offer: r.offer}
	base := r.base
	gr := leaseGVR.GroupResource()
	if r.offer {
		if st.lease == nil || base.ResourceVersion != st.lease.ResourceVersion {
			res.err = apierrors.NewConflict(gr, "plndr-cp-lock", errors.New("changed since read"))
			return res
		}
		st.rv++
		l := n.l.e.offered(st.lease)
		l.ResourceVersion = strconv.Itoa(st.rv)
		st.lease = l
		st.publish()
		res.lease = l.DeepCopy()
		return res
	}
	if r.unknown {
		if h := holder(st.lease); h != "" && !n.l.e.mine(st.lease) || r.look {
			if st.lease != nil {
				res.lease = st.lease.DeepCopy()
			}
			res.lease = st.lease.DeepCopy()
			return res
		}
		base = nil
		if st.lease != nil {
			base = st.lease.DeepCopy()
		}
	}
	switch {
	case base == nil && st.lease != nil:
		res.err = apierrors.NewAlreadyExists(gr, "plndr-cp-lock")
		return res
	case base != nil && st.lease == nil:
		res.err = apierrors.NewNotFound(gr, "plndr-cp-lock")
		return res
	case base != nil && base.ResourceVersion != st.lease.ResourceVersion:
		res.err = apierrors.NewConflict(gr, "plndr-cp-lock", fmt.Errorf("rv %s != %s", base.ResourceVersion, st.lease.ResourceVersion))
		return res
	}
	// A takeover of a Lease that names another node is allowed only once
	// that node's fence has passed: otherwise both may hold the VIP.
	// (The previous holder is the process whose token the Lease carries:
	// two processes may share one identity.)
	if prev := holder(st.lease); prev != "" && !n.l.e.mine(st.lease) {
		for _, o := range st.nodes {
			if o != n && o.l.e.mine(st.lease) && o.g.holding(n.clk.Now()) {
				st.fail("%s took the Lease over while %s still held the VIP (fence until %s, now %s)", n.id, o.id, o.g.until.Sub(n.clk.Now()), n.clk.Now())
			}
		}
	}
	res.created = st.lease == nil
	st.rv++
	res.covers = n.l.e.renews.Load() // as runDriver.write: before the annotations
	l := n.l.e.written(base, r.acquire, n.clk.Now())
	l.ResourceVersion = strconv.Itoa(st.rv)
	st.lease = l
	st.publish()
	res.lease, res.wrote = l.DeepCopy(), true
	return res
}

// pguard is a Guard that remembers its fence.
type pguard struct {
	held  bool
	until time.Time
	fail  func(format string, args ...any)
	id    string
}

func (g *pguard) Hold(until time.Time) { g.held, g.until = true, until }
func (g *pguard) Drop(string)          { g.held = false }

// holding: the VIP is on the interface (the kernel removes it at until).
func (g *pguard) holding(now time.Time) bool { return g.held && now.Before(g.until) }

type pgate struct {
	open bool
}

func (g *pgate) Open() bool               { return g.open }
func (g *pgate) Changed() <-chan struct{} { return nil }

type pstandby struct {
	standing bool
}

func (p *pstandby) Standing() bool           { return p.standing }
func (p *pstandby) Changed() <-chan struct{} { return nil }

type pending struct {
	r         request
	committed bool
	res       result
}

// node is one vipd: a loop, its driver state, its lagging watch.
type node struct {
	id      string
	l       *loop
	g       *pguard
	gate    *pgate
	sb      *pstandby
	st      *store
	clk     *clocktesting.FakeClock
	writes  []*pending
	watchQ  []*coordinationv1.Lease
	tryAt   *time.Time
	fenceAt *time.Time
	down    bool // shut down
}

func (n *node) now() time.Time      { return n.clk.Now() }
func (n *node) write(r request)     { n.writes = append(n.writes, &pending{r: r}) }
func (n *node) stopFence()          { n.fenceAt = nil }
func (n *node) try(d time.Duration) { t := n.clk.Now().Add(max(d, 0)); n.tryAt = &t }
func (n *node) fence(d time.Duration) {
	t := n.clk.Now().Add(max(d, 0))
	n.fenceAt = &t
}

func (n *node) release(base *coordinationv1.Lease, fresh bool) error {
	if n.g.held {
		n.st.fail("%s released the Lease while still holding the VIP (S3)", n.id)
	}
	st := n.st
	if !n.l.e.mine(st.lease) {
		return nil
	}
	st.rv++
	l := n.l.e.released(st.lease, n.clk.Now())
	l.ResourceVersion = strconv.Itoa(st.rv)
	st.lease = l
	st.publish()
	return nil
}

// world is two nodes on one store and one clock.
type world struct {
	st    *store
	clk   *clocktesting.FakeClock
	nodes map[string]*node
	order []*node
	log   []string
	t     *testing.T
	bad   bool
}

func newWorld(t *testing.T) *world {
	return newWorldNamed(t, "n1", "n2")
}

// newWorldNamed is a world of nodes n1 and n2 whose vipd processes take
// the identities given (equal: two hosts with one name).
func newWorldNamed(t *testing.T, identities ...string) *world {
	w := &world{clk: clocktesting.NewFakeClock(time.Unix(1000, 0)), nodes: map[string]*node{}, t: t}
	w.st = &store{fail: w.fail}
	for i, id := range []string{"n1", "n2"} {
		n := &node{id: id, st: w.st, clk: w.clk, gate: &pgate{open: true}, sb: &pstandby{}}
		n.g = &pguard{fail: w.fail, id: id}
		e, err := New(Options{Client: fake.NewClientset(), Namespace: "kube-system", Name: "plndr-cp-lock", Identity: identities[i],
			Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
			Guard:  n.g, Gate: n.gate, Standby: n.sb, Clock: w.clk})
		if err != nil {
			t.Fatal(err)
		}
		n.l = &loop{e: e, d: n}
		n.try(0) // as Run starts
		w.nodes[id] = n
		w.order = append(w.order, n)
		w.st.nodes = append(w.st.nodes, n)
	}
	return w
}

func (w *world) fail(format string, args ...any) {
	if !w.bad {
		w.bad = true
		w.t.Errorf("%s\nsteps: %s", fmt.Sprintf(format, args...), strings.Join(w.log, ", "))
	}
}

// check is the invariant after every step: never two nodes with the VIP.
func (w *world) check() {
	now := w.clk.Now()
	var holders []string
	for _, n := range w.order {
		if n.g.holding(now) {
			holders = append(holders, n.id)
		}
	}
	if len(holders) > 1 {
		w.fail("two nodes hold the VIP: %v", holders)
	}
}

// step runs one named step; a step that does not apply now is a no-op.
func (w *world) step(s string) {
	w.log = append(w.log, s)
	parts := strings.SplitN(s, ":", 2)
	verb, n := parts[0], (*node)(nil)
	if len(parts) == 2 {
		n = w.nodes[parts[1]]
		if n.down && verb != "commit" {
			return
		}
	}
	switch verb {
	case "tick": // the clock moves to the next timer of any node, which fires
		var next *time.Time
		for _, m := range w.order {
			for _, t := range []*time.Time{m.fenceAt, m.tryAt} {
				if t != nil && !m.down && (next == nil || t.Before(*next)) {
					next = t
				}
			}
		}
		if next == nil {
			return
		}
		if next.After(w.clk.Now()) {
			w.clk.SetTime(*next)
		}
		w.check()
		for _, m := range w.order {
			if m.down {
				continue
			}
			if m.fenceAt != nil && !m.fenceAt.After(w.clk.Now()) {
				m.fenceAt = nil
				m.l.onFence()
			}
			if m.tryAt != nil && !m.tryAt.After(w.clk.Now()) {
				m.tryAt = nil
				m.l.onTry()
			}
		}
	case "commit": // the oldest uncommitted write reaches the API server
		for _, p := range n.writes {
			if !p.committed {
				p.committed, p.res = true, w.st.apply(n, p.r)
				break
			}
		}
	case "answer": // the oldest committed write's answer reaches the node
		if len(n.writes) > 0 && n.writes[0].committed {
			p := n.writes[0]
			n.writes = n.writes[1:]
			if !w.clk.Now().Before(p.r.start.Add(p.r.timeout)) {
				p.res = result{err: errors.New("context deadline exceeded"), start: p.r.start, epoch: p.r.epoch}
			}
			n.l.onResult(p.res)
		}
	case "lost": // the oldest write times out without reaching the server
		if len(n.writes) > 0 && !n.writes[0].committed {
			p := n.writes[0]
			n.writes = n.writes[1:]
			n.l.onResult(result{err: errors.New("context deadline exceeded"), start: p.r.start, epoch: p.r.epoch})
		}
	case "watch": // the node's watch delivers the next version
		if len(n.watchQ) > 0 {
			l := n.watchQ[0]
			n.watchQ = n.watchQ[1:]
			n.l.onObserve(l)
		}
	case "stall": // the process is frozen for longer than the renew deadline
		w.clk.Step(3500 * time.Millisecond)
	case "close":
		n.gate.open = false
		n.l.onGate()
	case "open":
		n.gate.open = true
		n.l.onGate()
	case "renew": // Elector.Renew (a VIP published)
		n.l.e.Renew()
	case "asked": // Run's loop takes the request
		select {
		case <-n.l.e.renew:
			n.l.onAsked()
		default:
		}
	case "cordon": // kubectl cordon (drain)
		n.sb.standing = true
		n.l.onStandby()
	case "uncordon":
		n.sb.standing = false
		n.l.onStandby()
	case "edit": // someone else clears the holder (kubectl patch ... holderIdentity: null)
		w.foreign(func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = nil })
	case "shorten": // someone else sets leaseDurationSeconds: 1
		w.foreign(func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr.To(int32(1)) })
	case "replay": // a GitOps tool writes back the first copy of the Lease it saw with a holder
		for _, old := range w.st.history {
			if holder(old) != "" {
				w.foreign(func(l *coordinationv1.Lease) { *l = *old.DeepCopy() })
				break
			}
		}
	case "delete": // kubectl delete lease
		if w.st.lease != nil {
			w.st.lease = nil
			w.st.publish()
		}
	case "stop": // SIGTERM; the write in flight answers in time if committed
		var p *result
		if len(n.writes) > 0 && n.writes[0].committed {
			p = &n.writes[0].res
		}
		n.writes = nil
		n.l.onShutdown(p)
		n.down, n.tryAt, n.fenceAt = true, nil, nil
	default:
		w.t.Fatalf("unknown step %q", s)
	}
	w.check()
}

// foreign is a write by someone other than vipd: edit changes the stored
// Lease, which keeps every annotation (a merge patch, kubectl edit).
func (w *world) foreign(edit func(*coordinationv1.Lease)) {
	if w.st.lease == nil {
		return
	}
	l := w.st.lease.DeepCopy()
	edit(l)
	w.st.rv++
	l.ResourceVersion = strconv.Itoa(w.st.rv)
	w.st.lease = l
	w.st.publish()
}

// setup makes n1 the holder, seen by both watches.
func (w *world) setup() {
	for _, s := range []string{"tick", "commit:n1", "answer:n1", "commit:n2", "answer:n2", "watch:n1", "watch:n2", "watch:n1", "watch:n2"} {
		w.step(s)
	}
	if !w.nodes["n1"].g.held || w.nodes["n2"].g.held {
		w.t.Fatalf("setup: n1 held=%v n2 held=%v; steps %v", w.nodes["n1"].g.held, w.nodes["n2"].g.held, w.log)
	}
}

// permutations calls f with every distinct order of steps.
func permutations(steps []string, f func([]string)) int {
	count := map[string]int{}
	var keys []string
	for _, s := range steps {
		if count[s] == 0 {
			keys = append(keys, s)
		}
		count[s]++
	}
	seq := make([]string, 0, len(steps))
	runs := 0
	var rec func()
	rec = func() {
		if len(seq) == len(steps) {
			runs++
			f(seq)
			return
		}
		for _, k := range keys {
			if count[k] == 0 {
				continue
			}
			count[k]--
			seq = append(seq, k)
			rec()
			seq = seq[:len(seq)-1]
			count[k]++
		}
	}
	rec()
	return runs
}

// scenario is a prefix run in order, then every order of steps.
type scenario struct {
	name   string
	prefix string
	steps  []string
}

func TestPermutations(t *testing.T) {
	runScenarios(t, newWorld, []scenario{
		// Defect: the gate closes and reopens while a renewal that
		// committed answers late; n2 takes the released Lease meanwhile.
		{"gate flaps during a slow renewal", "tick commit:n1", []string{"close:n1", "open:n1", "answer:n1", "watch:n2", "watch:n2", "tick", "commit:n2", "answer:n2"}},
		// Defect: kubectl delete lease while the holder looks partitioned.
		{"lease deleted while the holder is partitioned", "", []string{"delete", "watch:n2", "tick", "tick", "tick", "commit:n2", "answer:n2", "lost:n1", "tick"}},
		// The holder renews through a deletion and recreation.
		{"lease deleted while the holder renews", "", []string{"delete", "watch:n1", "watch:n2", "tick", "commit:n1", "answer:n1", "commit:n2", "answer:n2"}},
		// Writes that commit but answer late, on both nodes.
		{"late answers and a lagging watch", "tick", []string{"tick", "commit:n1", "lost:n1", "commit:n2", "answer:n2", "answer:n1", "watch:n2", "tick", "tick"}},
		// Planned handover racing a renewal.
		{"shutdown during a renewal", "tick commit:n1", []string{"stop:n1", "watch:n2", "watch:n2", "tick", "commit:n2", "answer:n2", "watch:n2", "tick"}},
		// A follower partitioned from the API server while the holder is not.
		{"follower partitioned", "tick commit:n1 answer:n1", []string{"tick", "tick", "tick", "commit:n2", "lost:n2", "watch:n2", "tick", "commit:n1", "answer:n1"}},
		// kubectl drain of the holder's node: it asks, n2 offers, it hands
		// over, n2 acquires; watches and answers in any order.
		{"cordoned holder hands over", "cordon:n1 tick commit:n1 answer:n1", []string{"watch:n2", "watch:n2", "commit:n2", "answer:n2", "watch:n1", "watch:n1", "commit:n2", "answer:n2", "tick"}},
		// Cordoned and uncordoned while n2's offer is in flight and n1 renews.
		{"cordon flaps during an offer", "cordon:n1 tick commit:n1 answer:n1 watch:n2 watch:n2", []string{"uncordon:n1", "commit:n2", "answer:n2", "watch:n1", "watch:n1", "tick", "commit:n1", "answer:n1", "watch:n2"}},
		// The successor goes away right after offering; n1 stalls.
		{"successor stops after offering", "cordon:n1 tick commit:n1 answer:n1 watch:n2 watch:n2 commit:n2", []string{"answer:n2", "stop:n2", "watch:n1", "watch:n1", "tick", "tick", "stall", "commit:n1", "answer:n1"}},
	})
}

// TestPermutationsOneIdentity: two hosts with one name (no vip_nodename,
// cloned machines): each process's token tells its Lease writes from the
// other's, so in every order at most one of them holds the VIP, and the
// other takes over only after a release or the holder's fence.
func TestPermutationsOneIdentity(t *testing.T) {
	same := func(t *testing.T) *world { return newWorldNamed(t, "host", "host") }
	runScenarios(t, same, []scenario{
		{"late answers and a lagging watch", "tick", []string{"tick", "commit:n1", "lost:n1", "commit:n2", "answer:n2", "answer:n1", "watch:n2", "tick", "tick"}},
		{"shutdown during a renewal", "tick commit:n1", []string{"stop:n1", "watch:n2", "watch:n2", "tick", "commit:n2", "answer:n2", "watch:n2", "tick"}},
		{"follower partitioned", "tick commit:n1 answer:n1", []string{"tick", "tick", "tick", "commit:n2", "lost:n2", "watch:n2", "tick", "commit:n1", "answer:n1"}},
		{"holder stalls", "", []string{"stall", "tick", "commit:n2", "answer:n2", "watch:n1", "tick", "commit:n1", "answer:n1", "watch:n2"}},
		{"lease deleted while the holder is partitioned", "", []string{"delete", "watch:n2", "tick", "tick", "tick", "commit:n2", "answer:n2", "lost:n1", "tick"}},
	})
}

// TestPermutationsForeignWrites: someone other than vipd clears the
// holder, shortens the duration, or writes an old copy back (S9), at any
// point of a renewal, a lagging watch and the follower's tries. The
// follower must not take the edited Lease for a release while the holder
// may still hold the VIP; the holder steps down when it sees the edit, and
// one of them holds again.
func TestPermutationsForeignWrites(t *testing.T) {
	var scs []scenario
	for _, edit := range []string{"edit", "shorten", "replay"} {
		scs = append(scs,
			// (A renewal first, so that an old copy differs from the Lease.)
			scenario{edit + " seen by the follower first", "tick commit:n1 answer:n1 watch:n2 watch:n1", []string{edit, "watch:n2", "tick", "commit:n2", "answer:n2", "watch:n1", "commit:n1", "answer:n1"}},
			scenario{edit + " during a renewal", "tick commit:n1 answer:n1 watch:n2 watch:n1 tick commit:n1", []string{edit, "answer:n1", "watch:n2", "watch:n2", "tick", "commit:n2", "answer:n2", "watch:n1"}},
			scenario{edit + " while the holder's watch lags", "tick commit:n1 answer:n1 watch:n2 watch:n1", []string{edit, "watch:n2", "tick", "tick", "commit:n2", "answer:n2", "commit:n1", "answer:n1"}},
		)
	}
	runScenarios(t, newWorld, scs)
}

// TestEditedLeaseIsTakenBack: after its holder is cleared by someone else,
// the holder steps down on the watch, takes the Lease back at once, and
// the follower, which counted it as holder meanwhile, stays a follower.
func TestEditedLeaseIsTakenBack(t *testing.T) {
	for _, edit := range []string{"edit", "shorten", "replay"} {
		t.Run(edit, func(t *testing.T) {
			w := newWorld(t)
			w.setup()
			n1, n2 := w.nodes["n1"], w.nodes["n2"]
			w.run("tick commit:n1 answer:n1 watch:n1 watch:n2 " + edit + " watch:n2")
			w.run("watch:n1")
			if n1.g.held {
				t.Fatalf("n1 kept the VIP after seeing its Lease %sed by someone else", edit)
			}
			if n1.l.e.Edited() == nil || !n1.l.e.Edited().Held {
				t.Fatalf("n1 does not report the edit: %+v", n1.l.e.Edited())
			}
			w.run("tick commit:n1 answer:n1 watch:n2 watch:n1")
			if !n1.g.held || holder(w.st.lease) != "n1" {
				t.Fatalf("n1 held=%v, holder %q: want n1 to take its Lease back at once", n1.g.held, holder(w.st.lease))
			}
			for range 10 {
				w.run("tick commit:n1 answer:n1 commit:n2 answer:n2 watch:n1 watch:n2")
			}
			if !n1.g.held || n2.g.held {
				t.Fatalf("after the edit n1 held=%v n2 held=%v", n1.g.held, n2.g.held)
			}
		})
	}
}

// TestEditedLeaseOfAGoneHolderIsTakenOver: an operator clears the holder
// of a Lease whose holder is gone ("unsticking" it): the follower takes
// it a lease duration after it saw the edit, not at once.
func TestEditedLeaseOfAGoneHolderIsTakenOver(t *testing.T) {
	w := newWorld(t)
	w.setup()
	n2 := w.nodes["n2"]
	w.nodes["n1"].down = true // frozen for good: its fence passes
	w.run("edit watch:n2")
	edited := w.clk.Now()
	for !n2.g.held && w.clk.Now().Sub(edited) < time.Minute {
		w.run("tick commit:n2 answer:n2 watch:n2")
	}
	if got := w.clk.Now().Sub(edited); !n2.g.held || got < 5*time.Second || got > 7*time.Second {
		t.Fatalf("n2 held=%v %s after the edit; want it after about the lease duration (5s)", n2.g.held, got)
	}
}

func runScenarios(t *testing.T, newW func(*testing.T) *world, scs []scenario) {
	for _, sc := range scs {
		t.Run(sc.name, func(t *testing.T) {
			runs := permutations(sc.steps, func(order []string) {
				w := newW(t)
				w.setup()
				for _, s := range append(strings.Fields(sc.prefix), order...) {
					w.step(s)
					if w.bad {
						return
					}
				}
			})
			t.Logf("%d orders", runs)
			if t.Failed() {
				t.FailNow()
			}
		})
	}
}

// TestShutdownDuringAcquireReleases: cancelled while its acquire is in
// flight, the elector takes the answer and releases the Lease it just got,
// so that it does not name a departed node for a lease duration.
func TestShutdownDuringAcquireReleases(t *testing.T) {
	w := newWorld(t)
	for _, s := range []string{"tick", "commit:n1", "stop:n1"} {
		w.step(s)
	}
	if h := holder(w.st.lease); h != "" {
		t.Fatalf("Lease holder %q after n1 stopped during its acquire; want released", h)
	}
	// n2 takes it on the release, without waiting for expiry.
	for _, s := range []string{"commit:n2", "answer:n2", "watch:n2", "watch:n2", "tick", "commit:n2", "answer:n2"} {
		w.step(s)
	}
	if !w.nodes["n2"].g.held {
		t.Fatalf("n2 did not take the released Lease: %v", w.log)
	}
}

// TestLateAcquireAnswerTriesAgain: an acquire answered after its deadline
// does not count, but the next try is scheduled at once (the Lease names
// this node, so it renews and holds).
func TestLateAcquireAnswerTriesAgain(t *testing.T) {
	w := newWorld(t)
	for _, s := range []string{"tick", "commit:n1"} {
		w.step(s)
	}
	n1 := w.nodes["n1"]
	// The answer arrived in time, but the loop takes it only after a stall.
	p := n1.writes[0]
	n1.writes = nil
	w.step("stall")
	n1.l.onResult(p.res)
	if n1.g.held {
		t.Fatal("a late answer made n1 hold the VIP")
	}
	if n1.tryAt == nil || n1.tryAt.After(w.clk.Now()) {
		t.Fatalf("no try scheduled after a late answer (tryAt %v)", n1.tryAt)
	}
	for _, s := range []string{"tick", "commit:n1", "answer:n1"} {
		w.step(s)
	}
	if !n1.g.held {
		t.Fatalf("n1 does not hold after trying again: %v", w.log)
	}
}

// run runs steps in order and fails the test on the first broken invariant.
func (w *world) run(steps string) {
	w.t.Helper()
	for _, s := range strings.Fields(steps) {
		w.step(s)
		if w.bad {
			w.t.FailNow()
		}
	}
}

// TestCordonedHolderHandsOver: kubectl drain of the holder's node. The
// holder asks for a successor, n2 offers, the holder drops the VIP and
// releases, n2 acquires at once; n1, cordoned, does not take it back.
func TestCordonedHolderHandsOver(t *testing.T) {
	w := newWorld(t)
	w.setup()
	n1, n2 := w.nodes["n1"], w.nodes["n2"]
	w.run("cordon:n1 commit:n1 answer:n1")
	if w.st.lease.Annotations[HandoverAnnotation] == "" {
		t.Fatalf("the cordoned holder's renewal does not ask for a successor: %v", w.st.lease.Annotations)
	}
	w.run("watch:n2 watch:n2 commit:n2 answer:n2")
	if got := w.st.lease.Annotations[SuccessorAnnotation]; got != "n2" {
		t.Fatalf("n2 did not offer (successor %q)", got)
	}
	w.run("watch:n1 watch:n1")
	if n1.g.held || holder(w.st.lease) != "" {
		t.Fatalf("n1 held=%v, Lease holder %q after n2's offer; want dropped and released", n1.g.held, holder(w.st.lease))
	}
	start := w.clk.Now()
	w.run("watch:n2 watch:n2 tick commit:n2 answer:n2")
	if !n2.g.held || w.clk.Now() != start {
		t.Fatalf("n2 held=%v after %s; want it at once", n2.g.held, w.clk.Now().Sub(start))
	}
	if a := w.st.lease.Annotations; a[SuccessorAnnotation] != "" || a[HandoverAnnotation] != "" {
		t.Fatalf("n2's Lease keeps the handover annotations: %v", a)
	}
	// n1 reads the Lease and stays a follower for good.
	for range 10 {
		w.run("tick commit:n1 answer:n1 commit:n2 answer:n2 watch:n1 watch:n2")
	}
	if n1.g.held || !n2.g.held {
		t.Fatalf("after handover n1 held=%v n2 held=%v", n1.g.held, n2.g.held)
	}
}

// TestCordonedHolderAloneKeeps: no other candidate (n2 cordoned too, or
// gone): the holder keeps the VIP, renewing, whatever the time.
func TestCordonedHolderAloneKeeps(t *testing.T) {
	for _, other := range []string{"cordon:n2", "stop:n2"} {
		t.Run(other, func(t *testing.T) {
			w := newWorld(t)
			w.setup()
			w.run(other + " cordon:n1")
			for range 20 {
				w.run("tick commit:n1 answer:n1 commit:n2 answer:n2 watch:n1 watch:n2")
			}
			if !w.nodes["n1"].g.held || holder(w.st.lease) != "n1" {
				t.Fatalf("the only candidate gave the VIP up: held=%v holder %q", w.nodes["n1"].g.held, holder(w.st.lease))
			}
		})
	}
}

// TestStandbyFollowerWaits: a released Lease goes to a node that is not
// cordoned first; a cordoned follower takes it only after it has been free
// for a lease duration (nobody else wants it).
func TestStandbyFollowerWaits(t *testing.T) {
	w := newWorld(t)
	w.setup()
	n2 := w.nodes["n2"]
	w.run("cordon:n2 stop:n1 watch:n2")
	released := w.clk.Now()
	for !n2.g.held && w.clk.Now().Sub(released) < time.Minute {
		w.run("tick commit:n2 answer:n2")
	}
	if got := w.clk.Now().Sub(released); !n2.g.held || got < 5*time.Second {
		t.Fatalf("cordoned n2 held=%v %s after the release; want it after the lease duration (5s)", n2.g.held, got)
	}
}

// TestSuccessorGoneTakesBack: the successor offers and dies before it
// acquires: the cordoned former holder takes the VIP back a lease duration
// after its release.
func TestSuccessorGoneTakesBack(t *testing.T) {
	w := newWorld(t)
	w.setup()
	n1 := w.nodes["n1"]
	w.run("cordon:n1 commit:n1 answer:n1 watch:n2 watch:n2 commit:n2 answer:n2 stop:n2 watch:n1 watch:n1")
	if n1.g.held {
		t.Fatal("n1 kept the VIP after the offer")
	}
	released := w.clk.Now()
	for !n1.g.held && w.clk.Now().Sub(released) < time.Minute {
		w.run("tick commit:n1 answer:n1 watch:n1")
	}
	if got := w.clk.Now().Sub(released); !n1.g.held || got < 5*time.Second || got > 7*time.Second {
		t.Fatalf("n1 held=%v %s after releasing to a successor that died; want it back after about the lease duration", n1.g.held, got)
	}
}

// TestRenewCoveredByTheWriteInFlight: Renew asks for a write of the
// annotations as they are now. One asked for before the write in flight
// made its annotations is covered by it; one asked for after needs another
// write, at once.
func TestRenewCoveredByTheWriteInFlight(t *testing.T) {
	w := newWorld(t)
	w.setup()
	n1 := w.nodes["n1"]
	writes := func(what string, want bool) {
		t.Helper()
		now := len(n1.writes) > 0 || n1.tryAt != nil && !n1.tryAt.After(w.clk.Now())
		if now != want {
			t.Fatalf("%s: a write now: %v, want %v; steps %v", what, now, want, w.log)
		}
	}
	w.run("tick renew:n1 asked:n1 renew:n1 commit:n1 asked:n1 answer:n1")
	writes("asked twice before the renewal in flight committed", false)
	w.run("renew:n1 asked:n1")
	writes("asked again", true)
	w.run("commit:n1 answer:n1 tick commit:n1 renew:n1 asked:n1 answer:n1")
	writes("asked after the renewal in flight committed", true)
	w.run("tick commit:n1 answer:n1")
	w.run("tick renew:n1 commit:n1 answer:n1 asked:n1")
	writes("asked before the renewal committed, taken after its answer", false)
}
