package peerfence

import (
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// This file steps the real Granter, Holding and Check through every order
// of the events around them: a holder cut off from the API that asks its
// peers for promises every second, a claimant that reaches the API, sees
// the holder's Lease expire and checks with the members before it takes
// the address; messages delivered in any order, late, twice or never, to
// some members and not others; a member that restarts and forgets; the
// holder's last Lease write committing late (a slow etcd), each node's
// watch delivering it when the order says, and the claimant's write
// conditional on the revision it checked; clocks that run at different
// rates. After every step it checks S1: the
// claimant has the address only once the holder's fence has passed, on
// the holder's clock (the kernel lifetime it set).

const tick = 500 * time.Millisecond

var (
	testTiming = Timing{For: 3200 * time.Millisecond, Margin: 1500 * time.Millisecond}
	late       = time.Second     // the kernel removes an expired address this late at most
	skew       = 0.05            // every clock runs within 5 % of real time
	lease      = 5 * time.Second // the Lease duration
	renew      = 3 * time.Second // the renew deadline
	ask        = time.Second     // the holder asks for promises this often
	epoch0     = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
)

type msg struct {
	kind     byte // 'p' promise asked, 'g' its answer, 'k' check asked, 'a' its answer
	from, to string
	sent     time.Time // 'p', 'g': when the holder asked, on its clock
	round    int       // 'k', 'a': the claimant's check round
	rev      uint64    // 'k', 'a': the revision of the Lease it checks
	ans      Answer
	due      int // the last tick it can arrive at
}

// appendKey writes m for world.key.
func (m msg) appendKey(b []byte) []byte {
	b = append(b, m.kind)
	b = append(b, m.from...)
	b = append(b, '>')
	b = append(b, m.to...)
	for _, v := range []int64{m.sent.UnixMilli(), int64(m.round), int64(m.rev), m.ans.Outstanding.Milliseconds(), int64(m.due)} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, v, 10)
	}
	b = strconv.AppendBool(b, m.ans.Granted)
	b = strconv.AppendBool(b, m.ans.Blocked)
	return append(b, ';')
}

type scenario struct {
	members  []string           // the holding's voters; the holder is the first, the claimant the last
	others   []string           // nodes the holder also asks that are not members
	rate     map[string]float64 // each node's clock rate
	horizon  int                // ticks
	delay    int                // a message arrives within this many ticks, or never
	dups     int                // messages that may arrive twice
	restarts int                // restarts of the second member
	// late: the holder's last Lease write, started at 0, commits at any
	// moment (a slow etcd) and each node's watch delivers it when the
	// order says; the claimant then waits a Lease duration again.
	late bool
	// asks, checks: how many request rounds the holder, and check rounds
	// the claimant, make (0: no limit); the holder's first is at tick
	// askFrom. Every request not made is as good as lost, which the orders
	// include anyway, so these only make the runs shorter.
	asks, checks, askFrom int
	broken                string // one rule switched off
}

type world struct {
	s      *scenario
	now    int // ticks
	g      map[string]*Granter
	h      *Holding
	c      *Check
	round  int
	asked  time.Time // the holder's last request round, on its clock
	asks   int
	retry  time.Time // the claimant's next check, on its clock
	has    bool      // the claimant has the address
	net    []msg
	dups   int
	starts int
	term   Term
	fail   string
	rev    uint64          // the Lease's revision in the store
	unseen map[string]bool // nodes whose watch has not delivered the late write yet
	view   uint64          // the claimant's revision of the Lease
}

func (s *scenario) holder() string    { return s.members[0] }
func (s *scenario) claimant() string  { return s.members[len(s.members)-1] }
func (s *scenario) restarter() string { return s.members[1] }

