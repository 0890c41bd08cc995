package services

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/lease"
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
// own (its Lease, one elector for all its addresses); in spread mode, the
// node's heartbeat. Its claim decides when an address goes on the
// interface (S8); the group feeds it the events and applies what it
// decides. Every field is the loop's (Controller.lp).
type group struct {
	c     *Controller
	lease string // namespace/name
	vips  map[netip.Addr]*owner.VIP
	k     *claim

	// A Local Service's election, or the heartbeat's; the Cluster group
	// uses Controller.elector.
	el     *election.Elector
	cancel context.CancelFunc // nil: the election is not running
	// lapsed, if set, is told why the group dropped its addresses (Drop,
	// or a renewal that comes after the fence: the process was frozen).
	lapsed func(reason string)
	// waited, if set, is told when a check found addresses blocked.
	waited func()
}

func (c *Controller) newGroup(lease string) *group {
	return &group{c: c, lease: lease, vips: map[netip.Addr]*owner.VIP{}, k: newClaim()}
}

// Hold is election.Guard: the group's Lease was written successfully.
func (g *group) Hold(until time.Time) {
	c := g.c
	c.lp.do(func() {
		lapsed, hold, read, first := g.k.answered(until, c.o.Clock.Now())
		if lapsed {
			g.dropped("the fence passed before this renewal")
		}
		for _, ip := range hold {
			c.table().Hold(g.vips[ip], until)
		}
		if read {
			c.check(g)
		}
		if first {
			c.planNow()
		}
	})
}

// Drop is election.Guard: stop announcing and remove every address (S3);
// it returns when they are gone.
func (g *group) Drop(reason string) {
	c := g.c
	var n uint64
	c.lp.do(func() {
		g.k.drop()
		g.dropped(reason)
		n = c.table().Barrier()
	})
	c.table().Wait(n)
}

// dropped takes every address off the interface after the claim dropped.
func (g *group) dropped(reason string) {
	for _, ov := range g.vips {
		g.c.table().Drop(ov, reason)
	}
	if g.lapsed != nil {
		g.lapsed(reason)
	}
}

// write is the marks of the Lease write about to start, taken on the loop
// by marks (with what else its Lease says of the same moment: a
// heartbeat's readiness); it returns once every address dropped before it
// is off the interface: the write may say it was let go (S3).
func (g *group) write(marks func() lease.Marks) lease.Marks {
	c := g.c
	var m lease.Marks
	var n uint64
	c.lp.do(func() {
		m = marks()
		n = c.table().Barrier()
	})
	c.table().Wait(n)
	return m
}

// marks list the group's addresses for the write about to start, and say
// whether every one of them was read (for a heartbeat), both at one moment.
func (g *group) marks() (m lease.Marks, read bool) {
	c := g.c
	m = lease.Marks{Services: true, Listed: sortedSet(g.k.listing()), MAC: c.o.Datapath.MAC, Watching: c.monitor != nil}
	if c.monitor != nil {
		var mine []conflict.Finding
		for _, f := range c.monitor.Active() {
			if g.vips[f.Addr] != nil {
				mine = append(mine, f)
			}
		}
		m.Conflicts = conflict.Format(mine)
	}
	return m, !g.k.unread()
}

// annotations are the group's marks as written on its Lease.
func (g *group) annotations() map[string]string {
	return g.write(func() lease.Marks { m, _ := g.marks(); return m }).Annotations()
}

// add puts ip under the group. It goes on the interface once
// published and checked; a holder publishes at once.
func (g *group) add(ip netip.Addr, ov *owner.VIP) {
	g.vips[ip] = ov
	if g.k.add(ip) {
		g.publish()
	}
}

// remove takes ip out of the group after it was dropped; a
// holder's next write, at once, says it let go (claim.remove).
func (g *group) remove(ip netip.Addr) {
	delete(g.vips, ip)
	if g.k.remove(ip) {
		g.publish()
	}
}

// publish asks a holder to write its Lease now.
func (g *group) publish() {
	if !g.k.leading {
		return
	}
	if g.el != nil {
		g.el.Renew()
	} else {
		g.c.elector.Renew()
	}
}

// fenceOK: this node holds the group's Lease with an unexpired fence.
func (g *group) fenceOK() bool { return g.k.fenceOK(g.c.o.Clock.Now()) }

// check starts the quorum read for the group's published, not yet cleared
// addresses (on the loop): its answer (checked) holds those that no other
// live Lease lists. While some stay blocked it runs again every retry
// period.
func (c *Controller) check(g *group) {
	if r := g.k.startRead(c.o.Clock.Now()); r != nil {
		c.outside().read(g, r)
	}
}

