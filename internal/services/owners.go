package services

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/owner"
)

// HoldsAnnotation on a Lease lists the Service VIPs its holder has on its
// interface or is about to add, comma-separated. It is written before an
// address is added and after it is removed, so that another node can tell
// whether the address has been let go (S8); the Lease's seal covers it
// (S9).
const HoldsAnnotation = election.HoldsAnnotation

// self is this process as the claim check sees it.
func (c *Controller) self() self { return self{c.o.NodeName, c.o.Instance} }

// group is one source of ownership: a Lease whose holder owns a set of
// Service VIPs. The Services Lease is the group of every
// externalTrafficPolicy: Cluster VIP; each Local Service has a group of its
// own (its Lease, one elector for all its addresses).
//
// It is the one decision point for a Service VIP on this node. An address
// goes on the interface only when all of these hold:
//
//  1. this node holds the group's Lease, with an unexpired fence;
//  2. a successful write of that Lease (an acquire or a renewal) listed the
//     address in HoldsAnnotation;
//  3. a quorum read of every Lease, made after that write, found no other
//     Lease held by another node that lists the address, unless that Lease
//     has not changed for its whole duration since this node first saw it
//     (its holder's fence has passed).
//
// Two nodes that want one address under different Leases (a Service
// switching externalTrafficPolicy, an address passing from one Service to
// another, caches that disagree) each write before they read, so at least
// one of them sees the other and waits; the one whose cache is behind lets
// go when it catches up, and its next write says so. Every field is
// guarded by Controller.mu.
type group struct {
	c     *Controller
	lease string // namespace/name
	vips  map[netip.Addr]*owner.VIP

	leading bool
	until   time.Time
	gen     uint64 // counts Drops: a check started before one is void

	writing   map[netip.Addr]bool // what the write in flight lists
	published map[netip.Addr]bool // what the last successful write listed
	cleared   map[netip.Addr]bool // published, and no other live Lease lists it
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
	retrying bool                // a retryCheck is due
	again    bool                // a check was asked for while one ran

	// A Local Service's election, or the heartbeat's; the Cluster group
	// uses Controller.elector.
	el     *election.Elector
	cancel context.CancelFunc // nil: the election is not running
	// lapsed, if set, is told why the group dropped its addresses (Drop,
	// or a renewal that comes after the fence: the process was frozen).
	lapsed func(reason string)
	// waited, if set, is told (c.mu not held) when a check found
	// addresses blocked.
	waited func()
}

func (c *Controller) newGroup(lease string) *group {
	return &group{c: c, lease: lease, vips: map[netip.Addr]*owner.VIP{}, cleared: map[netip.Addr]bool{}, probing: map[netip.Addr]bool{},
		removed: map[netip.Addr]uint64{}, waiting: map[netip.Addr]waitOn{}}
}

// waitOn is an address a check found blocked: by which Leases, at which
// versions (leaseView.claimed), and its removal count then.
type waitOn struct {
	by   map[string]string
	mark uint64
}

// Hold is election.Guard: the group's Lease was written successfully.
func (g *group) Hold(until time.Time) {
	c := g.c
	c.mu.Lock()
	if g.leading && !c.o.Clock.Now().Before(g.until) {
		// The fence passed and no Drop came first (the process was
		// frozen, or the timer is late): the addresses are gone, and
		// another node may have claimed them meanwhile. Claim again,
		// checked, as after a Drop.
		g.dropLocked("the fence passed before this renewal")
	}
	first := !g.leading
	g.leading, g.until = true, until
	g.published = g.writing
	check := false
	for ip, ov := range g.vips {
		switch {
		case g.cleared[ip]:
			ov.Hold(until)
		case g.published[ip] && !g.asking[ip]:
			// One that waits (a read made after an earlier write that
			// listed it found it blocked) is held by letGo or read again
			// by retryCheck: a read on every renewal would be a second
			// read of every Lease for each address a planned move
			// waits for, on the API server the move waits on.
			_, waits := g.waiting[ip]
			check = check || !waits
		}
	}
	c.mu.Unlock()
	if check {
		c.check(g)
	}
	if first {
		c.poke()
	}
}

