package services

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/gate"
	"github.com/vipd/vipd/internal/kubeapi"
	"github.com/vipd/vipd/internal/lease"
)

// Spread mode: every node that runs the Services controller renews a
// heartbeat Lease of its own, and every node computes the same placement of
// Service VIPs over the live, eligible nodes (Place). A node adds an
// address only when the placement names it and no other node's live
// heartbeat lists the address (group.check, S8), so two nodes that disagree
// for a moment about who is live never both hold it.
const (
	// HeartbeatPrefix names each node's heartbeat Lease, in the Leases'
	// namespace (cp_namespace): vipd-node-<node name>.
	HeartbeatPrefix = "vipd-node-"
	// ReadyAnnotation on a heartbeat says its node has been live for the
	// settling time (or found no ready node when it started): only then is
	// it given VIPs, so a node that comes back does not take its share at
	// once and maybe lose it again.
	ReadyAnnotation = lease.Ready
	// HeartbeatFinalizer keeps a deleted heartbeat (kubectl delete lease)
	// in the API until its node has removed its VIPs and let it go, so
	// that what it lists is never lost while the node may still hold it:
	// another node that never saw the Lease would otherwise claim those
	// addresses at once. A heartbeat whose node is gone is let go by the
	// other nodes a lease duration after they saw it marked.
	HeartbeatFinalizer = "vipd.io/heartbeat"
	// StoppingAnnotation on a heartbeat says its node is stopping (SIGTERM):
	// it is given no VIPs, and it keeps those it holds until the nodes
	// they are placed on list them (or handOverWait passes), so that each
	// of them claims at once when it lets go.
	StoppingAnnotation = lease.Stopping
	// ReadAnnotation on a heartbeat is "false" while some address it lists
	// is neither held nor found blocked by a read made after a write that
	// listed it (its claim check has not answered yet). A stopping node
	// lets go once the nodes its VIPs go to list them and say "true": each
	// then claims on the watch event of its letting go, with no read of
	// its own still running (at 10 nodes and 1000 Services such a read
	// was the longest wait of a planned move in half the runs). Absent
	// (an older vipd): not waited for.
	ReadAnnotation = lease.Read
	// ExcludeLabel on a Node keeps Service VIPs off it (the Kubernetes
	// label, which MetalLB honours too).
	ExcludeLabel = "node.kubernetes.io/exclude-from-external-load-balancers"
)

// HeartbeatName is the heartbeat Lease of node.
func HeartbeatName(node string) string {
	name := HeartbeatPrefix + strings.ToLower(node)
	if len(name) > 253 {
		name = name[:253]
	}
	return name
}

// beat is what this node observed of another node's heartbeat.
type beat struct {
	rv     string
	at     time.Time // when this version was first observed (our clock)
	holder string
	ready  bool
	dur    time.Duration
	holds  string
	// listed is holds parsed (by observe: once per version, not per pass).
	listed []netip.Addr
	// deleting: marked for deletion, with HeartbeatFinalizer.
	deleting bool
	// held is how long its node has held it without a break (renewTime -
	// acquireTime, both from that node's clock).
	held time.Duration
	// stopping: its node stops (StoppingAnnotation).
	stopping bool
	// unread: ReadAnnotation says "false".
	unread bool
	// instance is the writing process's token, seal its seal (S9).
	instance string
	seal     election.Seal
	// trust judges the versions; foreign says what someone other than
	// the holder changed in this one, and prior, the last version its
	// holder wrote, counts instead until priorUntil (beat.counted).
	trust      election.Trust
	foreign    string
	prior      *beat
	priorUntil time.Time
	// since is when this node first saw the heartbeat list each address
	// (placement gives an address listed twice to the older listing).
	since map[netip.Addr]time.Time
}

// counted is b as liveness and placement count it (S9): b itself when its
// holder wrote it; while someone else's change of it is fresh, the last
// version its holder wrote, live until priorUntil; after that nothing, until
// its holder writes it again.
func (b beat) counted(now time.Time) (beat, bool) {
	if b.foreign == "" {
		return b, true
	}
	if b.prior == nil || !now.Before(b.priorUntil) {
		return beat{}, false
	}
	p := *b.prior
	if b.rv == "deleted" {
		p.rv = b.rv
	}
	p.at = b.priorUntil.Add(-p.dur)
	return p, true
}

