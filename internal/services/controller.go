package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/ipam"
	"github.com/vipd/vipd/internal/owner"
	"github.com/vipd/vipd/internal/vip"
)

// PoolsNamespace and PoolsName locate the address pools.
const (
	PoolsNamespace = ipam.ConfigMapNamespace
	PoolsName      = ipam.ConfigMapName
)

// LocalLeasePrefix names the per-Service Lease of an externalTrafficPolicy:
// Local Service (kube-vip's name for its per-Service Leases).
const LocalLeasePrefix = "kubevip-"

// Options are what the Services controller needs.
type Options struct {
	Client kubernetes.Interface
	// EventClient posts Events (default Client); a client of its own keeps
	// a burst of Events from slowing the writes they describe.
	EventClient kubernetes.Interface
	Kernel      vip.Kernel
	Sender      announce.Sender
	Interface   string
	// HasIPv6 reports whether Interface has a global IPv6 address; IPv6
	// VIPs are not taken without one.
	HasIPv6 func() bool
	// Namespace limits vipd to the Services of one namespace ("" = all).
	Namespace string
	// LeaseNamespace/LeaseName: the Services Lease. Its holder owns every
	// externalTrafficPolicy: Cluster VIP and is the one allocator.
	LeaseNamespace, LeaseName                 string
	NodeName                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	AnnouncePeriod                            time.Duration
	Filter                                    ClassFilter
	// PoolsOnly (svc_pools_only): accept only addresses inside a pool the
	// Service's namespace may use.
	PoolsOnly bool
	// Spread (svc_election): spread mode, every node holds a share of the
	// VIPs through a heartbeat Lease of its own (see spread.go). Settle is
	// how long a node that (re)joins waits before it is given VIPs
	// (default 2 × LeaseDuration).
	Spread bool
	Settle time.Duration
	// Link, if set, reads the Services' interface: its own addresses and
	// gateways are never Service VIPs (S7).
	Link func() (Link, error)
	// Reserved returns the control-plane VIP now (nil or invalid: none); it
	// follows a DNS name that resolves elsewhere.
	Reserved func() netip.Addr
	// Probe, if set, asks the wire whether another host answers for
	// addresses that no vipd node is known to have held, before the first
	// claim (announce.Probe); it returns those answered, with the MAC.
	Probe func(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error)
	// Leader receives the Services Lease's metrics (may be nil).
	Leader   election.Recorder
	Announce func(error)
	// Writers bounds concurrent API writes (default 16).
	Writers int
	Clock   clock.Clock
	Logger  *slog.Logger
}

// Controller runs the VIPs of LoadBalancer Services on this node.
type Controller struct {
	o       Options
	log     *slog.Logger
	poster  *events.Poster
	kick    chan struct{} // plan now
	bulk    chan struct{} // plan soon: an informer event (see pacer)
	elector *election.Elector
	wg      sync.WaitGroup

	svcLister listerscorev1.ServiceLister
	slices    cache.Indexer
	cmLister  listerscorev1.ConfigMapLister
	// nodeLister and apiLister say whose addresses are not for Services
	// (nil when RBAC forbids reading them).
	nodeLister listerscorev1.NodeLister
	apiLister  listersdiscoveryv1.EndpointSliceLister
	synced     []cache.InformerSynced

	linkMu   sync.Mutex
	linkAt   time.Time
	linkLast Link
	ready    chan struct{}

	runCtx context.Context

	excludeGate *excludeGate // single-holder mode: ExcludeLabel keeps this node out
	// sp is spread mode (nil: one Services Lease holder owns every Cluster VIP).
	sp *spread

	mu      sync.Mutex
	cluster *group            // the Services Lease: every Cluster VIP
	locals  map[string]*group // Local Services' Leases, by Service key
	// localDone: the last election of a Local Service's Lease, which a new
	// one waits for (one elector per Lease at a time).
	localDone map[string]chan struct{}
	vips      map[netip.Addr]*held
	pools     *ipam.Pools
	poolsSeen string // the ConfigMap data last parsed
	stopping  bool

	// based maps a Service to the resourceVersions our successful writes
	// replaced: while the cache still shows one of them, it is behind our
	// own write and the Service is left alone (a write would only conflict).
	basedMu sync.Mutex
	based   map[string]map[string]bool
	// unconfirmed: allocations written whose Service the cache still
	// shows without a requested address (key -> addresses).
	unconfirmed map[string][]netip.Addr

	seenMu sync.Mutex
	seen   leaseView
}