func newWorld(s *scenario) *world {
	w := &world{s: s, g: map[string]*Granter{}, term: Term{Holder: s.holder(), Instance: "i1", Epoch: 7}, rev: 1, view: 1, unseen: map[string]bool{}}
	for _, n := range append(append([]string{}, s.members...), s.others...) {
		// Every node watched the write that began the term before it.
		// Every node read the store before the write that began the term
		// (revision 1) and watched it.
		g := NewGranter(testTiming, w.clock(n).Add(-time.Hour))
		g.Read(0)
		g.Saw(w.term, 1)
		g.broken = s.broken
		w.g[n] = g
	}
	// The holder's last Lease write started at 0: its API fence runs for
	// the renew deadline; the API does not answer it again.
	w.h = NewHolding(w.term, s.members, testTiming, w.clock(s.holder()).Add(renew))
	w.h.broken = s.broken
	w.asked = w.clock(s.holder()).Add(-ask)
	w.retry = w.clock(s.claimant()).Add(lease) // it sees the Lease expire
	w.timers()
	return w
}

// clock is node n's monotonic clock now.
func (w *world) clock(n string) time.Time {
	real := time.Duration(w.now) * tick
	return epoch0.Add(time.Duration(float64(real) * w.s.rate[n]))
}

func (w *world) send(m msg) {
	m.due = w.now + w.s.delay
	if m.from == m.to { // a node's own answer does not cross the wire
		w.deliver(m)
		return
	}
	w.net = append(w.net, m)
}

func (w *world) deliver(m msg) {
	at := w.clock(m.to)
	switch m.kind {
	case 'p':
		w.send(msg{kind: 'g', from: m.to, to: m.from, sent: m.sent, ans: w.g[m.to].Promise(w.term, at)})
	case 'g':
		if m.ans.Granted {
			w.h.Granted(m.from, m.sent, at)
		}
	case 'k':
		w.send(msg{kind: 'a', from: m.to, to: m.from, round: m.round, rev: m.rev, ans: w.g[m.to].Check(w.term, m.rev, at)})
	case 'a':
		if w.has {
			return
		}
		w.c.Answered(m.from, m.rev, m.ans, at)
		if w.c.Claimable() {
			// The claimant writes the Lease based on the revision it
			// checked: it is the claimant's if the store has no newer
			// one; else the write conflicts and it reads the late write.
			if w.c.Rev() == w.rev {
				w.has = true
			} else {
				delete(w.unseen, w.s.claimant())
				w.viewed(w.rev)
			}
		} else if r := w.c.RetryAt(); r.After(w.retry) {
			w.retry = r
		}
	}
}

// viewed: the claimant's view of the Lease moved to revision rev (a new
// write of the holder's): it waits a Lease duration from now again.
func (w *world) viewed(rev uint64) {
	w.view = rev
	if w.c != nil {
		w.c.Read(rev)
	}
	if r := w.clock(w.s.claimant()).Add(lease); r.After(w.retry) {
		w.retry = r
	}
}

// watched: node n's watch delivers the late write.
func (w *world) watched(n string) {
	delete(w.unseen, n)
	w.g[n].Saw(w.term, 2)
	if n == w.s.claimant() {
		w.viewed(w.rev)
	}
}

// timers run what is due at this tick: the holder's request round, the
// claimant's check round.
func (w *world) timers() {
	h := w.s.holder()
	if at := w.clock(h); w.now >= w.s.askFrom && !w.h.Over(at) && !at.Before(w.asked.Add(ask)) && (w.s.asks == 0 || w.asks < w.s.asks) {
		w.asked = at
		w.asks++
		for _, n := range append(append([]string{}, w.s.members...), w.s.others...) {
			w.send(msg{kind: 'p', from: h, to: n, sent: at})
		}
	}
	c := w.s.claimant()
	if at := w.clock(c); !w.has && !at.Before(w.retry) && (w.s.checks == 0 || w.round < w.s.checks) {
		// One check gathers blocks over its rounds (a block is for good);
		// each round asks the members that have not blocked.
		w.round++
		if w.c == nil {
			w.c = NewCheck(w.term, w.view, w.s.members, testTiming)
			w.c.broken = w.s.broken
		}
		w.retry = at.Add(ask)
		for _, n := range w.s.members {
			if !w.c.Blocked(n) {
				w.send(msg{kind: 'k', from: c, to: n, round: w.round, rev: w.c.Rev()})
			}
		}
	}
}

// step kinds: deliver message i, let a tick pass, duplicate message i,
// restart the second member.
type step struct {
	kind byte
	i    int
}

