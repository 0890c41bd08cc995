package services

import (
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/vipd/vipd/internal/election"
)

// leaseVersion is one version of a Lease as a watch or a read shows it.
type leaseVersion struct {
	key    string // namespace/name
	rv     string
	holder string
	holds  string // HoldsAnnotation
	dur    time.Duration
	// instance is the writing process's token (election.InstanceAnnotation).
	instance string
	seal     election.Seal
	// def is the configured lease duration: how long a Lease changed by
	// someone else, seen first that way, blocks (its own duration may be
	// what was changed).
	def time.Duration
}

// lastOwn is the last version its holder wrote, seen from the version
// before an unfenced one: that version itself, or, when it was unfenced
// too, its prior (the zero value: none).
func lastOwn[T any](prev T, prevForeign bool, prevPrior *T) T {
	if !prevForeign {
		return prev
	}
	var zero T
	if prevPrior == nil {
		return zero
	}
	return *prevPrior
}

// self is this process as the claim check sees it: its node name and its
// token. A Lease under this node's name written by another process (a
// host with the same name) is another holder's.
type self struct{ name, token string }

// mine reports whether a Lease that holder and instance wrote is this
// process's (an older vipd writes no token: it is taken as this node's).
func (me self) mine(holder, instance string) bool {
	return holder == me.name && (instance == "" || instance == me.token)
}

// seenLease is a Lease's version as this node first saw it, and when.
type seenLease struct {
	rv     string
	at     time.Time
	holder string
	holds  string
	listed map[netip.Addr]bool // holds parsed
	dur    time.Duration
	gone   time.Time // when a read first missed it (deleted)
	// older are versions of the Lease seen before this one, the newest
	// last: a read that answers after the watch showed a newer version
	// returns one of them, and must not pass for a new renewal.
	older    []string
	instance string
	// trust judges the versions (S9); foreign says what someone other
	// than the holder changed in this one. Until priorUntil, prior, the
	// last version its holder wrote, still counts, as a deleted Lease's
	// last version does.
	trust      election.Trust
	foreign    string
	prior      *seenLease
	priorUntil time.Time
	// unknown: what its holder last wrote is not known (the first
	// version this node saw was changed by someone else, or the change
	// came after writes of its holder this node never saw): until
	// priorUntil it blocks every address (claimed).
	unknown bool
	// seal is the seal of this version.
	seal election.Seal
}

// blocks reports whether s, a version of another Lease, may still be held
// by its holder at now.
func (s seenLease) blocks(me self, now time.Time) bool {
	return s.holder != "" && !me.mine(s.holder, s.instance) && now.Sub(s.at) < s.dur
}

// priorAt is the prior version that still counts at now (nil: none).
func (s seenLease) priorAt(now time.Time) *seenLease {
	if s.prior != nil && now.Before(s.priorUntil) {
		return s.prior
	}
	return nil
}

// olderKept bounds seenLease.older: a read is never more than a few
// renewals behind the watch.
const olderKept = 8

// leaseView is what this node has seen of the Leases that list Service
// VIPs: each one's newest version and when this node first saw it (its own
// clock; nothing depends on other nodes' clocks). The claim check (S8)
// counts a Lease's duration from that moment, so the view must never move
// back to an older version, nor restart the count for a version it has
// seen: either would make a dead node's Lease look renewed, and delay a
// takeover by up to a lease duration (a read that raced the holder's last
// renewal did exactly that).
type leaseView map[string]seenLease

