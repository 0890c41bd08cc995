// Package peerfence is the fence a majority of vipd nodes can extend when
// the API server cannot (docs/safety.md, "Holding through peers"). It holds
// the protocol's decisions only: no clock, no transport, no lock, so that
// the permutation tests step this code, not a model of it. Three roles:
//
//   - Granter: every node keeps one, the holder included. It promises a
//     holding not to let its addresses be claimed before a time, and once a
//     claimant has checked with it while nothing was outstanding it never
//     promises that holding again.
//   - Holding: the holder's fence. It is the later of what the API
//     confirmed and what a majority of the holding's members promised, and
//     once it has passed it is over for good.
//   - Check: a claimant's count of the answers. It may claim when a
//     majority of the same members said that nothing is outstanding.
//
// Any majority that promised and any majority that was checked share a
// member, and that member answered one before the other: a check after an
// outstanding promise does not block, and a promise after a block is
// refused. So a claim succeeds only after the holder's fence has passed.
package peerfence

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Term names one holding: the holder's node, its process (the Lease's
// vipd.io/instance) and the epoch it began, which is the holder's write
// sequence (vipd.io/seal) of the Lease write that began it.
type Term struct {
	// Lease is the Lease's namespace/name: a process writes several,
	// each through its own Elector, whose write numbers (and so epochs)
	// are unrelated, and a write of one proves nothing about a claim
	// conditional on another's revision.
	Lease            string
	Holder, Instance string
	Epoch            uint64
}

func (t Term) String() string {
	return fmt.Sprintf("%s:%s/%s@%d", t.Lease, t.Holder, t.Instance, t.Epoch)
}

// run is a holder's process writing one Lease: its epochs only grow.
type run struct{ lease, holder, instance string }

func (t Term) run() run { return run{t.Lease, t.Holder, t.Instance} }

// node is a holder's node on one Lease, whichever process.
type node struct{ lease, holder string }

func (t Term) node() node { return node{t.Lease, t.Holder} }
func (r run) node() node  { return node{r.lease, r.holder} }

// Timing bounds the promises.
type Timing struct {
	// For is how long a promise lasts on the granter's clock from the
	// moment it is granted. It is at most the Lease duration less Margin,
	// so that a promise asked for before a holder's last Lease write has
	// run out by the time a claimant sees that write expire.
	For time.Duration
	// Margin is what a holder takes off each promise and a claimant adds
	// to each wait: how late the kernel removes an expired address, and
	// any difference in clock rates (see Valid).
	Margin time.Duration
}

// Valid checks that Margin covers an address the kernel removes up to late
// after its lifetime ends plus clocks whose rates differ by up to skew (a
// fraction; 0.001 is 1 ms per second) over a promise: the holder's kernel
// lets the address go by sent + For - Margin + late on its clock, which is
// before the granter's For from its grant, on the granter's clock, ends,
// when late + 2·skew·For < Margin.
func (t Timing) Valid(skew float64, late, leaseDuration time.Duration) error {
	switch {
	case skew < 0 || late < 0:
		return fmt.Errorf("a clock skew of %g and a late removal of %s: neither can be negative", skew, late)
	case t.For <= t.Margin:
		return fmt.Errorf("a promise of %s is not longer than its margin %s", t.For, t.Margin)
	case t.For+t.Margin > leaseDuration:
		return fmt.Errorf("a promise of %s plus its margin %s is longer than the lease duration %s", t.For, t.Margin, leaseDuration)
	case late+time.Duration(float64(t.For)*2*skew) >= t.Margin:
		return fmt.Errorf("a margin of %s does not cover a late removal of %s and a clock skew of %g over %s", t.Margin, late, skew, t.For)
	}
	return nil
}

// Majority is how many of n members make a majority.
func Majority(n int) int { return n/2 + 1 }

// Members are a holding's voters, each once, in order. A holding needs at
// least three: with two, a majority is both, and the fence a holder keeps
// alone is the API's.
func Members(names []string) ([]string, error) {
	m := slices.Clone(names)
	sort.Strings(m)
	m = slices.Compact(m)
	if len(m) < 3 {
		return nil, fmt.Errorf("%d vipd nodes %v: holding through peers needs at least 3 (a majority of 2 is both)", len(m), m)
	}
	return m, nil
}

// Answer is a granter's reply to a promise or a check.
type Answer struct {
	// Granted: a promise of Timing.For from the moment it was granted.
	Granted bool
	// Blocked: nothing was outstanding, and no promise of this holding
	// (or an earlier epoch of its process) will be granted again.
	Blocked bool
	// Outstanding: a promise runs for this long yet (on the granter's
	// clock); the claimant waits it out and checks again.
	Outstanding time.Duration
	// Why is set when neither was given.
	Why string
}

// Granter is one node's promises and blocks.
type Granter struct {
	t     Timing
	quiet time.Time      // answers no check before (Restarted)
	read  bool           // Read was called
	from  uint64         // the store's revision at the first read after starting
	seen  map[run]uint64 // the newest epoch of each run written since it started
	until map[run]time.Time
	stops map[run]uint64 // epochs up to this are blocked
	// checked: the newest revision a claimant checked each holder node
	// at here and was blocked; a write of that node at or before it
	// proves nothing (a watch can deliver it late).
	checked map[node]uint64
	broken  string // switches one rule off (tests only)
}

