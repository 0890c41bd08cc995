package services

import (
	"net/netip"
	"sort"
	"time"
)

// claims is the claim rule of one group (S8, S9) as plain state: which
// addresses the group has, what its Lease's writes list, what its claim
// checks found, and which addresses it may hold. Its methods decide; the
// group applies their decisions (the kernel, the API, goroutines), and the
// spread permutation test drives the same methods, so the rule it checks
// is the code's, not a copy of it. Not safe for concurrent use (the group
// holds Controller.mu).
type claims struct {
	leading bool
	until   time.Time
	gen     uint64 // counts drops: a check started before one is void

	members   map[netip.Addr]bool // the group's addresses
	writing   map[netip.Addr]bool // what the write in flight lists
	published map[netip.Addr]bool // what the last successful write listed, less what left since
	cleared   map[netip.Addr]bool // published, and no other live Lease lists it: held
	probing   map[netip.Addr]bool // cleared by a check, the wire being asked
	// removed counts each address's removals from the group: a check
	// whose address was removed (and put back) while it read is void for
	// it, since the Lease may have stopped listing it meanwhile.
	removed map[netip.Addr]uint64
	// waiting are the addresses the last check found blocked, with the
	// Leases that block each (at the versions it saw) and the removal
	// count it ran with: letGo may hold one as soon as the watch shows
	// every one of those Leases let go of it, without another read.
	waiting  map[netip.Addr]waitOn
	checking bool
	asking   map[netip.Addr]bool // the addresses of the check running
	again    bool                // a check was asked for while one ran
}

func newClaims() claims {
	return claims{members: map[netip.Addr]bool{}, cleared: map[netip.Addr]bool{}, probing: map[netip.Addr]bool{},
		removed: map[netip.Addr]uint64{}, waiting: map[netip.Addr]waitOn{}}
}

// clone is a copy that shares nothing (for the permutation test).
func (k claims) clone() claims {
	c := k
	c.members, c.writing, c.published, c.cleared, c.probing = copySet(k.members), copySet(k.writing), copySet(k.published), copySet(k.cleared), copySet(k.probing)
	c.removed, c.asking = map[netip.Addr]uint64{}, copySet(k.asking)
	for a, n := range k.removed {
		c.removed[a] = n
	}
	c.waiting = map[netip.Addr]waitOn{}
	for a, w := range k.waiting {
		c.waiting[a] = w
	}
	return c
}

func copySet(m map[netip.Addr]bool) map[netip.Addr]bool {
	if m == nil {
		return nil
	}
	out := make(map[netip.Addr]bool, len(m))
	for a, v := range m {
		out[a] = v
	}
	return out
}

// fenceOK: the group's Lease is held with an unexpired fence at now.
func (k *claims) fenceOK(now time.Time) bool { return k.leading && now.Before(k.until) }

// startWrite is what the write about to start lists: every member.
func (k *claims) startWrite() map[netip.Addr]bool {
	k.writing = copySet(k.members)
	return k.writing
}

// answered is a successful write of the group's Lease, which makes it
// holder until until. lapsed: the fence had passed before (a frozen
// process): the caller drops what it held first (drop is done here).
// It returns the held addresses whose kernel lifetime to extend, and
// whether a check is due (a published address neither held, being read
// nor waiting for the watch).
func (k *claims) answered(until, now time.Time) (lapsed, first bool, refresh []netip.Addr, check bool) {
	if k.leading && !now.Before(k.until) {
		k.drop()
		lapsed = true
	}
	first = !k.leading
	k.leading, k.until = true, until
	k.published = k.writing
	for ip := range k.members {
		switch {
		case k.cleared[ip]:
			refresh = append(refresh, ip)
		case k.published[ip] && !k.asking[ip]:
			// One that waits (a read made after an earlier write that
			// listed it found it blocked) is held by letGo or read again
			// by a retry: a read on every renewal would be a second read
			// of every Lease for each address a planned move waits for,
			// on the API server the move waits on.
			_, waits := k.waiting[ip]
			check = check || !waits
		}
	}
	return lapsed, first, refresh, check
}

// drop: the group stopped holding (its fence passed, it stepped down):
// what was published, cleared or found blocked is forgotten, and every
// check running is void.
func (k *claims) drop() {
	k.leading = false
	k.gen++
	k.published, k.cleared, k.waiting = nil, map[netip.Addr]bool{}, map[netip.Addr]waitOn{}
}

// add makes ip a member. It goes on the interface once published (a
// write that starts after this lists it) and checked.
func (k *claims) add(ip netip.Addr) { k.members[ip] = true }

// remove takes ip out of the group after it was dropped; a holder's next
// write, at once, says it let go. It is no longer published, nor listed by
// the write in flight as far as that write's answer goes: if it comes back
// before the next write has answered, the Lease may already have stopped
// listing it (that write committed), and another node may have listed it
// and read since, so only a write that starts after it came back and lists
// it counts (S8 asks for the listing to stand from the write to the claim).
func (k *claims) remove(ip netip.Addr) {
	delete(k.members, ip)
	delete(k.cleared, ip)
	delete(k.published, ip)
	delete(k.writing, ip)
	delete(k.waiting, ip)
	delete(k.asking, ip) // the running check is void for it (marks)
	k.removed[ip]++
}