func (w *world) steps() []step {
	if w.fail != "" || w.now >= w.s.horizon {
		return nil
	}
	out := []step{{kind: 't'}}
	for i := range w.net {
		out = append(out, step{kind: 'd', i: i})
		if w.dups < w.s.dups {
			out = append(out, step{kind: '2', i: i})
		}
	}
	if w.starts < w.s.restarts {
		out = append(out, step{kind: 'r'})
	}
	if w.s.late && w.rev == 1 {
		out = append(out, step{kind: 'w'})
	}
	for i := range w.watchers() {
		out = append(out, step{kind: 'v', i: i})
	}
	return out
}

func (w *world) apply(st step) {
	switch st.kind {
	case 't':
		w.now++
		kept := w.net[:0]
		for _, m := range w.net {
			if m.due >= w.now {
				kept = append(kept, m)
			}
		}
		w.net = kept
		w.timers()
	case 'd':
		m := w.net[st.i]
		w.net = append(w.net[:st.i:st.i], w.net[st.i+1:]...)
		w.deliver(m)
	case '2':
		w.dups++
		w.deliver(w.net[st.i])
	case 'w':
		w.rev = 2
		for n := range w.g {
			w.unseen[n] = true
		}
	case 'v':
		w.watched(w.watchers()[st.i])
	case 'r':
		w.starts++
		n := w.s.restarter()
		// It reads the store at once: the earliest read is the one that
		// lets the most writes count.
		w.g[n] = NewGranter(testTiming, w.clock(n))
		w.g[n].Read(w.rev)
		w.g[n].broken = w.s.broken
	}
	w.check()
}

// watchers are the nodes whose watch has the late write yet to deliver.
func (w *world) watchers() []string { return slices.Sorted(maps.Keys(w.unseen)) }

// check is S1 on the wire: the holder's kernel keeps the address until its
// fence, on its own clock.
func (w *world) check() {
	if kernel := w.h.Until().Add(late); w.has && w.clock(w.s.holder()).Before(kernel) {
		w.fail = fmt.Sprintf("two owners at %s: the claimant took the address while the holder's kernel keeps it for %s more",
			time.Duration(w.now)*tick, kernel.Sub(w.clock(w.s.holder())))
	}
}

// key is w's state, hashed: states that differ only in the order of
// messages in flight are one.
func (w *world) key() [2]uint64 {
	b := make([]byte, 0, 512)
	num := func(v int64) { b = strconv.AppendInt(b, v, 10); b = append(b, ' ') }
	flag := func(v bool) { b = strconv.AppendBool(b, v); b = append(b, ' ') }
	at := func(t time.Time) { num(t.UnixMilli()) }
	num(int64(w.now))
	flag(w.has)
	num(int64(w.round))
	num(int64(w.dups))
	num(int64(w.starts))
	num(int64(w.rev))
	num(int64(w.view))
	for _, n := range w.watchers() {
		b = append(b, n...)
	}
	at(w.asked)
	b = append(b, '|')
	at(w.h.api)
	flag(w.h.over)
	for _, n := range slices.Sorted(maps.Keys(w.h.peer)) {
		b = append(b, n...)
		at(w.h.peer[n])
	}
	num(int64(len(w.h.dups)))
	b = append(b, '|')
	for _, n := range slices.Sorted(maps.Keys(w.g)) {
		g := w.g[n]
		b = append(b, n...)
		at(g.quiet)
		flag(g.read)
		num(int64(g.from))
		// One run holds in these worlds: the term's.
		r := w.term.run()
		num(int64(g.seen[r]))
		at(g.until[r])
		num(int64(g.stops[r]))
		num(int64(g.checked[r.node()]))
	}
	b = append(b, '|')
	if w.c != nil {
		for _, n := range slices.Sorted(maps.Keys(w.c.blocked)) {
			b = append(b, n...)
		}
		at(w.c.wait)
		num(int64(w.c.rev))
	}
	at(w.retry)
	b = append(b, '|')
	ms := make([]string, len(w.net))
	for i, m := range w.net {
		ms[i] = string(m.appendKey(nil))
	}
	sort.Strings(ms)
	for _, m := range ms {
		b = append(b, m...)
	}
	return [2]uint64{maphash.Bytes(seed0, b), maphash.Bytes(seed1, b)}
}

var seed0, seed1 = maphash.MakeSeed(), maphash.MakeSeed()