// NewGranter returns a granter that started at now. Having forgotten what
// it promised before (a restart), it answers no check until a promise it
// may have granted then has run out; having forgotten what it blocked, it
// grants only holdings written after its first read (Read, Saw).
func NewGranter(t Timing, now time.Time) *Granter {
	return &Granter{t: t, quiet: now.Add(t.For + t.Margin), seen: map[run]uint64{}, until: map[run]time.Time{}, stops: map[run]uint64{}, checked: map[node]uint64{}}
}

// Read: the first consistent read of the Leases after this granter started
// (a quorum read, not a cache) found the store at revision rev (the list's
// resourceVersion; revisions of one resource compare, see
// k8s.io/apimachinery/pkg/util/resourceversion). A block this node gave
// before it started was given to a claimant that had read the Lease at
// that revision or an earlier one; a claim based on it succeeds only if
// the holder writes nothing after it. So a write after rev proves that no
// such claim succeeded, and a write at or before rev proves nothing.
func (g *Granter) Read(rev uint64) {
	if !g.read {
		g.read, g.from = true, rev
	}
}

// Saw is a write of a holding's Lease that this node watched, with the
// epoch it carries and the revision it committed at. Only writes after
// the first read count (Read), and only those after the newest revision a
// claimant was blocked at for that holder (Check): a watch can deliver
// older ones late, and those prove nothing about a claim.
func (g *Granter) Saw(t Term, rev uint64) {
	if g.broken != "stale-start" && (!g.read || rev <= g.from) {
		return
	}
	if g.broken != "seen-after-block" && rev <= g.checked[t.node()] {
		return
	}
	r := t.run()
	if t.Epoch > g.seen[r] {
		g.seen[r] = t.Epoch
	}
}

// Promise answers a holder that asks not to be claimed from.
func (g *Granter) Promise(t Term, now time.Time) Answer {
	r := t.run()
	switch {
	case g.broken != "grant-blocked" && t.Epoch <= g.stops[r]:
		return Answer{Why: "a claimant checked " + t.String() + " here: it has ended"}
	case g.broken != "grant-unseen" && t.Epoch > g.seen[r]:
		return Answer{Why: "no write of " + t.String() + " seen since this node started"}
	}
	if u := now.Add(g.t.For); u.After(g.until[r]) {
		g.until[r] = u
	}
	return Answer{Granted: true}
}

// Check answers a claimant about to take a holding's addresses, for a
// claim based on revision rev of its Lease. It blocks the holding only
// when no promise to its holder is outstanding.
func (g *Granter) Check(t Term, rev uint64, now time.Time) Answer {
	r := t.run()
	if g.broken != "check-early" && now.Before(g.quiet) {
		return Answer{Outstanding: g.quiet.Sub(now), Why: "this node started " + (g.t.For + g.t.Margin - g.quiet.Sub(now)).String() + " ago and may have promised before"}
	}
	// A node holds through one process at a time (S4), but the term a
	// claimant checks can name another process or an older epoch of the
	// holder than the one that asks for promises (an old copy of the
	// Lease written back): any promise to the holder holds the check up,
	// and a block ends every run of the holder seen here, up to the epoch
	// seen. A write of the holder seen later counts only if it is after
	// rev (Saw): then the claim based on rev fails.
	for pr, u := range g.until {
		if (pr == r || pr.node() == t.node() && g.broken != "one-run") && g.broken != "block-outstanding" && now.Before(u) {
			return Answer{Outstanding: u.Sub(now)}
		}
	}
	if t.Epoch > g.stops[r] {
		g.stops[r] = t.Epoch
	}
	if rev > g.checked[t.node()] {
		g.checked[t.node()] = rev
	}
	for pr, e := range g.seen {
		if pr.node() == t.node() && e > g.stops[pr] && (pr != r || g.broken != "older-epoch") && (pr == r || g.broken != "one-run") {
			g.stops[pr] = e
		}
	}
	return Answer{Blocked: true}
}

// Holding is a holder's fence for one term, on its own clock.
type Holding struct {
	term    Term
	t       Timing
	members []string
	api     time.Time            // the fence the API confirmed
	peer    map[string]time.Time // each member's promise, less the margin
	over    bool
	end     time.Time // no request sent at or after counts (Ending)
	broken  string    // switches one rule off (tests only)
	dups    []time.Time
}

// NewHolding starts a holding whose API fence runs until api.
func NewHolding(term Term, members []string, t Timing, api time.Time) *Holding {
	return &Holding{term: term, t: t, members: members, api: api, peer: map[string]time.Time{}}
}

// Term is the holding's.
func (h *Holding) Term() Term { return h.term }

// Members are the holding's voters.
func (h *Holding) Members() []string { return h.members }

// Renewed: a Lease write started at sent succeeded, so the API fence runs
// until sent plus the renew deadline (until). An answer after the fence
// passed extends nothing: the holding is over (S5).
func (h *Holding) Renewed(until, now time.Time) {
	if h.Over(now) || !until.After(h.api) {
		return
	}
	h.api = until
}