// stands: ip was published when a check that saw its removal count mark
// started, and has not left the group since.
func (k *claims) stands(ip netip.Addr, mark uint64) bool {
	return k.members[ip] && k.published[ip] && k.removed[ip] == mark
}

// hold: ip goes on the interface (published and checked).
func (k *claims) hold(ip netip.Addr) {
	k.cleared[ip] = true
	delete(k.waiting, ip)
}

// check is a claim check about to read every Lease: the published
// addresses not yet held or asked about on the wire, the generation and
// their removal counts. ok false: none, a check runs already (it is
// asked to run once more after), or the fence is not held at now.
func (k *claims) startCheck(now time.Time) (want []netip.Addr, gen uint64, marks map[netip.Addr]uint64, ok bool) {
	if k.checking {
		k.again = true // something changed meanwhile: check once more after
	}
	if k.checking || !k.fenceOK(now) {
		return nil, 0, nil, false
	}
	for ip := range k.published {
		if k.members[ip] && !k.cleared[ip] && !k.probing[ip] {
			want = append(want, ip)
		}
	}
	if len(want) == 0 {
		return nil, 0, nil, false
	}
	sort.Slice(want, func(i, j int) bool { return want[i].Less(want[j]) })
	k.checking, k.again = true, false
	k.asking = make(map[netip.Addr]bool, len(want))
	marks = make(map[netip.Addr]uint64, len(want))
	for _, ip := range want {
		k.asking[ip] = true
		marks[ip] = k.removed[ip]
	}
	return want, k.gen, marks, true
}

// checked is the outcome of a claim check's read.
type checked struct {
	hold, probe []netip.Addr
	waiting     []string // "address (under Lease)", for the log
	// again: some address waits (or the read failed): read again after a
	// retry period; more: addresses published while it ran, or a change
	// asked for meanwhile: check again at once.
	again, more, stale bool
}

// finishCheck applies a check's read: blocked (and by) as the claim check
// of the Lease view found them (failed: the read failed), fresh says which
// addresses are asked on the wire first (nil: none). live: this node is
// not stopping.
func (k *claims) finishCheck(want []netip.Addr, gen uint64, marks map[netip.Addr]uint64, now time.Time, live, failed bool,
	blocked map[netip.Addr]string, by map[netip.Addr]map[string]string, fresh func(netip.Addr) bool) checked {
	k.checking, k.asking = false, nil
	var out checked
	out.stale = gen != k.gen || !k.fenceOK(now) || !live
	out.again = failed
	if out.stale {
		return out
	}
	if !failed {
		for _, ip := range want {
			delete(k.waiting, ip) // this read's finding replaces the last one's
			switch {
			case !k.stands(ip, marks[ip]):
			case blocked[ip] != "":
				k.waiting[ip] = waitOn{by: by[ip], mark: marks[ip]}
				out.again = true
				out.waiting = append(out.waiting, ip.String()+" (under "+blocked[ip]+")")
			case fresh != nil && fresh(ip):
				k.probing[ip] = true
				out.probe = append(out.probe, ip)
			default:
				k.hold(ip)
				out.hold = append(out.hold, ip)
			}
		}
	}
	asked := make(map[netip.Addr]bool, len(want))
	for _, ip := range want {
		asked[ip] = true
	}
	for ip := range k.published {
		if k.members[ip] && !k.cleared[ip] && !k.probing[ip] && !asked[ip] {
			out.more = true
		}
	}
	out.more = out.more || k.again
	return out
}

// letGo returns the addresses that the last check found blocked and whose
// blocking Leases have all let go of them since (lets: leaseView.letGo as
// the watch shows them), and holds them.
func (k *claims) letGo(now time.Time, live bool, lets func(ip netip.Addr, by map[string]string) bool) []netip.Addr {
	if len(k.waiting) == 0 || !k.fenceOK(now) || !live {
		return nil
	}
	var out []netip.Addr
	for ip, w := range k.waiting {
		if !k.stands(ip, w.mark) || k.cleared[ip] || k.probing[ip] || !lets(ip, w.by) {
			continue
		}
		out = append(out, ip)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Less(out[j]) })
	for _, ip := range out {
		k.hold(ip)
	}
	return out
}

// probed applies a probe of the wire (answered: the addresses another host
// answered for): it returns those to hold (held here) and those another
// host has.
func (k *claims) probed(ips []netip.Addr, gen uint64, marks map[netip.Addr]uint64, now time.Time, live bool, answered func(netip.Addr) bool) (hold, taken []netip.Addr) {
	for _, ip := range ips {
		delete(k.probing, ip)
	}
	if gen != k.gen || !k.fenceOK(now) || !live {
		return nil, nil
	}
	for _, ip := range ips {
		if !k.stands(ip, marks[ip]) || k.cleared[ip] {
			continue
		}
		if answered(ip) {
			taken = append(taken, ip)
			continue
		}
		k.hold(ip)
		hold = append(hold, ip)
	}
	return hold, taken
}

// read says whether every member is held, or was found blocked (or is
// being asked on the wire) by a read made after a write that listed it
// (ReadAnnotation).
func (k *claims) read() bool {
	for ip := range k.members {
		if _, waits := k.waiting[ip]; !waits && !k.cleared[ip] && !k.probing[ip] {
			return false
		}
	}
	return true
}
