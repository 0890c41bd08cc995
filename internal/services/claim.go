package services

import (
	"net/netip"
	"time"
)

// claim is the claim rule (S8) of one Lease's addresses on this node, as a
// state machine: its group feeds it the events (a write of the Lease
// starts or answers, the fence passes, an address joins or leaves, a
// quorum read answers, the watch shows a Lease let go, the wire answers a
// probe) and applies what it decides (an address goes on the interface
// until the fence, a read or a write is due). It has no clock, no client
// and no lock: the permutation tests step this code, not a copy of it,
// through every order of those events (permute_test.go).
//
// An address goes on the interface only when all of these hold:
//
//  1. this node holds the Lease, with an unexpired fence;
//  2. a successful write of that Lease (an acquire or a renewal) listed the
//     address in HoldsAnnotation, and it has not left the group since;
//  3. a quorum read of every Lease, made after that write, found no other
//     Lease held by another process that lists the address, unless that
//     Lease has not changed for its whole duration since this node first
//     saw it (its holder's fence has passed); or the watch showed, after
//     such a read, every Lease that blocked it let go of it (onWatch).
//
// Two nodes that want one address under different Leases (a Service
// switching externalTrafficPolicy, an address passing from one Service to
// another, caches that disagree) each write before they read, so at least
// one of them sees the other and waits; the one whose cache is behind lets
// go when it catches up, and its next write says so.
type claim struct {
	addrs map[netip.Addr]bool // the group's addresses

	leading bool
	until   time.Time
	gen     uint64 // counts drops: a read started before one is void

	writing   map[netip.Addr]bool // what the write in flight lists
	published map[netip.Addr]bool // what the last successful write listed, less what left since
	cleared   map[netip.Addr]bool // published, and no other live Lease lists it: on the interface
	probing   map[netip.Addr]bool // cleared by a read, the wire being asked
	// removed counts each address's removals from the group: a read
	// whose address was removed (and put back) while it ran is void for
	// it, since the Lease may have stopped listing it meanwhile.
	removed map[netip.Addr]uint64
	// waiting are the addresses the last read found blocked, with the
	// Leases that block each (at the versions it saw) and the removal
	// count it ran with: onWatch may hold one as soon as the watch shows
	// every one of those Leases let go of it, without another read.
	waiting  map[netip.Addr]waitOn
	checking bool
	asking   map[netip.Addr]bool // the addresses of the read running
	retrying bool                // a read again after a retry period is due
	again    bool                // a read was asked for while one ran

	// broken switches one rule off, for the tests that show the
	// permutation tests find the two owners it would allow ("": none).
	broken string
}

// waitOn is an address a read found blocked: by which Leases, at which
// versions (leaseView.claimed), and its removal count then.
type waitOn struct {
	by   map[string]string
	mark uint64
}

func newClaim() *claim {
	return &claim{addrs: map[netip.Addr]bool{}, cleared: map[netip.Addr]bool{}, probing: map[netip.Addr]bool{},
		removed: map[netip.Addr]uint64{}, waiting: map[netip.Addr]waitOn{}}
}

// fenceOK: this node holds the Lease with an unexpired fence.
func (k *claim) fenceOK(now time.Time) bool { return k.leading && now.Before(k.until) }

// listing: a write of the Lease starts; it lists these addresses.
func (k *claim) listing() map[netip.Addr]bool {
	k.writing = make(map[netip.Addr]bool, len(k.addrs))
	for ip := range k.addrs {
		k.writing[ip] = true
	}
	return k.writing
}

// answered: the write last started (listing) succeeded, with a fence
// until until. lapsed: the fence had passed with no drop first (the
// process was frozen, or the timer is late): every address must leave
// the interface first, as after a drop, since another node may have
// claimed them meanwhile. hold are the addresses on the interface, to be
// held until the new fence; read: a quorum read is due for addresses
// this write published; first: the Lease was not held before.
func (k *claim) answered(until, now time.Time) (lapsed bool, hold []netip.Addr, read, first bool) {
	if k.leading && !now.Before(k.until) {
		k.drop()
		lapsed = true
	}
	first = !k.leading
	k.leading, k.until = true, until
	k.published = k.writing
	for ip := range k.addrs {
		switch {
		case k.cleared[ip]:
			hold = append(hold, ip)
		case k.published[ip] && !k.asking[ip]:
			// One that waits (a read made after an earlier write that
			// listed it found it blocked) is held by onWatch or read again
			// after a retry period: a read on every renewal would be a
			// second read of every Lease for each address a planned move
			// waits for, on the API server the move waits on.
			_, waits := k.waiting[ip]
			read = read || !waits
		}
	}
	return lapsed, hold, read, first
}