// clone is a copy of w that shares nothing it changes.
func (w *world) clone() *world {
	c := *w
	c.g = make(map[string]*Granter, len(w.g))
	for n, g := range w.g {
		cg := *g
		cg.seen, cg.until, cg.stops, cg.checked = maps.Clone(g.seen), maps.Clone(g.until), maps.Clone(g.stops), maps.Clone(g.checked)
		c.g[n] = &cg
	}
	h := *w.h
	h.peer, h.dups = maps.Clone(w.h.peer), slices.Clone(w.h.dups)
	c.h = &h
	if w.c != nil {
		k := *w.c
		k.blocked = maps.Clone(w.c.blocked)
		c.c = &k
	}
	c.net = slices.Clone(w.net)
	c.unseen = maps.Clone(w.unseen)
	return &c
}

// explore runs every order of s's steps and returns the number of
// distinct states, the number of runs in which the claimant took the
// address, and the first failure.
func explore(s *scenario, limit int) (states, claimed int, fail string) {
	return exploreFrom(newWorld(s), nil, limit)
}

// exploreFrom runs every order of the steps after prefix, which led to w.
func exploreFrom(w0 *world, prefix0 []step, limit int) (states, claimed int, fail string) {
	seen := map[[2]uint64]bool{}
	var walk func(w *world, prefix []step)
	walk = func(w *world, prefix []step) {
		if fail != "" || len(seen) >= limit {
			return
		}
		k := w.key()
		if seen[k] {
			return
		}
		seen[k] = true
		if w.fail != "" {
			fail = w.fail + " after " + describe(prefix)
			return
		}
		next := w.steps()
		if len(next) == 0 && w.has {
			claimed++
		}
		for _, st := range next {
			c := w.clone()
			c.apply(st)
			walk(c, append(prefix[:len(prefix):len(prefix)], st))
		}
	}
	walk(w0, prefix0)
	return len(seen), claimed, fail
}

// wander runs random orders of s's steps.
func wander(s *scenario, seeds int) (claimed int, fail string) {
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		w := newWorld(s)
		var prefix []step
		for {
			next := w.steps()
			if len(next) == 0 {
				break
			}
			// Deliveries are likelier than ticks, so most runs see answers.
			st := next[r.IntN(len(next))]
			if r.IntN(4) == 0 {
				st = step{kind: 't'}
			}
			prefix = append(prefix, st)
			w.apply(st)
		}
		if w.fail != "" {
			return claimed, fmt.Sprintf("seed %d: %s after %s", seed, w.fail, describe(prefix))
		}
		if w.has {
			claimed++
		}
	}
	return claimed, ""
}

func describe(p []step) string {
	var b strings.Builder
	for _, st := range p {
		if st.kind == 't' {
			b.WriteByte('.')
		} else {
			fmt.Fprintf(&b, "%c%d", st.kind, st.i)
		}
	}
	return b.String()
}

// limit bounds the states one exploration may visit (about 3 million
// for the largest scenario here, 30 s on one core).
const limit = 6_000_000

func three(broken string) *scenario {
	return &scenario{members: []string{"a", "b", "c"}, rate: map[string]float64{"a": 1 - skew, "b": 1 + skew, "c": 1 + skew},
		horizon: 24, delay: 1, askFrom: 6, asks: 3, checks: 3, broken: broken}
}

// Every order of the three-node scenario keeps one owner, and in some of
// them the claimant does take the address (the test is not vacuous).
func TestPermuteHoldingThroughPeers(t *testing.T) {
	for name, s := range map[string]*scenario{
		"three":            three(""),
		"three, a restart": func() *scenario { s := three(""); s.restarts = 1; s.horizon = 24; return s }(),
		"three, twice":     func() *scenario { s := three(""); s.dups = 1; s.horizon = 24; return s }(),
		"a non-member asked": func() *scenario {
			s := three("")
			s.others, s.rate["x"], s.horizon = []string{"x"}, 1.0, 24
			return s
		}(),
	} {
		states, claimed, fail := explore(s, limit)
		explored(t, name, states, claimed, fail)
	}
}