// held is one VIP this node may own.
type held struct {
	ov    *owner.VIP
	local string // the Service key for externalTrafficPolicy: Local; "" = Cluster
	g     *group
	// svc is the Service as the last pass saw it (for its status).
	svc *corev1.Service
	// known: a vipd node (this one) has held the address, so it is not
	// probed again; conflict is the MAC that answered the last probe.
	known    bool
	conflict string
}

// New prepares the controller; Run starts it.
func New(o Options) (*Controller, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Writers <= 0 {
		o.Writers = 16
	}
	if o.EventClient == nil {
		o.EventClient = o.Client
	}
	if o.HasIPv6 == nil {
		o.HasIPv6 = func() bool { return true }
	}
	log := o.Logger.With("component", "services")
	c := &Controller{
		o: o, log: log, kick: make(chan struct{}, 1), bulk: make(chan struct{}, 1), vips: map[netip.Addr]*held{}, ready: make(chan struct{}), based: map[string]map[string]bool{}, unconfirmed: map[string][]netip.Addr{},
		locals: map[string]*group{}, localDone: map[string]chan struct{}{}, seen: leaseView{}, runCtx: context.Background(),
		poster: &events.Poster{Client: o.EventClient, Node: o.NodeName, Log: log},
	}
	c.cluster = c.newGroup(o.LeaseNamespace + "/" + o.LeaseName)
	var gate election.Gate
	if !o.Spread {
		// In spread mode the Services Lease only allocates; the heartbeat
		// placement honours the label.
		c.excludeGate = &excludeGate{c: c, changed: make(chan struct{}, 1)}
		gate = c.excludeGate
	}
	el, err := election.New(election.Options{
		Gate:   gate,
		Client: o.Client, Namespace: o.LeaseNamespace, Name: o.LeaseName, Identity: o.NodeName,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Annotations: c.cluster.annotations,
		Guard:       c.cluster, Recorder: o.Leader, Clock: o.Clock, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	c.elector = el
	if o.Spread {
		if c.sp, err = c.newSpread(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Ready reports an error until the caches are filled and the Services
// Lease has been read.
func (c *Controller) Ready() error {
	select {
	case <-c.ready:
	default:
		return errors.New("services: caches not synced yet")
	}
	if c.sp != nil {
		if err := c.sp.el.Ready(); err != nil {
			return err
		}
	}
	return c.elector.Ready()
}

// Check is the health of the Services VIPs: an error when this node leads
// but its fence has passed.
func (c *Controller) Check() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cluster.leading && !c.o.Clock.Now().Before(c.cluster.until) {
		return fmt.Errorf("services: leader of %s/%s but no successful renewal: fence passed", c.o.LeaseNamespace, c.o.LeaseName)
	}
	if c.sp != nil && c.sp.g.leading && !c.o.Clock.Now().Before(c.sp.g.until) {
		return fmt.Errorf("services: heartbeat %s not renewed: fence passed", c.sp.g.lease)
	}
	return nil
}

// Holding counts the Service VIPs on this node's interface.
func (c *Controller) Holding() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, h := range c.vips {
		if h.ov.Holding() {
			n++
		}
	}
	return n
}

func (c *Controller) reserved() netip.Addr {
	if c.o.Reserved == nil {
		return netip.Addr{}
	}
	return c.o.Reserved()
}

// Poke makes the controller plan again soon (the control-plane VIP moved).
func (c *Controller) Poke() { c.poke() }

func (c *Controller) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// nudge asks for a pass after an informer event: the pacer coalesces a
// burst of them (1000 Services converging are thousands of events).
func (c *Controller) nudge() {
	select {
	case c.bulk <- struct{}{}:
	default:
	}
}

// Run watches Services until ctx ends, then steps down in order: stop
// announcing, remove every VIP, release the Leases.
func (c *Controller) Run(ctx context.Context) error {
	c.poster.Async(ctx, 4096)
	c.startInformers(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.sweep()
	c.runCtx = ctx
	close(c.ready)
	if c.sp != nil {
		c.sp.decideReady()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.sp.el.Run(ctx); err != nil {
				c.log.Error("heartbeat election ended", "err", err)
			}
		}()
	}

	c.wg.Add(1)
	var runErr error
	go func() {
		defer c.wg.Done()
		if err := c.elector.Run(ctx); err != nil {
			runErr = fmt.Errorf("services election: %w", err)
		}
	}()
	c.poke()
	schedule(ctx, c.o.Clock, c.kick, c.bulk, func() { c.pass(ctx) })
	c.mu.Lock()
	c.stopping = true
	for ip, h := range c.vips {
		c.stopLocked(ip, h, "shutting down")
	}
	c.mu.Unlock()
	c.wg.Wait()
	return runErr
}

func (c *Controller) startInformers(ctx context.Context) {
	opts := []informers.SharedInformerOption{}
	if c.o.Namespace != "" {
		opts = append(opts, informers.WithNamespace(c.o.Namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(c.o.Client, 0, opts...)
	kick := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.nudge() },
		UpdateFunc: func(any, any) { c.nudge() },
		DeleteFunc: func(any) { c.nudge() },
	}
	si := f.Core().V1().Services()
	_, _ = si.Informer().AddEventHandler(kick)
	c.svcLister = si.Lister()
	ei := f.Discovery().V1().EndpointSlices().Informer()
	_ = ei.AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}})
	_, _ = ei.AddEventHandler(kick)
	c.slices = ei.GetIndexer()
	c.synced = append(c.synced, si.Informer().HasSynced, ei.HasSynced)
	c.startOthers(ctx, kick)
	if c.sp != nil {
		c.sp.start(ctx)
	}

	// The pools ConfigMap: the seed's ClusterRole cannot read ConfigMaps.
	// Then say so once and serve explicit addresses only.
	_, err := c.o.Client.CoreV1().ConfigMaps(PoolsNamespace).Get(ctx, PoolsName, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		c.log.Warn("cannot read ConfigMap "+PoolsNamespace+"/"+PoolsName+" (forbidden by RBAC), so there are no address pools: only Services with annotation "+AnnotationIPs+" or spec.loadBalancerIP get an address. Add {apiGroups: [\"\"], resources: [\"configmaps\"], verbs: [\"get\", \"list\", \"watch\"]} to ClusterRole system:kube-vip-role (vipd manifest rbac has it) and restart vipd", "err", err)
	} else {
		cf := informers.NewSharedInformerFactoryWithOptions(c.o.Client, 0, informers.WithNamespace(PoolsNamespace),
			informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
				lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", PoolsName).String()
			}))
		ci := cf.Core().V1().ConfigMaps()
		_, _ = ci.Informer().AddEventHandler(kick)
		c.cmLister = ci.Lister()
		c.synced = append(c.synced, ci.Informer().HasSynced)
		cf.Start(ctx.Done())
	}
	f.Start(ctx.Done())
}

