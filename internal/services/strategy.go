package services

import (
	"context"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/gate"
	"github.com/vipd/vipd/internal/lease"
)

// strategy is the ownership layer: how this node comes to hold the
// addresses the plan gives the Services. The plan says which Service has
// which addresses; the strategy says which of them this node may hold and
// which Lease's claim (a group, S8) each one waits on; the group puts them
// on the interface (owner.VIP) once its claim allows. Two implementations:
// holder, the single-holder mode (the Services Lease holds every
// externalTrafficPolicy: Cluster VIP, a Local Service's own Lease its
// VIPs), and spread (svc_election: every node a share, through a heartbeat
// Lease of its own). Everything the two modes do differently is here; a new
// source of ownership (BGP: every healthy node, no Lease) is a third.
type strategy interface {
	// servicesLease is the gate and the stand-by of the Services Lease's
	// elector.
	servicesLease() (election.Gate, election.Standby)
	// watch adds the caches the strategy reads (before they start).
	watch()
	// nodesChanged: the Node cache changed.
	nodesChanged()
	// run starts what the strategy runs once the caches are synced; live
	// outlives the controller's context by a planned stop's hand-over.
	run(live context.Context)
	// handOver runs after the last pass, before every VIP is dropped, for
	// at most wait.
	handOver(live context.Context, wait time.Duration)
	// ready and check add to the controller's readiness and health (check
	// on the loop).
	ready() error
	check() error
	// renew asks for the strategy's own Leases to be written now.
	renew()
	// reports: this node posts the Events about bad input in this pass
	// (leading: it holds the Services Lease); on the loop.
	reports(leading bool) bool
	// peeks: every node plans the allocations (Input.Peek), to tell
	// allocating whether there is work.
	peeks() bool
	// allocating: a pass found allocation work to do, or none (only when
	// peeks).
	allocating(work bool)
	// place is, for a pass, which of the plan's addresses this node may
	// hold.
	place(ctx context.Context, reports bool) placement
	// assign is the group that address ip of w joins (on the loop).
	assign(ip netip.Addr, w want) *group
	// reconciled: the pass has started and stopped the VIPs; svcs are the
	// Local Services among them that wait on their own Lease, by key (on
	// the loop).
	reconciled(ctx context.Context, svcs map[string]*corev1.Service)
}

// placement is which of the plan's addresses this node may hold in a pass.
type placement struct {
	here func(netip.Addr) bool
	// named: the placement names one node for each address (this one for
	// those here), which is then the one to say what keeps it off (the
	// NoIPv6 Event).
	named bool
	// locals: a Local Service's addresses wait on its own Lease.
	locals bool
}

// holder is the single-holder mode: whoever holds the Services Lease holds
// every externalTrafficPolicy: Cluster VIP, and a node with a ready
// endpoint of a Local Service competes for that Service's own Lease
// (kube-vip's per-Service Leases), which holds its VIPs.
type holder struct {
	c *Controller
	// exclude keeps this node out of the Services Lease while it carries
	// ExcludeLabel.
	exclude *gate.Gate
	locals  map[string]*group // Local Services' Leases, by Service key
	// localDone: the last election of a Local Service's Lease, which a new
	// one waits for (one elector per Lease at a time).
	localDone map[string]chan struct{}
}

func (c *Controller) newHolder() *holder {
	return &holder{c: c, exclude: gate.New(true, "this Node is labelled "+ExcludeLabel, c.o.Clock),
		locals: map[string]*group{}, localDone: map[string]chan struct{}{}}
}

func (h *holder) servicesLease() (election.Gate, election.Standby) {
	return h.exclude, h.c.o.Standby
}