// spread is the state of spread mode on this node.
type spread struct {
	c      *Controller
	g      *group // this node's heartbeat: every VIP placed here
	el     *election.Elector
	settle time.Duration
	// alloc is the Services Lease's gate: open only while allocating.
	alloc *gate.Gate

	// lastNodes are the eligible nodes of the last placement (the pass's,
	// for the log).
	lastNodes string
	// changed is signalled on every change of a heartbeat.
	changed chan struct{}

	// The rest is the loop's (Controller.lp).
	beats   beatView  // by Lease name: the heartbeats, and the Services Lease
	readyAt time.Time // zero: not decided yet
	wake    time.Time // the next planned re-plan
	// lettingGo: heartbeat versions (name@rv) whose finalizer this node
	// took off, or tried to.
	lettingGo map[string]bool
	// units are the last placement's units (handOver places them again).
	units []Unit
	// stopping: this node hands its VIPs over (handOver).
	stopping bool
}

func (c *Controller) newSpread() (*spread, error) {
	s := &spread{c: c, settle: c.o.Settle, beats: beatView{}, lettingGo: map[string]bool{}, changed: make(chan struct{}, 1)}
	if s.settle <= 0 {
		s.settle = 2 * c.o.LeaseDuration
	}
	s.alloc = s.newAllocGate(c.o.LeaseDuration)
	s.g = c.newGroup(c.o.LeaseNamespace + "/" + HeartbeatName(c.o.NodeName))
	s.g.lapsed, s.g.waited = s.lapsed, s.waited
	el, err := election.New(election.Options{
		Client: c.o.Client, Namespace: c.o.LeaseNamespace, Name: HeartbeatName(c.o.NodeName), Identity: c.o.NodeName,
		Timing:      c.o.Timing,
		Annotations: s.annotations, Guard: s.g, Clock: c.o.Clock, Logger: c.log.With("lease", "heartbeat"),
		Finalizer: HeartbeatFinalizer, Instance: c.o.Instance, OnEdited: c.edited(c.o.LeaseNamespace, HeartbeatName(c.o.NodeName)),
	})
	if err != nil {
		return nil, err
	}
	s.el, s.g.el = el, el
	return s, nil
}

// annotations are the heartbeat's: the VIPs it holds, whether each was
// read, the node's readiness and whether it stops, at one moment.
func (s *spread) annotations() map[string]string {
	return s.g.write(func() lease.Marks {
		m, read := s.g.marks()
		m.Beat = &lease.Beat{Node: s.c.o.NodeName, Ready: s.isReady(s.c.o.Clock.Now()), Stopping: s.stopping, Read: read}
		return m
	}).Annotations()
}

// isReady: this node has settled (on the loop).
func (s *spread) isReady(now time.Time) bool {
	return !s.readyAt.IsZero() && !now.Before(s.readyAt)
}

// lapsed: this node's heartbeat fence passed (its VIPs are gone): it settles
// again before it is given VIPs, so the nodes that took them over keep them.
// Not when it stepped down because someone else edited its heartbeat (S9):
// the other nodes counted it as holder meanwhile, so nobody took them over.
// On the loop.
func (s *spread) lapsed(reason string) {
	if strings.HasPrefix(reason, election.EditedReason) {
		return
	}
	if !s.readyAt.IsZero() {
		s.readyAt = s.c.o.Clock.Now().Add(s.settle)
	}
}

// servicesLease: in spread mode the Services Lease holds no VIP and only
// allocates (alloc); the heartbeat's placement honours ExcludeLabel and
// cordons.
func (s *spread) servicesLease() (election.Gate, election.Standby) { return s.alloc, nil }

func (s *spread) nodesChanged() {}
func (s *spread) peeks() bool   { return true }

// run decides whether this node settles first, and renews its heartbeat
// until live ends (after the hand-over of a planned stop).
func (s *spread) run(live context.Context) {
	c := s.c
	c.lp.do(s.decideReady)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := s.el.Run(live); err != nil {
			c.log.Error("heartbeat election ended", "err", err)
		}
	}()
}

func (s *spread) ready() error { return s.el.Ready() }

func (s *spread) check() error {
	if s.g.k.leading && !s.g.fenceOK() {
		return fmt.Errorf("services: heartbeat %s not renewed: fence passed", s.g.lease)
	}
	return nil
}

func (s *spread) renew() { s.el.Renew() }

// assign: every address placed here waits on this node's heartbeat.
func (s *spread) assign(netip.Addr, want) *group { return s.g }