// sweep removes Service addresses an earlier run left on this host (S4):
// the addresses of the Services vipd serves, and only where they carry
// vipd's mark (vip.Found.Marked). Services of other classes and addresses
// another controller wrote into a status (K3s' ServiceLB writes node
// addresses there) are not vipd's to look at; the mark protects a node's
// own address, a DHCP /32 and anything permanent.
func (c *Controller) sweep() {
	svcs, _ := c.svcLister.List(labels.Everything())
	seen := map[netip.Addr]bool{}
	reserved := c.reserved()
	for _, s := range svcs {
		if ok, _ := c.o.Filter.Ours(s); !ok {
			continue
		}
		ips, _ := Requested(s)
		for _, in := range s.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(in.IP); err == nil {
				ips = append(ips, ip.Unmap())
			}
		}
		for _, ip := range ips {
			if seen[ip] || ip == reserved {
				continue
			}
			seen[ip] = true
			removed, _, err := vip.SweepMarked(c.o.Kernel, ip)
			if err != nil {
				c.log.Warn("cannot remove a leftover Service VIP", "address", ip, "err", err)
			}
			for _, f := range removed {
				c.log.Warn("removed leftover Service VIP before joining the election", "address", f.Prefix, "interface", f.Iface)
			}
		}
	}
}