// Drop is election.Guard: stop announcing and remove every address (S3).
// What was cleared is forgotten: another node may claim meanwhile.
func (g *group) Drop(reason string) {
	c := g.c
	c.mu.Lock()
	defer c.mu.Unlock()
	g.dropLocked(reason)
}

func (g *group) dropLocked(reason string) {
	g.leading = false
	g.gen++
	g.published, g.cleared, g.waiting = nil, map[netip.Addr]bool{}, map[netip.Addr]waitOn{}
	for _, ov := range g.vips {
		ov.Drop(reason)
	}
	if g.lapsed != nil {
		g.lapsed(reason)
	}
}

// annotations lists the group's addresses for the write about to start.
func (g *group) annotations() map[string]string {
	c := g.c
	c.mu.Lock()
	defer c.mu.Unlock()
	g.writing = make(map[netip.Addr]bool, len(g.vips))
	for ip := range g.vips {
		g.writing[ip] = true
	}
	a := map[string]string{HoldsAnnotation: joinSet(g.writing)}
	if c.o.MAC != "" {
		a[conflict.MACAnnotation] = c.o.MAC
	}
	if c.monitor != nil {
		var mine []conflict.Finding
		for _, f := range c.monitor.Active() {
			if g.vips[f.Addr] != nil {
				mine = append(mine, f)
			}
		}
		a[conflict.Annotation] = conflict.Format(mine)
	}
	return a
}

// add puts ip under the group (c.mu held). It goes on the interface once
// published and checked; a holder publishes at once.
func (g *group) add(ip netip.Addr, ov *owner.VIP) {
	g.vips[ip] = ov
	g.publish()
}

// remove takes ip out of the group (c.mu held) after it was dropped; a
// holder's next write, at once, says it let go. It is no longer published,
// nor listed by the write in flight as far as that write's answer goes:
// if it comes back before the next write has answered, the Lease may
// already have stopped listing it (that write committed), and another
// node may have listed it and read since, so only a write that starts
// after it came back and lists it counts (S8 asks for the listing to
// stand from the write to the claim).
func (g *group) remove(ip netip.Addr) {
	delete(g.vips, ip)
	delete(g.cleared, ip)
	delete(g.published, ip)
	delete(g.writing, ip) // the write in flight listed it, but its answer must not publish it again
	delete(g.waiting, ip)
	delete(g.asking, ip) // the running check is void for it (marks)
	g.removed[ip]++
	g.publish()
}

// marks are the removal counts of ips when a check starts (c.mu held).
func (g *group) marks(ips []netip.Addr) map[netip.Addr]uint64 {
	m := make(map[netip.Addr]uint64, len(ips))
	for _, ip := range ips {
		m[ip] = g.removed[ip]
	}
	return m
}

// stands: ip was published when a check that saw its removal count mark
// started, and has not left the group since (c.mu held).
func (g *group) stands(ip netip.Addr, mark uint64) bool {
	return g.vips[ip] != nil && g.published[ip] && g.removed[ip] == mark
}

// publish asks a holder to write its Lease now.
func (g *group) publish() {
	if !g.leading {
		return
	}
	if g.el != nil {
		g.el.Renew()
	} else {
		g.c.elector.Renew()
	}
}

// fenceOK: this node holds the group's Lease with an unexpired fence.
func (g *group) fenceOK() bool { return g.leading && g.c.o.Clock.Now().Before(g.until) }