// explored fails t unless every order was run, none with two owners, and
// in some the claimant took the address (the test is not vacuous).
func explored(t *testing.T, name string, states, claimed int, fail string) {
	t.Helper()
	t.Logf("%s: %d states, %d ends with the address claimed", name, states, claimed)
	if fail != "" {
		t.Errorf("%s: %s", name, fail)
	}
	if states >= limit {
		t.Errorf("%s: %d states or more: not every order was run", name, states)
	}
	if claimed == 0 {
		t.Errorf("%s: the claimant never took the address", name)
	}
}

// drive runs s in one order up to tick until: every message delivered at
// once but those lost says to leave (they expire), the late write
// committed at tick late and the second member restarted at tick restart,
// whose watch delivers the late write only after the restart. It returns
// the world and its steps, from which exploreFrom runs every order.
func drive(s *scenario, until, late, restart int, lost func(msg) bool) (*world, []step) {
	w := newWorld(s)
	var prefix []step
	for w.now < until && len(w.steps()) > 0 {
		pick := step{kind: 't'}
	find:
		for _, st := range w.steps() {
			switch st.kind {
			case 'd':
				if lost(w.net[st.i]) {
					continue
				}
			case 'r':
				if w.now != restart {
					continue
				}
			case 'w':
				if w.now != late {
					continue
				}
			case 'v':
				if w.watchers()[st.i] == s.restarter() && w.now < restart {
					continue
				}
			default:
				continue
			}
			pick = st
			break find
		}
		prefix = append(prefix, pick)
		w.apply(pick)
	}
	return w, prefix
}

// A member restarts after it blocked, with the holder's last Lease write
// committing late (a slow etcd) before or after, or not at all: every
// order of what follows each prefix.
// Each begins with the holder's requests to the restarting member lost,
// so that it blocks the claimant's check before it restarts.
func lateAndRestart(broken string) map[string]func() (*world, []step) {
	s := func() *scenario {
		return &scenario{members: []string{"a", "b", "c"}, rate: map[string]float64{"a": 1 - skew, "b": 1 + skew, "c": 1 + skew},
			horizon: 26, delay: 1, restarts: 1, late: true, broken: broken}
	}
	toB := func(m msg) bool { return m.kind == 'p' && m.to == "b" }
	from := func(s *scenario, w *world, p []step) (*world, []step) {
		s.asks, s.checks = w.asks+3, w.round+2
		return w, p
	}
	return map[string]func() (*world, []step){
		// b blocks a check of revision 1 at 5 s and restarts at 5.5 s; the
		// late write commits (revision 2) at 6 s, after b's first read, so
		// b may promise again; the claimant's blocks from revision 1 must
		// not count for a claim based on revision 2 (Check.Read).
		"a block, a restart, then the late write": func() (*world, []step) {
			s := s()
			w, p := drive(s, 11, 12, 11, toB)
			return from(s, w, p)
		},
		// The late write commits at 2 s and the claimant checks revision 2;
		// b blocks it, restarts at 7.5 s and its watch delivers revision 2
		// after its first read, which had it already: b must not promise
		// on it (Granter.Read).
		"the late write, a block, a restart, then a stale watch": func() (*world, []step) {
			s := s()
			w, p := drive(s, 14, 4, 15, toB)
			return from(s, w, p)
		},
		// No late write: b blocks at 5 s and restarts at 5.5 s, having
		// forgotten the block; it must not promise a holding it has not
		// seen written since (Granter.Saw).
		"a block, then a restart": func() (*world, []step) {
			s := s()
			s.late = false
			w, p := drive(s, 11, -1, 11, toB)
			return from(s, w, p)
		},
	}
}

func TestPermuteLateWriteAndRestart(t *testing.T) {
	for name, start := range lateAndRestart("") {
		w, p := start()
		states, claimed, fail := exploreFrom(w, p, limit)
		explored(t, name, states, claimed, fail)
	}
}

// Five members, longer runs, everything at once: random orders.
func TestWanderHoldingThroughPeers(t *testing.T) {
	s := &scenario{members: []string{"a", "b", "c", "d", "e"}, others: []string{"x"},
		rate:    map[string]float64{"a": 1 - skew, "b": 1 + skew, "c": 1.0, "d": 1 - skew/2, "e": 1 + skew, "x": 1},
		horizon: 80, delay: 6, dups: 3, restarts: 1, late: true}
	claimed, fail := wander(s, 20000)
	t.Logf("20000 random runs, %d with the address claimed", claimed)
	if fail != "" {
		t.Error(fail)
	}
	if claimed == 0 {
		t.Error("the claimant never took the address")
	}
}