// readPools returns the pools: nil without a ConfigMap; the last good ones
// when the ConfigMap is malformed (reported once, by the allocator).
func (c *Controller) readPools(ctx context.Context, leading bool) *ipam.Pools {
	if c.cmLister == nil {
		return nil
	}
	cm, err := c.cmLister.ConfigMaps(PoolsNamespace).Get(PoolsName)
	if err != nil {
		c.pools, c.poolsSeen = nil, ""
		return nil
	}
	seen := fmt.Sprint(cm.Data)
	if seen == c.poolsSeen {
		return c.pools
	}
	p, err := ipam.ParsePools(cm.Data)
	if err != nil {
		if leading {
			c.poster.Post(ctx, ref(cm, "ConfigMap"), corev1.EventTypeWarning, "InvalidPools",
				fmt.Sprintf("ConfigMap %s/%s is malformed, keeping the last good pools: %v", PoolsNamespace, PoolsName, err))
			c.poolsSeen = seen
		}
		return c.pools
	}
	c.pools, c.poolsSeen = p, seen
	c.log.Info("address pools loaded", "pools", describe(p))
	return p
}

func describe(p *ipam.Pools) string {
	var s []string
	if p.Global != nil {
		s = append(s, "global: "+p.Global.String())
	}
	for ns, pool := range p.Namespaces {
		s = append(s, ns+": "+pool.String())
	}
	sort.Strings(s)
	return strings.Join(s, "; ")
}

func ref(obj metav1.Object, kind string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()}
}

// want is what should happen to one address.
type want struct {
	local string // Service key when externalTrafficPolicy: Local
	svc   *corev1.Service
}

// pass makes the world match the Services: one plan, then VIPs, then writes.
func (c *Controller) pass(ctx context.Context) {
	all, err := c.svcLister.List(labels.Everything())
	if err != nil {
		c.log.Error("listing Services from the cache", "err", err)
		return
	}
	c.forget(all)
	var ours, stale []*corev1.Service
	for _, s := range all {
		if ok, _ := c.o.Filter.Ours(s); ok {
			ours = append(ours, s)
		} else if s.Annotations[AnnotationHost] != "" || s.Annotations[AnnotationAllocated] != "" {
			stale = append(stale, s)
		}
	}
	c.mu.Lock()
	leading := c.cluster.fenceOK()
	pools := c.readPools(ctx, leading)
	c.mu.Unlock()

	others, subnets := c.others()
	plan := Plan(Input{Services: ours, Pools: pools, PoolsOnly: c.o.PoolsOnly, Reserved: c.reserved(), Others: others, Subnets: subnets, Allocate: leading, Unconfirmed: c.confirm(ours)})
	desired := map[netip.Addr]want{}
	// Asked of the kernel only when some Service has an IPv6 address.
	ipv6 := sync.OnceValue(c.o.HasIPv6)
	var placed map[netip.Addr]*Entry
	if c.sp != nil {
		placed = c.sp.place(ctx, plan, leading)
	}
	for _, e := range plan {
		if e.Problem != nil || len(e.Allocated) > 0 {
			continue
		}
		for _, ip := range e.Addrs {
			if c.sp != nil && placed[ip] == nil {
				continue // spread mode: placed on another node, or on none
			}
			if ip.Is6() && !ipv6() {
				// Said by the node it is placed on (spread mode), else by
				// the allocator or a node with a local endpoint.
				if c.sp != nil || leading || e.Local && c.localReady(e.Key) {
					c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, "NoIPv6",
						fmt.Sprintf("service %s asks for IPv6 address %s, but interface %s on node %s has no global IPv6 address, so vipd does not announce it: give the nodes IPv6 on that interface, or use an IPv4 address", e.Key, ip, c.o.Interface, c.o.NodeName))
				}
				continue
			}
			w := want{svc: e.Svc}
			if e.Local && c.sp == nil {
				w.local = e.Key // its own Lease (spread mode: the heartbeat)
			}
			desired[ip] = w
		}
	}
	c.reconcile(ctx, desired)

	var writes []func()
	if leading {
		writes = append(writes, c.allocatorWrites(ctx, plan, stale)...)
	}
	writes = append(writes, c.ownerWrites(ctx, plan)...)
	c.run(writes)
}