// check runs the quorum read for the group's published, not yet cleared
// addresses, and holds those that no other live Lease lists. While some
// stay blocked it runs again every retry period.
func (c *Controller) check(g *group) {
	c.mu.Lock()
	if g.checking {
		g.again = true // something changed meanwhile: check once more after
	}
	if g.checking || !g.fenceOK() {
		c.mu.Unlock()
		return
	}
	var want []netip.Addr
	for ip := range g.published {
		if g.vips[ip] != nil && !g.cleared[ip] && !g.probing[ip] {
			want = append(want, ip)
		}
	}
	if len(want) == 0 {
		c.mu.Unlock()
		return
	}
	g.checking, g.again = true, false
	g.asking = make(map[netip.Addr]bool, len(want))
	for _, ip := range want {
		g.asking[ip] = true
	}
	gen, marks := g.gen, g.marks(want)
	c.mu.Unlock()

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		start := c.o.Clock.Now()
		blocked, listed, by, err := c.claimed(c.runCtx, g.lease, want)
		c.log.Debug("claim check: read every Lease", "lease", g.lease, "addresses", len(want), "blocked", len(blocked), "took", c.o.Clock.Since(start))
		if err != nil {
			c.log.Warn("cannot read the Leases to check who holds a Service VIP; trying again", "lease", g.lease, "err", err)
		}
		var events []func()
		var probe []netip.Addr
		c.mu.Lock()
		g.checking, g.asking = false, nil
		stale := gen != g.gen || !g.fenceOK() || c.stopping
		held, again := 0, err != nil
		var waiting []string
		if !stale && err == nil {
			for _, ip := range want {
				delete(g.waiting, ip) // this read's finding replaces the last one's
				switch {
				case !g.stands(ip, marks[ip]):
				case blocked[ip] != "":
					g.waiting[ip] = waitOn{by: by[ip], mark: marks[ip]}
					again = true
					waiting = append(waiting, ip.String()+" (under "+blocked[ip]+")")
				case c.o.Probe != nil && c.fresh(ip, listed):
					g.probing[ip] = true
					probe = append(probe, ip)
				default:
					events = append(events, c.holdLocked(g, ip))
					held++
				}
			}
		}
		// Addresses published while this check ran, or a change of
		// another node's heartbeat, are checked at once.
		more := false
		if !stale {
			asked := make(map[netip.Addr]bool, len(want))
			for _, ip := range want {
				asked[ip] = true
			}
			for ip := range g.published {
				if g.vips[ip] != nil && !g.cleared[ip] && !g.probing[ip] && !asked[ip] {
					more = true
				}
			}
			more = more || g.again
		}
		c.mu.Unlock()
		if len(waiting) > 0 {
			// One line per check: a planned move of a stopping node's share
			// waits here for each address (spread mode, handOver).
			c.log.Info("waiting for addresses to be let go before claiming them", "lease", g.lease, "count", len(waiting), "first", waiting[:min(3, len(waiting))])
			if g.waited != nil {
				g.waited()
			}
		}
		if len(probe) > 0 {
			// The probe runs beside further checks: each address waits for
			// its own probe, not for the probes of earlier batches.
			c.wg.Add(1)
			go c.probeThenHold(g, gen, marks, probe)
		}
		c.after(events, held)
		if len(waiting) > 0 {
			// The watch may have shown them let go while this read ran.
			c.letGo(g)
		}
		if more {
			c.check(g)
			return
		}
		if again && !stale {
			c.retryCheck(g)
		}
	}()
}

// after posts the Events of a check (c.mu not held) and plans again when
// addresses went on the interface (their Services' status is due).
func (c *Controller) after(events []func(), held int) {
	for _, e := range events {
		e()
	}
	if held > 0 {
		c.poke()
	}
}

// retryCheck checks g again after a retry period, unless a retry is due
// already: one per group (each check that found an address blocked asked
// for one, and every one of them asked for the next: the reads of an
// address that waits grew with every check started beside them).
func (c *Controller) retryCheck(g *group) {
	c.mu.Lock()
	due := g.retrying
	g.retrying = true
	c.mu.Unlock()
	if due {
		return
	}
	t := c.o.Clock.NewTimer(c.o.RetryPeriod)
	select {
	case <-t.C():
		c.mu.Lock()
		g.retrying = false // before the check, whose end may ask for the next
		c.mu.Unlock()
		c.check(g)
	case <-c.runCtx.Done():
		t.Stop()
	}
}

// holdLocked puts ip on the interface (c.mu held): published and checked.
// It returns the Event to post (a conflict on the wire is over).
func (c *Controller) holdLocked(g *group, ip netip.Addr) func() {
	g.cleared[ip] = true
	delete(g.waiting, ip)
	g.vips[ip].Hold(g.until)
	if h := c.vips[ip]; h != nil {
		h.known = true
		return c.resolvedLocked(ip, h)
	}
	return func() {}
}