func (s *spread) reconciled(context.Context, map[string]*corev1.Service) {}

// watch watches the heartbeats (Leases named HeartbeatPrefix* in the
// Leases' namespace). Every change re-plans, and holds the addresses
// waiting for another node to let go once the watch shows it did
// (Controller.claimOnWatch): a planned move is claimed as soon as the old owner's
// heartbeat says it let go, without another read.
func (s *spread) watch() {
	c := s.c
	leases := c.o.Client.CoordinationV1().Leases(c.o.LeaseNamespace)
	src := kubeapi.New("Leases in "+c.o.LeaseNamespace, leases.List, leases.Watch, nil)
	src.Required = true
	src.Forbidden = "services: the ClusterRole does not allow leases.coordination.k8s.io (get, list, watch, create, update), which svc_election needs: generate the RBAC with vipd manifest rbac, or add that rule to ClusterRole system:kube-vip-role"
	c.inform(src, &coordinationv1.Lease{}, nil, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.watched(o, false) },
		UpdateFunc: func(_, o any) { s.watched(o, false) },
		DeleteFunc: func(o any) { s.watched(o, true) },
	})
}

// watched is the watch's handler of a Lease in the Leases' namespace: a
// heartbeat, or the Services Lease (gone: deleted). It posts the event.
func (s *spread) watched(obj any, gone bool) {
	c := s.c
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			l, _ = d.Obj.(*coordinationv1.Lease)
		}
	}
	if l == nil || !strings.HasPrefix(l.Name, HeartbeatPrefix) && l.Name != c.o.LeaseName {
		return
	}
	// A renewal that changes nothing (the same holder, readiness and
	// addresses, not expired) changes no placement: planning on it
	// would cost every node a pass per node per retry period (expiry
	// is planned for by a timer, wakeIn). When only the addresses
	// another node lists changed, its claims are checked at once but
	// the plan waits for the pacer: a planned move is a burst of
	// such writes, one per new owner. No quorum read on a change
	// either: a blocked address is held by claimOnWatch once the watch
	// shows every blocking Lease let go of it, and read again every
	// retry period otherwise.
	c.lp.post(func() {
		if changed, holdsOnly := s.observe(l, gone); changed {
			c.claimOnWatch(s.g)
			if holdsOnly {
				c.planSoon()
			} else {
				c.planNow()
			}
			select {
			case s.changed <- struct{}{}:
			default:
			}
		}
	})
}

// observe records a heartbeat version (our clock: nothing depends on other
// nodes' clocks), in the view of heartbeats and in the claim check's (on
// the loop). It
// reports whether the placement may change, and whether only the addresses
// the heartbeat lists changed (the same live holder, readiness and duration).
func (s *spread) observe(l *coordinationv1.Lease, gone bool) (changed, holdsOnly bool) {
	c := s.c
	now := c.o.Clock.Now()
	r := lease.ReadLease(l)
	b := beat{rv: r.RV, holder: r.Holder, ready: r.Ready, dur: r.DurationOr(c.o.LeaseDuration), holds: r.HoldsText,
		deleting: r.Deleting && r.HasFinalizer(HeartbeatFinalizer), held: r.HeldFor(), stopping: r.Stopping, unread: r.Unread,
		instance: r.Instance, seal: election.ReadSeal(l)}
	changed, holdsOnly = s.beats.observe(l.Name, b, gone, now)
	if !gone {
		c.seen.watched(s.g.lease, versionOf(l, c.o.LeaseDuration), now)
	}
	return changed, holdsOnly
}

// beatView is what this node observed of the heartbeats (and of the
// Services Lease), by Lease name. Its methods are the whole of spread
// mode's view of who is live and who holds what, so that the permutation
// test drives the same code.
type beatView map[string]beat

// observe records version b of Lease name (or its deletion) seen at now,
// and says whether the placement may change, and whether only the
// addresses the heartbeat lists changed (the same live holder, readiness,
// duration and deletion mark). A deleted heartbeat keeps its last version:
// its node may still hold what it listed until a lease duration has passed.
func (v beatView) observe(name string, b beat, gone bool, now time.Time) (changed, holdsOnly bool) {
	prev, ok := v[name]
	if gone {
		if ok {
			prev.rv, prev.at = "deleted", now
			v[name] = prev
		}
		return ok, false
	}
	if ok && prev.rv == b.rv {
		return false, false
	}
	b.at, b.listed = now, listedIn(b.holds)
	if ok {
		b.trust = prev.trust
	}
	if b.foreign = b.trust.Judge(b.seal); b.foreign != "" && ok {
		// Changed by someone other than its holder (S9): what the holder
		// last wrote counts for a lease duration from now.
		p := lastOwn(prev, prev.foreign != "", prev.prior)
		p.prior = nil
		b.prior, b.priorUntil = &p, now.Add(p.dur)
	}
	b.since = listedSince(prev, ok, b, now)
	v[name] = b
	if b.foreign != "" || prev.foreign != "" {
		return true, false
	}
	return b.changedFrom(prev, ok, now)
}