// Ending: the holder is about to send a Lease write that begins another
// holding (a new epoch, other members); it must call Ending before the
// write leaves, with now. The new holding's members may share no majority
// with this one's, and a claimant that sees the write checks only them;
// so no request sent from now on counts here. The claimant sees the write
// no earlier than it was sent and then waits a Lease duration, longer than
// any promise asked for before now lasts (For + Margin).
func (h *Holding) Ending(now time.Time) {
	if h.broken != "members-switch" && (h.end.IsZero() || now.Before(h.end)) {
		h.end = now
	}
}

// Granted: member promised in answer to a request sent at sent. The
// promise began no earlier than sent, so it runs, on this clock, at least
// until sent + For less the margin.
func (h *Holding) Granted(member string, sent, now time.Time) {
	if h.Over(now) || !slices.Contains(h.members, member) && h.broken != "any-voter" || !h.end.IsZero() && !sent.Before(h.end) {
		return
	}
	b := sent.Add(h.t.For - h.t.Margin)
	if h.broken == "no-margin" {
		b = sent.Add(h.t.For)
	}
	if h.broken == "count-twice" {
		h.dups = append(h.dups, b)
	}
	if b.After(h.peer[member]) {
		h.peer[member] = b
	}
}

// Peers is how long a majority of the members has promised: the latest
// time that at least a majority's promises all reach.
func (h *Holding) Peers() time.Time {
	var bs []time.Time
	for _, b := range h.peer {
		bs = append(bs, b)
	}
	bs = append(bs, h.dups...)
	if len(bs) == 0 {
		return time.Time{}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].After(bs[j]) })
	k := Majority(len(h.members))
	if h.broken == "earliest-ignored" {
		return bs[0]
	}
	if len(bs) < k {
		return time.Time{}
	}
	return bs[k-1]
}

// Until is the fence: the later of the API's and the peers'.
func (h *Holding) Until() time.Time {
	if p := h.Peers(); p.After(h.api) {
		return p
	}
	return h.api
}

// Over reports whether the fence has passed; once it has, nothing extends
// it again.
func (h *Holding) Over(now time.Time) bool {
	if !h.over && !now.Before(h.Until()) {
		h.over = true
	}
	return h.over
}

// ThroughPeers reports whether the holding stands now only by the peers'
// promises (the API fence has passed).
func (h *Holding) ThroughPeers(now time.Time) bool {
	return !h.Over(now) && !now.Before(h.api)
}

// Check is a claimant's count of the answers for one term, over as many
// rounds as it takes: a block is for good, so a round asks again only the
// members that have not blocked (Blocked).
type Check struct {
	term    Term
	rev     uint64 // the revision of the Lease the claim will be based on
	t       Timing
	members []string
	blocked map[string]bool
	wait    time.Time // the latest outstanding promise, on this clock
	broken  string
}

// NewCheck starts a check of term with its holding's members, for a claim
// based on revision rev of its Lease (the version the claimant saw
// expire).
func NewCheck(term Term, rev uint64, members []string, t Timing) *Check {
	return &Check{term: term, rev: rev, t: t, members: members, blocked: map[string]bool{}}
}

// Read: the claimant's view of the Lease moved to revision rev. Blocks
// given before it count for nothing towards a claim based on rev: a member
// that blocked and then restarted may grant the holding again once it sees
// a write after its restart (Granter.Read), and rev may be one.
func (c *Check) Read(rev uint64) {
	if rev == c.rev {
		return
	}
	c.rev = rev
	if c.broken != "blocks-carried" {
		clear(c.blocked)
	}
}

// Rev is the revision the claim must be based on: a write of the Lease
// conditional on it (its resourceVersion), which fails if the holder wrote
// since.
func (c *Check) Rev() uint64 { return c.rev }

// Answered: member's answer to a check of revision rev arrived at at. An
// answer to a check of another revision counts for nothing (Read).
func (c *Check) Answered(member string, rev uint64, a Answer, at time.Time) {
	if !slices.Contains(c.members, member) || rev != c.rev && c.broken != "blocks-carried" {
		return
	}
	if a.Blocked {
		c.blocked[member] = true
	}
	if a.Outstanding > 0 {
		if w := at.Add(a.Outstanding + c.t.Margin); w.After(c.wait) {
			c.wait = w
		}
	}
}

// Claimable reports whether a majority of the members blocked the
// holding: its fence has passed, and it cannot be extended again.
func (c *Check) Claimable() bool {
	if c.broken == "one-is-enough" {
		return len(c.blocked) > 0
	}
	return len(c.blocked) >= Majority(len(c.members))
}

// Term is the holding checked.
func (c *Check) Term() Term { return c.term }

// Members are the holding's voters, as the claimant knows them.
func (c *Check) Members() []string { return c.members }

// Blocked reports whether member has blocked the holding.
func (c *Check) Blocked(member string) bool { return c.blocked[member] }

// RetryAt is when a new check may find the outstanding promises run out
// (zero: none was reported).
func (c *Check) RetryAt() time.Time { return c.wait }