// drop: the Lease is no longer held (stepped down, fence passed, stopped):
// every address leaves the interface (S3), and what was cleared is
// forgotten, since another node may claim meanwhile.
func (k *claim) drop() {
	k.leading = false
	k.gen++
	k.published, k.cleared, k.waiting = nil, map[netip.Addr]bool{}, map[netip.Addr]waitOn{}
}

// add puts ip in the group; it goes on the interface once published and
// read. renew: a holder writes its Lease now, to list it.
func (k *claim) add(ip netip.Addr) (renew bool) {
	k.addrs[ip] = true
	return k.leading
}

// remove takes ip out of the group, after it left the interface; a
// holder's next write, at once, says it let go. It is no longer
// published, nor listed by the write in flight as far as that write's
// answer goes: if it comes back before the next write has answered, the
// Lease may already have stopped listing it (that write committed), and
// another node may have listed it and read since, so only a write that
// starts after it came back and lists it counts (S8 asks for the listing
// to stand from the write to the claim).
func (k *claim) remove(ip netip.Addr) (renew bool) {
	delete(k.addrs, ip)
	delete(k.cleared, ip)
	delete(k.published, ip)
	if k.broken != "publish-removed" {
		delete(k.writing, ip)
	}
	delete(k.waiting, ip)
	delete(k.asking, ip) // the running read is void for it (marks)
	k.removed[ip]++
	return k.leading
}

// stands: ip was published when a read that saw its removal count mark
// started, and has not left the group since.
func (k *claim) stands(ip netip.Addr, mark uint64) bool {
	if k.broken == "no-publish" {
		return k.addrs[ip] && k.removed[ip] == mark
	}
	return k.addrs[ip] && k.published[ip] && k.removed[ip] == mark
}

// hold: ip goes on the interface until the fence.
func (k *claim) hold(ip netip.Addr) {
	k.cleared[ip] = true
	delete(k.waiting, ip)
}

// unread: some address of the group is neither on the interface nor found
// blocked (nor being asked on the wire) by a read made after a write that
// listed it (ReadAnnotation).
func (k *claim) unread() bool {
	for ip := range k.addrs {
		if _, waits := k.waiting[ip]; !waits && !k.cleared[ip] && !k.probing[ip] {
			return true
		}
	}
	return false
}

// claimRead is a quorum read for the claim: its addresses, and the drop
// and removal counts it started with.
type claimRead struct {
	want  []netip.Addr
	gen   uint64
	marks map[netip.Addr]uint64
}

// startRead starts a quorum read for the published addresses not on the
// interface yet (nil: none is due, or one runs already, which is then
// followed by another).
func (k *claim) startRead(now time.Time) *claimRead {
	if k.checking {
		k.again = true // something changed meanwhile: read once more after
	}
	if k.checking || !k.fenceOK(now) {
		return nil
	}
	var want []netip.Addr
	for ip := range k.readable() {
		want = append(want, ip)
	}
	if len(want) == 0 {
		return nil
	}
	k.checking, k.again = true, false
	k.asking = make(map[netip.Addr]bool, len(want))
	r := &claimRead{want: want, gen: k.gen, marks: make(map[netip.Addr]uint64, len(want))}
	for _, ip := range want {
		k.asking[ip] = true
		r.marks[ip] = k.removed[ip]
	}
	return r
}

// readable are the addresses a read is for: published (or, broken
// "no-publish", merely in the group), not on the interface, not asked on
// the wire.
func (k *claim) readable() map[netip.Addr]bool {
	src := k.published
	if k.broken == "no-publish" {
		src = k.addrs
	}
	out := map[netip.Addr]bool{}
	for ip := range src {
		if k.addrs[ip] && !k.cleared[ip] && !k.probing[ip] {
			out[ip] = true
		}
	}
	return out
}