// fresh reports whether ip is to be probed before this claim (c.mu held):
// no vipd node is known to have held it. Not listed by another Lease, not
// in the Service's status (which vipd writes once a node holds the
// address), not held here before. A takeover from a vipd owner is never
// delayed by a probe.
func (c *Controller) fresh(ip netip.Addr, listed map[netip.Addr]bool) bool {
	h := c.vips[ip]
	return h != nil && !listed[ip] && !h.known && !inStatus(h.svc, ip)
}

// probeThenHold asks the wire about addresses cleared by a check and holds
// those nobody answers for, if the group's fence and generation are still
// those of the check (a quorum read's finding stays true: another claimant
// would see this node's Lease list the address and wait).
func (c *Controller) probeThenHold(g *group, gen uint64, marks map[netip.Addr]uint64, ips []netip.Addr) {
	defer c.wg.Done()
	answered, err := c.o.Probe(c.runCtx, ips)
	if err != nil {
		c.log.Warn("cannot probe the wire before a first claim; claiming without", "vips", joinAddrs(ips), "err", err)
	}
	var events []func()
	held, conflict := 0, false
	c.mu.Lock()
	for _, ip := range ips {
		delete(g.probing, ip)
	}
	if gen == g.gen && g.fenceOK() && !c.stopping {
		for _, ip := range ips {
			if !g.stands(ip, marks[ip]) || g.cleared[ip] {
				continue
			}
			if mac, ok := answered[ip]; ok {
				conflict = true
				events = append(events, c.conflictLocked(ip, mac))
				continue
			}
			events = append(events, c.holdLocked(g, ip))
			held++
		}
	}
	c.mu.Unlock()
	c.after(events, held)
	if conflict {
		c.retryCheck(g)
	}
}

func inStatus(s *corev1.Service, ip netip.Addr) bool {
	if s == nil {
		return false
	}
	for _, in := range s.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(in.IP); err == nil && a.Unmap() == ip {
			return true
		}
	}
	return false
}

// conflictLocked notes that another host answered for ip (c.mu held) and
// returns the Event to post: once per address and MAC.
func (c *Controller) conflictLocked(ip netip.Addr, mac net.HardwareAddr) func() {
	h := c.vips[ip]
	if h == nil || h.svc == nil {
		return func() {}
	}
	who := mac.String()
	if who == "" {
		who = "unknown"
	}
	if h.conflict != who {
		c.log.Warn("another host answers for the address on the wire: not claiming it", "vip", ip, "mac", who, "service", key(h.svc))
	}
	h.conflict = who
	svc := h.svc
	return func() {
		c.poster.Post(c.runCtx, ref(svc, "Service"), corev1.EventTypeWarning, "AddressConflict",
			fmt.Sprintf("service %s: another host already answers for %s on the wire (MAC %s), so vipd does not announce it: free the address on that host (a static address, K3s ServiceLB, kube-vip or another cluster on the segment) or choose another address; vipd probes again every %s and claims it once nobody answers", key(svc), ip, who, c.o.RetryPeriod))
	}
}

// resolvedLocked returns the Event that says a conflict on ip is over.
func (c *Controller) resolvedLocked(ip netip.Addr, h *held) func() {
	if h.conflict == "" || h.svc == nil {
		return func() {}
	}
	mac, svc := h.conflict, h.svc
	h.conflict = ""
	c.log.Info("the address no longer answers on the wire: claimed", "vip", ip, "mac", mac)
	return func() {
		c.poster.Post(c.runCtx, ref(svc, "Service"), corev1.EventTypeNormal, "AddressConflictResolved",
			fmt.Sprintf("service %s: %s no longer answers on the wire (it did from MAC %s): node %s claims it", key(svc), ip, mac, c.o.NodeName))
	}
}

// claimed reads every Lease (a quorum read) and returns, for each address
// of want that another node's live Lease lists, that Lease and holder; and
// which addresses of want any other Lease lists, live or not (a vipd node
// has had them). self is the Lease of the group that asks.
func (c *Controller) claimed(ctx context.Context, self string, want []netip.Addr) (map[netip.Addr]string, map[netip.Addr]bool, map[netip.Addr]map[string]string, error) {
	list, err := c.o.Client.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	vs := make([]leaseVersion, 0, len(list.Items))
	for i := range list.Items {
		l := &list.Items[i]
		if _, ok := l.Annotations[HoldsAnnotation]; !ok || l.Namespace+"/"+l.Name == self {
			continue
		}
		vs = append(vs, versionOf(l, c.o.LeaseDuration))
	}
	c.seenMu.Lock()
	defer c.seenMu.Unlock()
	out, listed, by := c.seen.claimed(c.self(), vs, want, c.o.Clock.Now())
	return out, listed, by, nil
}