// checked takes the answer of read r (on the loop): vs are the Leases it
// read, other than the group's own, or err; the read was asked for at
// asked and answered at answered (leaseView.claimedRead). Neither is the
// loop's now: an answer that waited for the loop behind a long event
// would otherwise find a live holder's Lease expired.
func (c *Controller) checked(g *group, r *claimRead, vs []leaseVersion, err error, asked, answered time.Time) {
	a := readAnswer{err: err}
	var listed map[netip.Addr]bool
	if err == nil {
		a.blocked, listed, a.by = c.seen.claimedRead(c.self(), vs, r.want, asked, answered)
	}
	c.log.Debug("claim check: read every Lease", "lease", g.lease, "addresses", len(r.want), "blocked", len(a.blocked), "took", answered.Sub(asked))
	if err != nil {
		c.log.Warn("cannot read the Leases to check who holds a Service VIP; trying again", "lease", g.lease, "err", err)
	}
	if c.o.Datapath.Probe != nil {
		a.fresh = func(ip netip.Addr) bool { return c.fresh(ip, listed) }
	}
	d := g.k.read(r, a, c.o.Clock.Now(), c.stopping)
	events := c.hold(g, d.hold)
	if len(d.waiting) > 0 {
		// One line per check: a planned move of a stopping node's share
		// waits here for each address (spread mode, handOver).
		c.log.Info("waiting for addresses to be let go before claiming them", "lease", g.lease, "count", len(d.waiting), "first", d.waiting[:min(3, len(d.waiting))])
		if g.waited != nil {
			g.waited()
		}
	}
	if len(d.probe) > 0 {
		// The probe runs beside further checks: each address waits for
		// its own probe, not for the probes of earlier batches.
		c.outside().probe(g, r, d.probe)
	}
	c.after(events, len(d.hold))
	if len(d.waiting) > 0 {
		// The watch may have shown them let go while this read ran.
		c.claimOnWatch(g)
	}
	if d.again {
		c.check(g)
		return
	}
	if d.retry {
		c.retryCheck(g)
	}
}

// after posts the Events of a check and plans again when addresses went on
// the interface (their Services' status is due).
func (c *Controller) after(events []func(), held int) {
	for _, e := range events {
		e()
	}
	if held > 0 {
		c.planNow()
	}
}

// retryCheck checks g again after a retry period (on the loop), unless a
// retry is due already: one per group (each check that found an address
// blocked asked for one, and every one of them asked for the next: the
// reads of an address that waits grew with every check started beside
// them).
func (c *Controller) retryCheck(g *group) {
	if g.k.retryDue() {
		c.outside().retry(g)
	}
}

// retried: the retry period of g's check passed (on the loop).
func (c *Controller) retried(g *group) {
	g.k.retried()
	c.check(g)
}

// hold puts the addresses the claim held on the interface, until the fence
// (on the loop). It returns the Events to post (a conflict on the wire is
// over).
func (c *Controller) hold(g *group, ips []netip.Addr) []func() {
	var events []func()
	for _, ip := range ips {
		c.table().Hold(g.vips[ip], g.k.until)
		if h := c.vips[ip]; h != nil {
			h.known = true
			events = append(events, c.conflictOver(ip, h))
		}
	}
	return events
}

// fresh reports whether ip is to be probed before this claim (on the
// loop): no vipd node is known to have held it. Not listed by another
// Lease, not in the Service's status (which vipd writes once a node holds
// the address), not held here before. A takeover from a vipd owner is
// never delayed by a probe.
func (c *Controller) fresh(ip netip.Addr, listed map[netip.Addr]bool) bool {
	h := c.vips[ip]
	return h != nil && !listed[ip] && !h.known && !inStatus(h.svc, ip)
}