// listedSince is when this node first saw b list each address (prev, if
// ok, the version before).
func listedSince(prev beat, ok bool, b beat, now time.Time) map[netip.Addr]time.Time {
	if ok && prev.holds == b.holds {
		return prev.since
	}
	since := make(map[netip.Addr]time.Time, len(b.listed))
	for _, ip := range b.listed {
		if t, seen := prev.since[ip]; seen {
			since[ip] = t
		} else {
			since[ip] = now
		}
	}
	return since
}

// changedFrom is observe's answer for b after prev (ok: there was one).
func (b beat) changedFrom(prev beat, ok bool, now time.Time) (changed, holdsOnly bool) {
	// Expired as this node saw it: a renewal brings it back to life.
	expired := ok && now.Sub(prev.at) >= prev.dur
	same := ok && prev.rv != "deleted" && !expired && prev.holder == b.holder && prev.ready == b.ready && prev.dur == b.dur && prev.stopping == b.stopping
	listing := prev.holds != b.holds || prev.unread != b.unread
	return !same || listing, same && listing && prev.deleting == b.deleting
}

// candidate is a live node, and whether it is ready for VIPs.
type candidate struct {
	name  string
	ready bool
}

// live returns the nodes other than self whose heartbeat is live at now,
// and when the first of them runs out (0: none).
func (v beatView) live(self string, now time.Time) (live []candidate, next time.Duration) {
	for k, b := range v {
		b, ok := b.counted(now)
		if !ok {
			continue
		}
		if !strings.HasPrefix(k, HeartbeatPrefix) || b.holder == "" || b.holder == self || b.rv == "deleted" || b.deleting || b.stopping {
			continue // (marked for deletion, or stopping: its node gives its VIPs up)
		}
		left := b.at.Add(b.dur).Sub(now)
		if left <= 0 {
			continue
		}
		if next == 0 || left < next {
			next = left
		}
		live = append(live, candidate{b.holder, b.ready})
	}
	return live, next
}

// eligible are the live nodes that may be given VIPs, never an excluded
// one: the ready ones not cordoned (kubectl drain: their VIPs move off
// before the node goes down); if there are none, the ready ones; if none
// is ready, all.
func eligible(live []candidate, excluded, cordoned func(string) bool) []string {
	for _, tier := range []func(candidate) bool{
		func(n candidate) bool { return n.ready && !cordoned(n.name) },
		func(n candidate) bool { return n.ready },
		func(candidate) bool { return true },
	} {
		var out []string
		for _, n := range live {
			if tier(n) && !excluded(n.name) {
				out = append(out, n.name)
			}
		}
		if len(out) > 0 {
			sort.Strings(out)
			return out
		}
	}
	return nil
}

// holders maps every address a live heartbeat lists to its node (as the
// watch shows the heartbeats, self's own too, so that every node places
// from the same data). Only what a holder wrote counts (beat.counted: an
// edit of a heartbeat gives nobody an address), and an address two
// heartbeats list (a move under way) goes to the one that has listed it
// longer, as this node saw them: the node that holds it.
func (v beatView) holders(self string, now time.Time) map[netip.Addr]string {
	names := make([]string, 0, len(v))
	for k := range v {
		names = append(names, k)
	}
	sort.Strings(names)
	out := map[netip.Addr]string{}
	first := map[netip.Addr]time.Time{}
	for _, k := range names {
		b, ok := v[k].counted(now)
		if !ok || !strings.HasPrefix(k, HeartbeatPrefix) || b.holder == "" || b.rv == "deleted" || now.Sub(b.at) >= b.dur && b.holder != self {
			continue
		}
		for _, ip := range b.listed {
			t := b.since[ip]
			if out[ip] == "" || t.Before(first[ip]) {
				out[ip], first[ip] = b.holder, t
			}
		}
	}
	return out
}