// reconcile starts and stops VIPs to match desired. Each VIP belongs to
// one group (the Services Lease, or its Local Service's Lease), which
// decides when it goes on the interface (see group).
func (c *Controller) reconcile(ctx context.Context, desired map[netip.Addr]want) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping {
		return
	}
	for ip, h := range c.vips {
		if w, ok := desired[ip]; !ok || w.local != h.local {
			c.stopLocked(ip, h, "no longer a VIP of a Service vipd serves")
		}
	}
	svcs := map[string]*corev1.Service{}
	for ip, w := range desired {
		if w.local != "" {
			svcs[w.local] = w.svc
		}
		if h := c.vips[ip]; h != nil {
			h.svc = w.svc
			continue
		}
		g := c.cluster
		if c.sp != nil {
			g = c.sp.g
		}
		if w.local != "" {
			if g = c.locals[w.local]; g == nil {
				g = c.newGroup(w.svc.Namespace + "/" + LocalLeasePrefix + w.svc.Name)
				c.locals[w.local] = g
			}
		}
		h := c.newHeld(ip, w.local)
		h.g, h.svc = g, w.svc
		c.vips[ip] = h
		g.add(ip, h.ov)
	}
	for k, g := range c.locals {
		switch ready := c.localReady(k); {
		case len(g.vips) == 0:
			g.stopElection("the Service has no VIP any more")
			delete(c.locals, k)
		case ready && g.cancel == nil:
			c.startLocal(ctx, k, g, svcs[k])
		case !ready && g.cancel != nil:
			c.log.Info("no ready local endpoint any more: giving up the VIP", "service", k)
			g.stopElection("no ready local endpoint")
		}
	}
}

func (c *Controller) newHeld(ip netip.Addr, local string) *held {
	log := c.log.With("service", local)
	if local == "" {
		log = c.log
	}
	ann := announce.New(c.o.Sender, announce.Options{Period: c.o.AnnouncePeriod}, c.o.Clock, log.With("component", "announce"), c.o.Announce)
	addr := vip.NewAddress(c.o.Kernel, c.o.Interface, netip.PrefixFrom(ip, ip.BitLen()), c.o.Clock.Now)
	return &held{ov: owner.New(addr, ann, nopPresent{}, c.o.Clock, log), local: local}
}

type nopPresent struct{}

func (nopPresent) SetPresent(bool) {}

// stopLocked takes a VIP off this node (S3) and out of its group; the
// group's next write no longer lists it.
func (c *Controller) stopLocked(ip netip.Addr, h *held, reason string) {
	h.ov.Drop(reason)
	h.g.remove(ip)
	delete(c.vips, ip)
}

// stopElection ends a Local Service's election (c.mu held): its addresses
// are dropped first, then the election steps down and releases in the
// background.
func (g *group) stopElection(reason string) {
	for _, ov := range g.vips {
		ov.Drop(reason)
	}
	if g.cancel != nil {
		g.cancel()
		g.cancel = nil
	}
}

// startLocal joins the election of a Local Service's Lease: one elector
// for all its addresses, started only after the previous elector of the
// same Lease has released it.
func (c *Controller) startLocal(ctx context.Context, k string, g *group, svc *corev1.Service) {
	el, err := election.New(election.Options{
		Client: c.o.Client, Namespace: svc.Namespace, Name: LocalLeasePrefix + svc.Name, Identity: c.o.NodeName,
		LeaseDuration: c.o.LeaseDuration, RenewDeadline: c.o.RenewDeadline, RetryPeriod: c.o.RetryPeriod,
		Annotations: func() map[string]string {
			a := g.annotations()
			a[election.VIPAnnotation] = a[HoldsAnnotation]
			return a
		},
		Guard: g, Clock: c.o.Clock, Logger: c.log,
	})
	if err != nil {
		c.log.Error("cannot start the Service's election", "service", k, "err", err)
		return
	}
	lctx, cancel := context.WithCancel(ctx)
	prev, done := c.localDone[k], make(chan struct{})
	g.el, g.cancel = el, cancel
	c.localDone[k] = done
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(done)
		if prev != nil {
			<-prev // the previous election of this Lease has released it
		}
		_ = el.Run(lctx)
		c.mu.Lock()
		if c.localDone[k] == done {
			delete(c.localDone, k)
		}
		c.mu.Unlock()
	}()
}

// localReady reports whether this node has a ready endpoint of the Service.
func (c *Controller) localReady(svcKey string) bool {
	return slices.Contains(c.endpointNodes(svcKey), c.o.NodeName)
}