// saw records v, observed at now, and returns the entry. A version seen
// before changes nothing.
func (w leaseView) saw(v leaseVersion, now time.Time) seenLease {
	s, ok := w[v.key]
	if ok && s.rv == v.rv {
		if !s.gone.IsZero() {
			s.gone = time.Time{}
			w[v.key] = s
		}
		return s
	}
	if ok {
		// An older version than the view's (a read that raced a renewal,
		// or a lagging watch behind a read) changes nothing: falling back
		// to it would show what the Lease listed before, and unblock an
		// address its holder has claimed since. Resource versions of one
		// object compare as integers (KEP-5504); older keeps the versions
		// seen before, for any that would not.
		if c, err := resourceversion.CompareResourceVersion(v.rv, s.rv); err == nil && c < 0 {
			return s
		}
		for _, rv := range s.older {
			if rv == v.rv {
				return s
			}
		}
	}
	n := seenLease{rv: v.rv, at: now, holder: v.holder, holds: v.holds, dur: v.dur, listed: map[netip.Addr]bool{}, instance: v.instance, seal: v.seal}
	for _, ip := range listedIn(v.holds) {
		n.listed[ip] = true
	}
	if ok {
		n.older = append(append(n.older, s.older...), s.rv)
		if len(n.older) > olderKept {
			n.older = n.older[len(n.older)-olderKept:]
		}
		n.trust = s.trust
	}
	n.foreign = n.trust.Judge(v.seal)
	var p seenLease
	if ok {
		p = lastOwn(s, s.foreign != "", s.prior)
	}
	switch {
	case n.foreign == "":
	case ok && s.unknown:
		n.unknown, n.priorUntil = true, s.priorUntil
	case ok && p.rv != "" && election.LastWrite(v.seal, p.seal):
		// Changed by someone other than its holder (S9): the last version
		// the holder wrote counts for a lease duration from now.
		p.prior, p.older = nil, nil
		n.prior, n.priorUntil = &p, now.Add(p.dur)
	default:
		// What its holder last wrote is not known: this node first saw
		// the Lease as someone else changed it (it started, or listed,
		// after the edit), or its holder wrote versions since the last
		// one this node saw (its watch lags). Its holder may hold anything
		// until a lease duration from now.
		n.unknown, n.priorUntil = true, now.Add(max(v.dur, v.def))
	}
	w[v.key] = n
	return n
}

// watched records v as the watch delivered it, unless it is a version of
// own, the Lease of the group that asks: the claim check counts other
// Leases only (the read leaves own out), and this node's own listing,
// counted as another's, would make every address it lists look held by a
// vipd node, and never probed before a first claim (S7).
func (w leaseView) watched(own string, v leaseVersion, now time.Time) {
	if v.key != own {
		w.saw(v, now)
	}
}

// claimed records a quorum read of the Leases (list: every Lease that
// carries HoldsAnnotation, but self, this node's own) and returns, for
// each address of want that another node may still hold, the Lease that
// says so; and which addresses of want any other Lease lists, live or not
// (a vipd node has had them). A Lease lets go of an address when it no
// longer lists it, when it has no holder or is this node's, or when this
// node has seen it unchanged for its whole duration (its holder's fence has
// passed). A Lease missing from the read (kubectl delete lease) still
// counts for its duration after it was first missed: its holder may not
// know yet.
//
// A version that someone other than its holder wrote (S9: its holder
// cleared, its holds list rewritten, its duration shortened, an old copy
// written back) lets go of nothing: the last version its holder wrote
// still blocks for a lease duration from when this node saw the change.
//
// by says, for each blocked address, which Leases block it and at which
// version ("" for a Lease the read missed): see letGo.
func (w leaseView) claimed(me self, list []leaseVersion, want []netip.Addr, now time.Time) (out map[netip.Addr]string, listed map[netip.Addr]bool, by map[netip.Addr]map[string]string) {
	return w.claimedRead(me, list, want, now, now)
}