// othersLive reports whether Lease k, version b, is the heartbeat of a node
// other than self, live at now as this node saw it.
func othersLive(k string, b beat, self string, now time.Time) bool {
	return strings.HasPrefix(k, HeartbeatPrefix) && b.holder != "" && b.holder != self && b.rv != "deleted" && now.Sub(b.at) < b.dur
}

// readByOthers are the addresses listed by a live heartbeat of a node other
// than self that does not say some of its addresses wait for a read.
func (v beatView) readByOthers(self string, now time.Time) map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for k, b := range v {
		if b.foreign != "" || !othersLive(k, b, self, now) || b.unread {
			continue
		}
		for _, ip := range b.listed {
			out[ip] = true
		}
	}
	return out
}

// listedIn parses a HoldsAnnotation (addresses separated by commas).
func listedIn(holds string) []netip.Addr { return lease.ParseHolds(holds) }

// place gives each unit its node, as this view shows the nodes: the units
// held by a live heartbeat stay there while the bound allows (Place).
func (v beatView) place(us []Unit, nodes []string, self string, now time.Time) map[netip.Addr]string {
	holders := v.holders(self, now)
	for i := range us {
		for _, a := range us[i].Addrs {
			if h := holders[a]; h != "" {
				us[i].Holder = h
				break
			}
		}
	}
	return Place(us, nodes)
}

// decideReady runs once the caches are synced: a node that finds another
// live, ready node holding VIPs, which has held its heartbeat for the
// settling time at least, settles first (it joins a running cluster:
// taking its share at once might only move VIPs back and forth); one that
// finds none (the cluster starts, or holds nothing yet) is ready at once.
// On the loop.
func (s *spread) decideReady() {
	now := s.c.o.Clock.Now()
	others := false
	for k, b := range s.beats {
		b, ok := b.counted(now)
		// Nodes that started a moment ago (held less than the settling
		// time) do not count: the cluster is starting together.
		if ok && othersLive(k, b, s.c.o.NodeName, now) && !b.deleting && !b.stopping && b.ready && b.holds != "" && b.held >= s.settle {
			others = true
		}
	}
	s.readyAt = now
	if others {
		s.readyAt = now.Add(s.settle)
	}
	if others {
		s.c.log.Info("spread mode: other nodes hold the Service VIPs; taking a share once settled", "settle", s.settle)
	}
}

// nodes returns the live nodes that may be given VIPs, and when the
// liveness of one of them runs out next (to plan again then); on the loop.
func (s *spread) nodes() (nodes []string, next time.Duration) {
	c := s.c
	now := c.o.Clock.Now()
	live, next := s.beats.live(c.o.NodeName, now)
	readyAt := s.readyAt
	if s.g.fenceOK() {
		live = append(live, candidate{c.o.NodeName, !readyAt.IsZero() && !now.Before(readyAt)})
		if left := readyAt.Sub(now); left > 0 && (next == 0 || left < next) {
			next = left
		}
	}
	return eligible(live, c.excluded, c.cordoned), next
}

// reports: whether this node posts the Events about bad input
// and Services no node can hold: the first of the live, eligible nodes
// (every node's view agrees but for moments, when two may post one
// Event); with none eligible, the first of the live ones and this one.
// On the loop.
func (s *spread) reports(bool) bool {
	c := s.c
	nodes, _ := s.nodes()
	if len(nodes) == 0 {
		live, _ := s.beats.live(c.o.NodeName, c.o.Clock.Now())
		nodes = []string{c.o.NodeName}
		for _, n := range live {
			nodes = append(nodes, n.name)
		}
		sort.Strings(nodes)
	}
	return nodes[0] == c.o.NodeName
}

// Spread reports, in spread mode, how many nodes this node sees live and
// eligible, and whether it is ready itself (zero and false otherwise).
func (c *Controller) Spread() (nodes int, ready bool) {
	s, ok := c.st.(*spread)
	if !ok {
		return 0, false
	}
	c.lp.do(func() {
		n, _ := s.nodes()
		nodes, ready = len(n), s.isReady(c.o.Clock.Now())
	})
	return nodes, ready
}

// Beat is one node's heartbeat as this node observed it (for metrics).
type Beat struct {
	Node string
	Age  time.Duration // since this node saw its latest version
	VIPs int           // addresses it lists
}