func (h *holder) watch()                                  {}
func (h *holder) run(context.Context)                     {}
func (h *holder) handOver(context.Context, time.Duration) {}
func (h *holder) ready() error                            { return nil }
func (h *holder) check() error                            { return nil }
func (h *holder) renew()                                  {}
func (h *holder) reports(leading bool) bool               { return leading }
func (h *holder) peeks() bool                             { return false }
func (h *holder) allocating(bool)                         {}
func (h *holder) place(context.Context, bool) placement {
	return placement{here: func(netip.Addr) bool { return true }, locals: true}
}

// nodesChanged closes the Services Lease's gate while this Node carries
// ExcludeLabel, as the Node cache shows it.
func (h *holder) nodesChanged() {
	c := h.c
	if c.nodeLister == nil {
		return
	}
	closed := c.excluded(c.o.NodeName)
	if !h.exclude.Set(!closed, "") {
		return
	}
	if closed {
		c.log.Info("this Node is labelled "+ExcludeLabel+": giving up the Services Lease and its VIPs", "node", c.o.NodeName)
	} else {
		c.log.Info("label "+ExcludeLabel+" removed: competing for the Services Lease again", "node", c.o.NodeName)
	}
}

func (h *holder) assign(_ netip.Addr, w want) *group {
	if w.local == "" {
		return h.c.cluster
	}
	g := h.locals[w.local]
	if g == nil {
		g = h.c.newGroup(w.svc.Namespace + "/" + LocalLeasePrefix + w.svc.Name)
		h.locals[w.local] = g
	}
	return g
}

// reconciled starts the election of a Local Service's Lease while this
// node has a ready endpoint of it, and ends it when it has none, or the
// Service no VIP.
func (h *holder) reconciled(ctx context.Context, svcs map[string]*corev1.Service) {
	c := h.c
	for k, g := range h.locals {
		switch ready := c.localReady(k); {
		case len(g.vips) == 0:
			g.stopElection("the Service has no VIP any more")
			delete(h.locals, k)
		case ready && g.cancel == nil:
			h.startLocal(ctx, k, g, svcs[k])
		case !ready && g.cancel != nil:
			c.log.Info("no ready local endpoint any more: giving up the VIP", "service", k)
			g.stopElection("no ready local endpoint")
		}
	}
}

// stopElection ends a Local Service's election (on the loop): its addresses
// are dropped first, then the election steps down and releases in the
// background.
func (g *group) stopElection(reason string) {
	for _, ov := range g.vips {
		g.c.table().Drop(ov, reason)
	}
	if g.cancel != nil {
		g.cancel()
		g.cancel = nil
	}
}

// startLocal joins the election of a Local Service's Lease: one elector
// for all its addresses, started only after the previous elector of the
// same Lease has released it.
func (h *holder) startLocal(ctx context.Context, k string, g *group, svc *corev1.Service) {
	c := h.c
	el, err := election.New(election.Options{
		Client: c.o.Client, Namespace: svc.Namespace, Name: LocalLeasePrefix + svc.Name, Identity: c.o.NodeName,
		Timing: c.o.Timing,
		Annotations: func() map[string]string {
			return g.write(func() lease.Marks {
				m, _ := g.marks()
				m.VIP = lease.JoinHolds(m.Listed)
				return m
			}).Annotations()
		},
		Guard: g, Clock: c.o.Clock, Logger: c.log,
		Instance: c.o.Instance, OnEdited: c.edited(svc.Namespace, LocalLeasePrefix+svc.Name),
	})
	if err != nil {
		c.log.Error("cannot start the Service's election", "service", k, "err", err)
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	prev, done := h.localDone[k], make(chan struct{})
	g.el, g.cancel = el, cancel
	h.localDone[k] = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		if prev != nil {
			<-prev // the previous election of this Lease has released it
		}
		_ = el.Run(lctx)
		c.lp.do(func() {
			if h.localDone[k] == done {
				delete(h.localDone, k)
			}
		})
	}()
}

// localReady reports whether this node has a ready endpoint of the Service.
func (c *Controller) localReady(svcKey string) bool {
	return slices.Contains(c.endpointNodes(svcKey), c.o.NodeName)
}