// Each rule of the protocol switched off alone lets two nodes own the
// address in some order the tests run.
func TestPermuteCatchesEveryBrokenRule(t *testing.T) {
	for _, c := range []struct{ broken, why string }{
		{"grant-blocked", "a granter promises a holding it blocked"},
		{"block-outstanding", "a check blocks although a promise is outstanding"},
		{"count-twice", "the holder counts one member's promises twice"},
		{"earliest-ignored", "the holder's fence is its latest promise, not a majority's"},
		{"no-margin", "the holder takes no margin off a promise"},
		{"any-voter", "the holder counts a node that is not a member"},
		{"one-is-enough", "the claimant claims on one block"},
		{"check-early", "a restarted granter answers a check at once"},
		{"grant-unseen", "a restarted granter promises a holding it has not seen written"},
		{"blocks-carried", "a claimant counts blocks given before the revision it claims from"},
		{"stale-start", "a restarted granter counts a write it read before it started"},
	} {
		var s *scenario
		switch c.broken {
		case "blocks-carried", "stale-start", "grant-unseen":
			// Each is caught in the order written for it.
			name := map[string]string{"blocks-carried": "a block, a restart, then the late write",
				"stale-start":  "the late write, a block, a restart, then a stale watch",
				"grant-unseen": "a block, then a restart"}[c.broken]
			w, p := lateAndRestart(c.broken)[name]()
			states, _, fail := exploreFrom(w, p, limit)
			if fail == "" {
				t.Errorf("%s (%s): no order found two owners in %d states", c.broken, c.why, states)
				continue
			}
			t.Logf("%s: %s", c.broken, fail)
			continue
		case "check-early":
			s = three(c.broken)
			s.restarts, s.horizon = 1, 24
		case "grant-blocked":
			// A promise after a block extends a holding only if it asks
			// once more than three(): its fence outlives its last request
			// by For - Margin.
			s = three(c.broken)
			s.asks = 4
		case "any-voter":
			s = three(c.broken)
			s.others, s.rate["x"], s.horizon = []string{"x"}, 1.0, 24
		default:
			s = three(c.broken)
		}
		states, _, fail := explore(s, limit)
		if fail == "" {
			t.Errorf("%s (%s): no order found two owners in %d states", c.broken, c.why, states)
			continue
		}
		t.Logf("%s: %s", c.broken, fail)
	}
}

func TestTimingAndMembers(t *testing.T) {
	for _, c := range []struct {
		t    Timing
		skew float64
		want string
	}{
		{testTiming, skew, ""},
		{Timing{For: time.Second, Margin: time.Second}, 0, "not longer than its margin"},
		{Timing{For: 5 * time.Second, Margin: time.Second}, 0, "longer than the lease duration 5s"},
		{Timing{For: 3 * time.Second, Margin: 1050 * time.Millisecond}, 0.01, "does not cover a late removal of 1s and a clock skew of 0.01"},
		// The first version's timing: the margin covered the rates only.
		{Timing{For: 4 * time.Second, Margin: time.Second}, skew, "does not cover a late removal"},
		{testTiming, -0.1, "neither can be negative"},
	} {
		err := c.t.Valid(c.skew, late, lease)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v skew %g: got %v, want %q", c.t, c.skew, err, c.want)
		}
	}
	if _, err := Members([]string{"a", "b", "a"}); err == nil || !strings.Contains(err.Error(), "needs at least 3") {
		t.Errorf("two distinct members: got %v", err)
	}
	if m, err := Members([]string{"c", "a", "b", "a"}); err != nil || strings.Join(m, ",") != "a,b,c" {
		t.Errorf("got %v %v, want a,b,c", m, err)
	}
	for n, k := range map[int]int{3: 2, 4: 3, 5: 3, 6: 4} {
		if Majority(n) != k {
			t.Errorf("Majority(%d) = %d, want %d", n, Majority(n), k)
		}
	}
}