// Beats reports, in spread mode, every node's heartbeat that has a holder,
// as this node observed it, by node name (nil otherwise).
func (c *Controller) Beats() []Beat {
	s, ok := c.st.(*spread)
	if !ok {
		return nil
	}
	var out []Beat
	c.lp.do(func() { out = s.beatsNow(c.o.Clock.Now()) })
	return out
}

// beatsNow is Beats on the loop.
func (s *spread) beatsNow(now time.Time) (out []Beat) {
	for k, b := range s.beats {
		if !strings.HasPrefix(k, HeartbeatPrefix) || b.holder == "" || b.rv == "deleted" {
			continue
		}
		n := 0
		for _, f := range strings.Split(b.holds, ",") {
			if strings.TrimSpace(f) != "" {
				n++
			}
		}
		out = append(out, Beat{Node: b.holder, Age: now.Sub(b.at), VIPs: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// cordoned reports whether the Node is cordoned (spec.unschedulable).
func (c *Controller) cordoned(node string) bool {
	n := c.node(node)
	return n != nil && n.Spec.Unschedulable
}

// excluded reports whether the Node carries ExcludeLabel.
func (c *Controller) excluded(node string) bool {
	n := c.node(node)
	if n == nil {
		return false
	}
	_, ok := n.Labels[ExcludeLabel]
	return ok
}

// node is the Node from the cache (nil: unknown, or Nodes not readable).
func (c *Controller) node(name string) *corev1.Node {
	if c.nodeLister == nil {
		return nil
	}
	n, err := c.nodeLister.Get(name)
	if err != nil {
		return nil
	}
	return n
}

// endpointNodes are the nodes with a ready endpoint of the Service.
func (c *Controller) endpointNodes(svcKey string) []string {
	set := map[string]bool{}
	objs, _ := c.slices.ByIndex("service", svcKey)
	for _, o := range objs {
		s := o.(*discoveryv1.EndpointSlice)
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && (ep.Conditions.Ready == nil || *ep.Conditions.Ready) {
				set[*ep.NodeName] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// units groups the planned addresses that must stay on one node: those of
// one Service, and of Services sharing one of them.
func units(plan []*Entry, endpoints func(string) []string) ([]Unit, map[netip.Addr][]*Entry) {
	parent := map[netip.Addr]netip.Addr{}
	var find func(netip.Addr) netip.Addr
	find = func(a netip.Addr) netip.Addr {
		p, ok := parent[a]
		if !ok || p == a {
			parent[a] = a
			return a
		}
		r := find(p)
		parent[a] = r
		return r
	}
	by := map[netip.Addr][]*Entry{}
	for _, e := range plan {
		if e.Problem != nil || len(e.Allocated) > 0 || len(e.Addrs) == 0 {
			continue
		}
		first := find(e.Addrs[0])
		for _, a := range e.Addrs {
			by[a] = append(by[a], e)
			if r := find(a); r != first {
				parent[r] = first
			}
		}
	}
	groups := map[netip.Addr]*Unit{}
	for a := range by {
		r := find(a)
		u := groups[r]
		if u == nil {
			u = &Unit{}
			groups[r] = u
		}
		u.Addrs = append(u.Addrs, a)
	}
	out := make([]Unit, 0, len(groups))
	for _, u := range groups {
		sort.Slice(u.Addrs, func(i, j int) bool { return u.Addrs[i].Less(u.Addrs[j]) })
		seen := map[*Entry]bool{}
		for _, a := range u.Addrs {
			for _, e := range by[a] {
				if seen[e] || !e.Local {
					continue
				}
				seen[e] = true
				u.Nodes = intersect(u.Nodes, endpoints(e.Key))
			}
		}
		out = append(out, *u)
	}
	return out, by
}

// intersect of a nil set (no restriction yet) and b is b.
func intersect(a, b []string) []string {
	if a == nil {
		return append([]string{}, b...)
	}
	in := map[string]bool{}
	for _, n := range b {
		in[n] = true
	}
	var out []string
	for _, n := range a {
		if in[n] {
			out = append(out, n)
		}
	}
	if out == nil {
		out = []string{}
	}
	return out
}

// legacy returns the addresses a live Services Lease of another node lists:
// during a rolling switch from the single-holder mode, its holder (not in
// spread mode yet) owns them. A spread node does not claim those it does
// not hold already, so the two modes never wait for each other: the
// legacy holder waits for what spread nodes hold (group.check), spread
// nodes leave it the rest until it lets go. On the loop.
func (s *spread) legacy() map[netip.Addr]bool {
	c := s.c
	b, ok := s.beats[c.o.LeaseName]
	if ok {
		b, ok = b.counted(c.o.Clock.Now())
	}
	// (A Lease under this node's name that another process wrote is that
	// process's: a host with the same name in the single-holder mode.)
	if !ok || b.holder == "" || c.self().mine(b.holder, b.instance) || b.rv == "deleted" || c.o.Clock.Now().Sub(b.at) >= b.dur || b.holds == "" {
		return nil
	}
	out := map[netip.Addr]bool{}
	for _, ip := range b.listed {
		out[ip] = true
	}
	return out
}

// place returns the addresses of the last plan (planMemo) placed on this
// node, and posts a Warning (if this node reports, once) for Services no
// eligible node can hold.
func (s *spread) place(ctx context.Context, reports bool) placement {
	c := s.c
	us, by := c.memo.grouped(c.endpointNodes)
	var nodes []string
	var next time.Duration
	var nowhere []netip.Addr
	mine := map[netip.Addr]bool{}
	c.lp.do(func() {
		nodes, next = s.nodes()
		s.units = slices.Clone(us)
		where := s.beats.place(us, nodes, c.o.NodeName, c.o.Clock.Now())
		legacy := s.legacy()
		for a, n := range where {
			switch {
			case n == c.o.NodeName && legacy[a] && !s.g.k.cleared[a]:
				// left to the Services Lease holder of the single-holder mode
			case n == c.o.NodeName:
				mine[a] = true
			case n == "":
				nowhere = append(nowhere, a)
			}
		}
		if next > 0 {
			s.wakeIn(ctx, next+10*time.Millisecond)
		}
	})
	if seen := strings.Join(nodes, ","); seen != s.lastNodes {
		c.log.Info("spread mode: the live, eligible nodes changed", "nodes", seen, "before", s.lastNodes)
		s.lastNodes = seen
	}
	for _, a := range nowhere {
		if !reports {
			break
		}
		for _, e := range by[a] {
			why := "no node is live and eligible"
			if e.Local {
				why = "no live, eligible node has a ready endpoint of it (externalTrafficPolicy: Local)"
			}
			c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, "NoEligibleNode",
				fmt.Sprintf("service %s: %s, so no node announces %s: check the vipd Pods, the Service's endpoints, and label %s on the Nodes", e.Key, why, a, ExcludeLabel))
		}
	}
	s.unfinalize(ctx)
	return placement{here: func(ip netip.Addr) bool { return mine[ip] }, named: true}
}

// unfinalize takes HeartbeatFinalizer off the heartbeats marked for deletion
// whose node has not renewed them for their duration since this node saw
// them (its fence has passed: it holds nothing), so that deleting the
// heartbeat of a node that is gone completes.
func (s *spread) unfinalize(ctx context.Context) {
	c := s.c
	var due []string
	c.lp.do(func() {
		now := c.o.Clock.Now()
		for k, b := range s.beats {
			if b.deleting && b.holder != c.o.NodeName && now.Sub(b.at) >= b.dur && !s.lettingGo[k+"@"+b.rv] {
				s.lettingGo[k+"@"+b.rv] = true
				due = append(due, k)
			}
		}
	})
	for _, name := range due {
		leases := c.o.Client.CoordinationV1().Leases(c.o.LeaseNamespace)
		l, err := leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.DeletionTimestamp == nil {
			continue
		}
		var b beat
		c.lp.do(func() { b = s.beats[name] })
		if l.ResourceVersion != b.rv {
			continue // changed since: its next observation decides
		}
		l.Finalizers = slices.DeleteFunc(l.Finalizers, func(f string) bool { return f == HeartbeatFinalizer })
		if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
			c.log.Debug("could not let a deleted heartbeat go", "lease", name, "err", err)
			continue
		}
		c.log.Info("let the deleted heartbeat of a node that is gone be deleted", "lease", name, "node", b.holder)
	}
}

// handOverWait bounds the first step of a planned stop (handOver).
const handOverWait = 2 * time.Second

// handOver is the first step of a planned stop (SIGTERM): this node says
// in its heartbeat that it stops, so every node places its VIPs on the
// others, and each new owner lists its share in its own heartbeat (and
// finds it blocked by this node's, and says so) while this node still
// answers for them. Once every VIP it holds that has somewhere to go is
// listed by another live heartbeat that says its reads answered (or after
// wait), it returns; its caller removes the VIPs and releases the
// heartbeat, and each new owner claims on the watch event of that, its
// placement, heartbeat write and quorum read already done. (Before, all
// of that ran after the VIPs were gone: at 10 nodes and 1000 Services they
// were on no node for 0.5-0.7 s.)
func (s *spread) handOver(ctx context.Context, wait time.Duration) {
	c := s.c
	start := c.o.Clock.Now()
	var held, left int
	c.lp.do(func() { held, left = s.beginHandOver() })
	if held == 0 {
		return
	}
	s.el.Renew()
	t := c.o.Clock.NewTimer(wait)
	defer t.Stop()
	for left > 0 {
		select {
		case <-s.changed:
		case <-t.C():
			c.log.Warn("stopping: not every new owner listed its Service VIPs in time; letting go of all the same (they claim once they see it)", "vips", held, "notListed", left, "waited", wait)
			return
		case <-ctx.Done():
			return
		}
		c.lp.do(func() { _, left = s.handing() })
	}
	c.log.Info("stopping: the new owners list this node's Service VIPs; letting go", "vips", held, "took", c.o.Clock.Since(start))
}

// beginHandOver is the hand-over's start on the loop: a node that holds
// addresses says, from its next write on, that it stops.
func (s *spread) beginHandOver() (held, left int) {
	if held, left = s.handing(); held > 0 {
		s.stopping = true
	}
	return held, left
}

// waited: a read found addresses blocked (on the loop). While another node
// stops, its heartbeat says so at once (ReadAnnotation): the stopping node
// waits for it.
func (s *spread) waited() {
	c := s.c
	now := c.o.Clock.Now()
	for k, b := range s.beats {
		if othersLive(k, b, c.o.NodeName, now) && b.stopping {
			s.g.publish()
			return
		}
	}
}

// handing returns how many addresses this node holds, and how many of
// those the placement without it gives to another node that does not
// list them yet, or has not read them (ReadAnnotation); on the loop.
func (s *spread) handing() (held, left int) {
	c := s.c
	now := c.o.Clock.Now()
	if len(s.g.k.cleared) == 0 {
		return 0, 0
	}
	live, _ := s.beats.live(c.o.NodeName, now)
	nodes := eligible(live, c.excluded, c.cordoned)
	where := s.beats.place(slices.Clone(s.units), nodes, c.o.NodeName, now)
	listed := s.beats.readByOthers(c.o.NodeName, now)
	for a := range s.g.k.cleared {
		if n := where[a]; n != "" && n != c.o.NodeName && !listed[a] {
			left++
		}
	}
	return len(s.g.k.cleared), left
}

// wakeIn plans again after d (a heartbeat runs out, or this node becomes
// ready), unless a wake-up is due before that already; on the loop.
func (s *spread) wakeIn(ctx context.Context, d time.Duration) {
	c := s.c
	now := c.o.Clock.Now()
	at := now.Add(d)
	if s.wake.After(now) && !at.Before(s.wake) {
		return
	}
	s.wake = at
	c.outside().later(ctx, d, func() {
		if s.wake.Equal(at) {
			s.wake = time.Time{}
		}
		c.planNow()
	})
}

// Heartbeat is one node's heartbeat as vipd status shows it.
type Heartbeat struct {
	Node     string
	Holder   string
	Renewed  time.Time
	Duration time.Duration
	Ready    bool
	Stopping bool // handing its VIPs over (StoppingAnnotation)
	Holds    []string
}

// Heartbeats reads every heartbeat Lease in namespace.
func Heartbeats(ctx context.Context, c interface {
	List(context.Context, metav1.ListOptions) (*coordinationv1.LeaseList, error)
}) ([]Heartbeat, error) {
	list, err := c.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []Heartbeat
	for _, l := range list.Items {
		if !strings.HasPrefix(l.Name, HeartbeatPrefix) {
			continue
		}
		r := lease.ReadLease(&l)
		h := Heartbeat{Node: r.Node, Holder: r.Holder, Ready: r.Ready, Duration: r.Duration, Stopping: r.Stopping, Renewed: r.Renewed}
		if h.Node == "" {
			h.Node = strings.TrimPrefix(l.Name, HeartbeatPrefix)
		}
		for _, a := range strings.Split(r.HoldsText, ",") {
			if a = strings.TrimSpace(a); a != "" {
				h.Holds = append(h.Holds, a)
			}
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out, nil
}