// allocatorWrites are the allocator's writes: addresses taken from pools,
// Events for bad input, and clean-up of Services that are no longer vipd's.
func (c *Controller) allocatorWrites(ctx context.Context, plan []*Entry, stale []*corev1.Service) []func() {
	var w []func()
	for _, e := range plan {
		e := e
		if c.behind(e.Svc) {
			continue
		}
		if e.Warning != nil {
			c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, e.Warning.Reason, e.Warning.Message)
		}
		switch {
		case e.Problem != nil:
			c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, e.Problem.Reason, e.Problem.Message)
			if len(e.Svc.Status.LoadBalancer.Ingress) > 0 || e.Svc.Annotations[AnnotationHost] != "" {
				w = append(w, func() { c.clear(ctx, e.Svc, false) })
			}
		case len(e.Allocated) > 0:
			w = append(w, func() { c.writeAllocation(ctx, e) })
		}
	}
	for _, s := range stale {
		s := s
		if !c.behind(s) {
			w = append(w, func() { c.clear(ctx, s, true) })
		}
	}
	return w
}

// writeAllocation records a pool address on the Service (optimistic
// concurrency: the update carries the resourceVersion the plan was made from).
func (c *Controller) writeAllocation(ctx context.Context, e *Entry) {
	s := e.Svc.DeepCopy()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	var ips []string
	for _, ip := range e.Allocated {
		ips = append(ips, ip.String())
	}
	s.Annotations[AnnotationIPs] = strings.Join(ips, ",")
	s.Annotations[AnnotationAllocated] = e.Pool
	if !e.Local {
		// The allocator holds the Services Lease, so it owns the VIP next:
		// one write instead of two. The status waits for the announcement.
		s.Annotations[AnnotationHost] = c.o.NodeName
	}
	if _, err := c.o.Client.CoreV1().Services(s.Namespace).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		c.retry("writing the allocated address", e.Key, err)
		return
	}
	c.wrote(e.Key, e.Svc.ResourceVersion)
	c.basedMu.Lock()
	c.unconfirmed[e.Key] = e.Allocated
	c.basedMu.Unlock()
	c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Allocated",
		fmt.Sprintf("service %s: allocated %s from pool %s", e.Key, strings.Join(ips, ","), e.Pool))
}

// clear removes what vipd wrote on a Service that has no VIP: the status,
// the owner annotation and, when released (not vipd's any more), an
// allocation vipd made, which returns the address to the pool.
func (c *Controller) clear(ctx context.Context, svc *corev1.Service, release bool) {
	s := svc.DeepCopy()
	changed := false
	if _, ok := s.Annotations[AnnotationHost]; ok {
		delete(s.Annotations, AnnotationHost)
		changed = true
	}
	if release && s.Annotations[AnnotationAllocated] != "" {
		delete(s.Annotations, AnnotationAllocated)
		delete(s.Annotations, AnnotationIPs)
		changed = true
	}
	var err error
	if changed {
		s, err = c.o.Client.CoreV1().Services(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			c.retry("clearing the owner annotation", key(svc), err)
			return
		}
		c.wrote(key(svc), svc.ResourceVersion)
	}
	// A Service that is no longer vipd's (another class, or
	// kube-vip.io/ignore) keeps a status that vipd did not write: only one
	// that matches the owner annotation vipd wrote and its addresses goes.
	if len(s.Status.LoadBalancer.Ingress) > 0 && (!release || vipdStatus(svc)) {
		s.Status.LoadBalancer.Ingress = nil
		if _, err := c.o.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
			c.retry("clearing the status", key(svc), err)
			return
		}
		c.wrote(key(svc), s.ResourceVersion)
	}
	c.log.Info("cleared the Service's VIP status", "service", key(svc))
}

// ownerWrites are this node's writes for the Services whose every VIP it
// holds now: the owner annotation, then status.loadBalancer.ingress.
func (c *Controller) ownerWrites(ctx context.Context, plan []*Entry) []func() {
	var w []func()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range plan {
		if e.Problem != nil || len(e.Allocated) > 0 || len(e.Addrs) == 0 || c.behind(e.Svc) {
			continue
		}
		all := true
		for _, ip := range e.Addrs {
			if h := c.vips[ip]; h == nil || !h.ov.Holding() {
				all = false
				break
			}
		}
		if !all || (e.Svc.Annotations[AnnotationHost] == c.o.NodeName && sameIngress(e.Svc, e.Addrs)) {
			continue
		}
		e := e
		w = append(w, func() { c.writeOwner(ctx, e) })
	}
	return w
}

// vipdStatus reports whether the status is the one vipd wrote: vipd's owner
// annotation is set and the status lists exactly the requested addresses.
func vipdStatus(s *corev1.Service) bool {
	req, err := Requested(s)
	return err == nil && len(req) > 0 && s.Annotations[AnnotationHost] != "" && sameIngress(s, req)
}