// letGo holds, without another read, every address of g that its last
// check found blocked and whose blocking Leases have all let go of it since,
// as the watch shows them (leaseView.letGo): the new owner of a planned
// move claims on the old owner's write. Called on every heartbeat the
// watch delivers.
func (c *Controller) letGo(g *group) {
	var events []func()
	held := 0
	c.mu.Lock()
	if len(g.waiting) > 0 && g.fenceOK() && !c.stopping {
		c.seenMu.Lock()
		for ip, w := range g.waiting {
			if !g.stands(ip, w.mark) || g.cleared[ip] || g.probing[ip] || !c.seen.letGo(ip, w.by, c.o.Clock.Now()) {
				continue
			}
			events = append(events, c.holdLocked(g, ip))
			held++
		}
		c.seenMu.Unlock()
	}
	c.mu.Unlock()
	if held > 0 {
		c.log.Debug("claimed on the watch: every Lease that blocked these let go of them", "lease", g.lease, "addresses", held)
	}
	c.after(events, held)
}

// versionOf is l as the claim check sees it.
func versionOf(l *coordinationv1.Lease, def time.Duration) leaseVersion {
	return leaseVersion{key: l.Namespace + "/" + l.Name, rv: l.ResourceVersion, holder: leaseHolder(l), holds: l.Annotations[HoldsAnnotation], dur: leaseDuration(l, def),
		instance: l.Annotations[election.InstanceAnnotation], seal: election.ReadSeal(l)}
}

func leaseHolder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func leaseDuration(l *coordinationv1.Lease, def time.Duration) time.Duration {
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		return time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return def
}

func joinSet(set map[netip.Addr]bool) string {
	ips := make([]netip.Addr, 0, len(set))
	for ip := range set {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	return joinAddrs(ips)
}

// heldAddrs are the addresses on this node's interface now, their fences
// not passed (for the conflict watch).
func (c *Controller) heldAddrs() []netip.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []netip.Addr
	for ip, h := range c.vips {
		if h.ov.HoldingNow() {
			out = append(out, ip)
		}
	}
	return out
}

// wireConflict reports another host answering for an address this node
// holds: on its Service, in the log, to OnConflict, and on the Lease with
// the next write (asked for at once).
func (c *Controller) wireConflict(f conflict.Finding) {
	svc := c.serviceOf(f.Addr)
	name := "(none)"
	if svc != nil {
		name = key(svc)
	}
	msg := "service " + name + ": " + f.Report(f.Addr.String(), c.o.NodeName, c.o.MAC)
	if svc != nil {
		c.poster.Post(c.runCtx, ref(svc, "Service"), corev1.EventTypeWarning, "AddressConflict", msg) // logs it too
	} else {
		c.log.Warn(msg, "vip", f.Addr, "mac", f.MAC)
	}
	if c.o.OnConflict != nil {
		c.o.OnConflict(f.Addr)
	}
	c.renewAll()
}

// wireResolved reports that the other host stopped answering.
func (c *Controller) wireResolved(f conflict.Finding) {
	svc := c.serviceOf(f.Addr)
	msg := f.Resolved(f.Addr.String(), c.o.NodeName)
	if svc != nil {
		c.poster.Post(c.runCtx, ref(svc, "Service"), corev1.EventTypeNormal, "AddressConflictResolved", "service "+key(svc)+": "+msg)
	} else {
		c.log.Info(msg, "vip", f.Addr)
	}
	c.renewAll()
}

// renewAll asks every Lease this node may hold to be written now.
func (c *Controller) renewAll() {
	c.elector.Renew()
	if c.sp != nil {
		c.sp.el.Renew()
	}
}

// serviceOf is the Service whose address ip is on this node (nil: none).
func (c *Controller) serviceOf(ip netip.Addr) *corev1.Service {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.vips[ip]; h != nil {
		return h.svc
	}
	return nil
}