// readAnswer is what a quorum read found (leaseView.claimed): for each
// address another live Lease lists, that Lease (blocked) and the versions
// that block it (by); fresh, whether an address is to be asked on the wire
// before its first claim (nil: never); err, that the read failed.
type readAnswer struct {
	blocked map[netip.Addr]string
	by      map[netip.Addr]map[string]string
	fresh   func(netip.Addr) bool
	err     error
}

// readDone is what the claim decided on a read's answer: addresses to
// hold, to ask the wire about, found blocked (for the log: "ip (under
// Lease)"); again, read once more at once (addresses were published, or a
// read asked for, while it ran); retry, read again after a retry period
// (some stay blocked, or the read failed).
type readDone struct {
	hold, probe []netip.Addr
	waiting     []string
	again       bool
	retry       bool
}

// read takes the answer of read r. stopping: the node stops (no claim).
func (k *claim) read(r *claimRead, a readAnswer, now time.Time, stopping bool) (d readDone) {
	k.checking, k.asking = false, nil
	stale := r.gen != k.gen || !k.fenceOK(now) || stopping
	if stale {
		return d
	}
	d.retry = a.err != nil
	if a.err == nil {
		for _, ip := range r.want {
			delete(k.waiting, ip) // this read's finding replaces the last one's
			switch {
			case !k.stands(ip, r.marks[ip]):
			case a.blocked[ip] != "" && k.broken != "no-block":
				k.waiting[ip] = waitOn{by: a.by[ip], mark: r.marks[ip]}
				d.retry = true
				d.waiting = append(d.waiting, ip.String()+" (under "+a.blocked[ip]+")")
			case a.fresh != nil && a.fresh(ip):
				k.probing[ip] = true
				d.probe = append(d.probe, ip)
			default:
				k.hold(ip)
				d.hold = append(d.hold, ip)
			}
		}
	}
	asked := make(map[netip.Addr]bool, len(r.want))
	for _, ip := range r.want {
		asked[ip] = true
	}
	for ip := range k.readable() {
		d.again = d.again || !asked[ip]
	}
	d.again = d.again || k.again
	return d
}

// onWatch holds every address the last read found blocked whose blocking
// Leases have all let go of it since, as the watch shows them (gone, with
// leaseView.letGo): the new owner of a planned move claims on the old
// owner's write, without another read.
func (k *claim) onWatch(gone func(ip netip.Addr, by map[string]string) bool, now time.Time, stopping bool) (hold []netip.Addr) {
	if len(k.waiting) == 0 || !k.fenceOK(now) || stopping {
		return nil
	}
	for ip, w := range k.waiting {
		if !k.stands(ip, w.mark) || k.cleared[ip] || k.probing[ip] || !gone(ip, w.by) {
			continue
		}
		k.hold(ip)
		hold = append(hold, ip)
	}
	return hold
}

// probed takes the wire's answer for addresses a read cleared (read r's
// counts): those nobody answers for are held, if the fence and the drop
// count are still those of the read (its finding stays true: another
// claimant would see this node's Lease list the address and wait);
// conflict are those another host answered for (read again after a retry
// period).
func (k *claim) probed(r *claimRead, ips []netip.Addr, answered func(netip.Addr) bool, now time.Time, stopping bool) (hold, conflict []netip.Addr) {
	for _, ip := range ips {
		delete(k.probing, ip)
	}
	if r.gen != k.gen || !k.fenceOK(now) || stopping {
		return nil, nil
	}
	for _, ip := range ips {
		if !k.stands(ip, r.marks[ip]) || k.cleared[ip] {
			continue
		}
		if answered(ip) {
			conflict = append(conflict, ip)
			continue
		}
		k.hold(ip)
		hold = append(hold, ip)
	}
	return hold, conflict
}

// retryDue asks for a read after a retry period; false: one is due
// already (one per claim: each read that found an address blocked asked
// for one, and every one of them for the next, so the reads of an
// address that waits grew with every read started beside them).
func (k *claim) retryDue() bool {
	due := k.retrying
	k.retrying = true
	return !due
}

// retried: the retry period passed (before the read, whose end may ask
// for the next).
func (k *claim) retried() { k.retrying = false }