func sameIngress(s *corev1.Service, ips []netip.Addr) bool {
	in := s.Status.LoadBalancer.Ingress
	if len(in) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if in[i].IP != ip.String() || in[i].Hostname != "" {
			return false
		}
	}
	return true
}

func (c *Controller) writeOwner(ctx context.Context, e *Entry) {
	s := e.Svc.DeepCopy()
	prev, wasUp := s.Annotations[AnnotationHost], len(s.Status.LoadBalancer.Ingress) > 0
	var err error
	if prev != c.o.NodeName {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationHost] = c.o.NodeName
		rv := s.ResourceVersion
		s, err = c.o.Client.CoreV1().Services(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		if err != nil {
			c.retry("writing the owner annotation", e.Key, err)
			return
		}
		c.wrote(e.Key, rv)
	}
	if !sameIngress(s, e.Addrs) {
		s.Status.LoadBalancer.Ingress = nil
		for _, ip := range e.Addrs {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String()})
		}
		if _, err := c.o.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
			c.retry("writing status.loadBalancer.ingress", e.Key, err)
			return
		}
		c.wrote(e.Key, s.ResourceVersion)
	}
	ips := joinAddrs(e.Addrs)
	switch {
	case prev == "" || prev == c.o.NodeName && !wasUp:
		c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Announced", fmt.Sprintf("%s announced by node %s", ips, c.o.NodeName))
	case prev != c.o.NodeName:
		c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Moved", fmt.Sprintf("%s moved from node %s to node %s", ips, prev, c.o.NodeName))
	}
}

func joinAddrs(ips []netip.Addr) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

// retry logs a failed write and makes another pass soon; a conflict only
// means the cache was behind, and the next pass sees the newer object.
func (c *Controller) retry(what, svc string, err error) {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		c.log.Debug(what+": object changed meanwhile, trying again", "service", svc, "err", err)
	} else {
		c.log.Warn(what+" failed, trying again", "service", svc, "err", err)
	}
	go func() {
		<-c.o.Clock.After(time.Second)
		c.poke()
	}()
}

// forget drops what is remembered about Services that no longer exist.
func (c *Controller) forget(all []*corev1.Service) {
	keys, uids := make(map[string]bool, len(all)), make(map[string]bool, len(all))
	for _, s := range all {
		keys[key(s)], uids[string(s.UID)] = true, true
	}
	c.basedMu.Lock()
	for k := range c.based {
		if !keys[k] {
			delete(c.based, k)
		}
	}
	c.basedMu.Unlock()
	if c.cmLister != nil {
		if cm, err := c.cmLister.ConfigMaps(PoolsNamespace).Get(PoolsName); err == nil {
			uids[string(cm.UID)] = true
		}
	}
	c.poster.Retain(func(uid string) bool { return uids[uid] })
}

// confirm forgets the allocations that the cache now shows (the Service
// has a request of its own, or is gone) and returns the others.
func (c *Controller) confirm(svcs []*corev1.Service) map[string][]netip.Addr {
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if len(c.unconfirmed) == 0 {
		return nil
	}
	pending := map[string]bool{}
	for _, s := range svcs {
		if req, err := Requested(s); err == nil && len(req) == 0 {
			pending[key(s)] = true
		}
	}
	out := map[string][]netip.Addr{}
	for k, ips := range c.unconfirmed {
		if !pending[k] {
			delete(c.unconfirmed, k)
			continue
		}
		out[k] = ips
	}
	return out
}

// wrote records that a successful write replaced version rv of Service k.
func (c *Controller) wrote(k, rv string) {
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if c.based[k] == nil {
		c.based[k] = map[string]bool{}
	}
	c.based[k][rv] = true
}

// behind reports whether the cache still shows a version of svc that a
// write of ours already replaced.
func (c *Controller) behind(svc *corev1.Service) bool {
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if c.based[key(svc)][svc.ResourceVersion] {
		return true
	}
	delete(c.based, key(svc))
	return false
}

// run does the writes, a few at a time.
func (c *Controller) run(writes []func()) {
	sem := make(chan struct{}, c.o.Writers)
	var wg sync.WaitGroup
	for _, w := range writes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w()
		}()
	}
	wg.Wait()
}