// claimedRead is claimed for a read asked for at asked whose answer came
// at answered: the API server read its store at some moment between the
// two. What the read shows unchanged is judged at asked (a holder may have
// renewed right after the store was read, and a renewal the read shows
// unchanged may have been committed since, its fence counted from a start
// before the read was served); what it shows for the first time is
// recorded as seen at answered (its holder may have written it just
// before the store was read). Each is the end that counts the holder live
// the longer.
func (w leaseView) claimedRead(me self, list []leaseVersion, want []netip.Addr, asked, answered time.Time) (out map[netip.Addr]string, listed map[netip.Addr]bool, by map[netip.Addr]map[string]string) {
	now := asked
	f := finding{me: me, now: now, wanted: map[netip.Addr]bool{}, out: map[netip.Addr]string{}, listed: map[netip.Addr]bool{}, by: map[netip.Addr]map[string]string{}}
	for _, ip := range want {
		f.wanted[ip] = true
	}
	present := map[string]bool{}
	for _, v := range list {
		present[v.key] = true
		s := w.saw(v, answered)
		f.note(v.key, s, s.blocks(me, now))
		f.notePrior(v.key, s)
	}
	for k, s := range w {
		if present[k] {
			continue
		}
		if s.gone.IsZero() {
			s.gone = answered
			w[k] = s
		}
		f.note(k, s, false)
		f.notePrior(k, s)
		switch {
		case s.holder != "" && !me.mine(s.holder, s.instance) && now.Sub(s.gone) < s.dur:
			f.note(k, s, true)
		case s.priorAt(now) == nil && !s.unknownAt(now):
			delete(w, k)
		}
	}
	return f.out, f.listed, f.by
}

// unknownAt: what its holder last wrote is not known, and it still
// blocks everything at now.
func (s seenLease) unknownAt(now time.Time) bool { return s.unknown && now.Before(s.priorUntil) }

// finding is what claimed finds, Lease by Lease.
type finding struct {
	me     self
	now    time.Time
	wanted map[netip.Addr]bool
	out    map[netip.Addr]string
	listed map[netip.Addr]bool
	by     map[netip.Addr]map[string]string
}

// block records that Lease k, at version rv ("": missed by the read),
// blocks ip, for why.
func (f *finding) block(ip netip.Addr, k, rv, why string) {
	f.out[ip] = k + " (" + why + ")"
	if f.by[ip] == nil {
		f.by[ip] = map[string]string{}
	}
	f.by[ip][k] = rv
}

// note records the wanted addresses s, a version of Lease k, lists, and
// blocks them if block.
func (f *finding) note(k string, s seenLease, block bool) {
	rv := s.rv
	if !s.gone.IsZero() {
		rv = ""
	}
	for ip := range s.listed {
		if !f.wanted[ip] {
			continue
		}
		f.listed[ip] = true
		if block {
			f.block(ip, k, rv, "held by "+s.holder)
		}
	}
}

// notePrior: what an edited Lease's holder last wrote still blocks, and,
// not known, everything.
func (f *finding) notePrior(k string, s seenLease) {
	if s.unknownAt(f.now) {
		for ip := range f.wanted {
			f.listed[ip] = true
			f.block(ip, k, "", "changed by someone other than its holder, whose last write this node has not seen")
		}
	}
	if p := s.priorAt(f.now); p != nil {
		q := *p
		q.rv, q.gone = s.rv, s.gone
		f.note(k, q, q.holder != "" && !f.me.mine(q.holder, q.instance))
	}
}

// letGo reports whether every Lease of by (as claimed returned it for ip)
// has, in this view, a version newer than the one that blocked ip that no
// longer lists it, or has no holder. The claim check may then hold ip
// without another read, when its read was made after its own Lease listed
// ip and the listing has stood since (the flag argument of S8): a node
// that listed ip before that read is one of by, or its Lease was not live;
// one that listed it after will read this node's listing and wait. And
// each Lease of by let go of ip after that read: its holder removes an
// address before a write stops listing it, and lists it again only before
// a read of its own, which sees this node's listing. A deleted Lease ("")
// never lets go here: its duration runs out first, seen by a read.
func (w leaseView) letGo(ip netip.Addr, by map[string]string, now time.Time) bool {
	for k, rv := range by {
		s, ok := w[k]
		if rv == "" || !ok || !s.gone.IsZero() {
			return false
		}
		if c, err := resourceversion.CompareResourceVersion(s.rv, rv); err != nil || c <= 0 {
			return false
		}
		if s.holder != "" && s.listed[ip] {
			return false
		}
		if p := s.priorAt(now); s.foreign != "" && (p == nil || p.holder != "" && p.listed[ip]) {
			return false // someone else wrote that it let go (S9)
		}
	}
	return len(by) > 0
}