// probed takes the wire's answer for addresses read r cleared (on the
// loop): it holds those nobody answers for (claim.probed).
func (c *Controller) probed(g *group, r *claimRead, ips []netip.Addr, answered map[netip.Addr]net.HardwareAddr) {
	hold, conflicts := g.k.probed(r, ips, func(ip netip.Addr) bool { _, ok := answered[ip]; return ok }, c.o.Clock.Now(), c.stopping)
	events := c.hold(g, hold)
	for _, ip := range conflicts {
		events = append(events, c.answeredOnWire(ip, answered[ip]))
	}
	c.after(events, len(hold))
	if len(conflicts) > 0 {
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

// answeredOnWire notes that another host answered for ip (on the loop) and
// returns the Event to post: once per address and MAC.
func (c *Controller) answeredOnWire(ip netip.Addr, mac net.HardwareAddr) func() {
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

// conflictOver returns the Event that says a conflict on ip is over (on the
// loop).
func (c *Controller) conflictOver(ip netip.Addr, h *serviceVIP) func() {
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

// readLeases reads every Lease (a quorum read) for a claim check: those
// that list addresses, other than self's (the Lease of the group that
// asks). leaseView.claimed says which of them block what.
func (c *Controller) readLeases(ctx context.Context, self string) ([]leaseVersion, error) {
	list, err := c.o.Client.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	return c.claimable(list.Items, self), nil
}

// claimable are the Leases of items that list addresses, other than self,
// as the claim check sees them.
func (c *Controller) claimable(items []coordinationv1.Lease, self string) []leaseVersion {
	vs := make([]leaseVersion, 0, len(items))
	for i := range items {
		l := &items[i]
		if r := lease.ReadLease(l); !r.HasHolds || r.Key() == self {
			continue
		}
		vs = append(vs, versionOf(l, c.o.LeaseDuration))
	}
	return vs
}

// claimOnWatch holds, without another read, every address of g that its last
// check found blocked and whose blocking Leases have all let go of it since,
// as the watch shows them (claim.onWatch, leaseView.letGo): the new owner of
// a planned move claims on the old owner's write. Run (on the loop) on
// every heartbeat the watch delivers.
func (c *Controller) claimOnWatch(g *group) {
	now := c.o.Clock.Now()
	gone := func(ip netip.Addr, by map[string]string) bool {
		return c.seen.letGo(ip, by, now) || g.k.broken == "letgo-stopping" && c.stoppingAll(by)
	}
	hold := g.k.onWatch(gone, now, c.stopping)
	events := c.hold(g, hold)
	if len(hold) > 0 {
		c.log.Debug("claimed on the watch: every Lease that blocked these let go of them", "lease", g.lease, "addresses", len(hold))
	}
	c.after(events, len(hold))
}

// stoppingAll: every Lease of by is a heartbeat that says its node stops
// (claim.broken "letgo-stopping" takes such a heartbeat for one that let
// go, for the test that shows the permutation tests catch it).
func (c *Controller) stoppingAll(by map[string]string) bool {
	s, ok := c.st.(*spread)
	if !ok || len(by) == 0 {
		return false
	}
	for k := range by {
		_, name, _ := strings.Cut(k, "/")
		if !s.beats[name].stopping {
			return false
		}
	}
	return true
}

// versionOf is l as the claim check sees it.
func versionOf(l *coordinationv1.Lease, def time.Duration) leaseVersion {
	r := lease.ReadLease(l)
	return leaseVersion{key: r.Key(), rv: r.RV, holder: r.Holder, holds: r.HoldsText, dur: r.DurationOr(def), instance: r.Instance, seal: election.ReadSeal(l), def: def}
}

func sortedSet(set map[netip.Addr]bool) []netip.Addr {
	ips := make([]netip.Addr, 0, len(set))
	for ip := range set {
		ips = append(ips, ip)
	}
	sort.Slice(ips, func(i, j int) bool { return ips[i].Less(ips[j]) })
	return ips
}

// heldAddrs are the addresses on this node's interface now, their fences
// not passed (for the conflict watch).
func (c *Controller) heldAddrs() (out []netip.Addr) {
	c.lp.do(func() {
		for ip, h := range c.vips {
			if h.ov.HoldingNow() {
				out = append(out, ip)
			}
		}
	})
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
	msg := "service " + name + ": " + f.Report(f.Addr.String(), c.o.NodeName, c.o.Datapath.MAC)
	if svc != nil {
		c.poster.Post(c.runCtx, ref(svc, "Service"), corev1.EventTypeWarning, "AddressConflict", msg) // logs it too
	} else {
		c.log.Warn(msg, "vip", f.Addr, "mac", f.MAC)
	}
	if c.o.Datapath.OnConflict != nil {
		c.o.Datapath.OnConflict(f.Addr)
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
	c.st.renew()
}

// serviceOf is the Service whose address ip is on this node (nil: none).
func (c *Controller) serviceOf(ip netip.Addr) (svc *corev1.Service) {
	c.lp.do(func() {
		if h := c.vips[ip]; h != nil {
			svc = h.svc
		}
	})
	return svc
}
