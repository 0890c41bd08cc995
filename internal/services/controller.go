package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/datapath"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/ipam"
	"github.com/vipd/vipd/internal/kubeapi"
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
	// Namespace limits vipd to the Services of one namespace ("" = all).
	Namespace string
	// LeaseNamespace/LeaseName: the Services Lease. Its holder owns every
	// externalTrafficPolicy: Cluster VIP and is the one allocator.
	LeaseNamespace, LeaseName string
	NodeName                  string
	election.Timing
	Filter ClassFilter
	// PoolsOnly (svc_pools_only): accept only addresses inside a pool the
	// Service's namespace may use.
	PoolsOnly bool
	// Mode is who holds which VIP: one holder, or spread over the nodes.
	Mode
	// Reserved returns the control-plane VIP now (nil or invalid: none); it
	// follows a DNS name that resolves elsewhere.
	Reserved func() netip.Addr
	// Datapath is how a held address reaches the wire.
	Datapath Datapath
	// Leader receives the Services Lease's metrics (may be nil).
	Leader election.Recorder
	// Instance is this process's token (election.Options.Instance), shared
	// with its other electors; empty: a new one.
	Instance string
	// API collects what the caches wait for (the API server, RBAC), for
	// Ready and the log; shared by the process's components (default: one
	// of its own).
	API *kubeapi.Tracker
	// Writers bounds concurrent API writes (default 16).
	Writers int
	// Writer makes the Service writes (default: ClientWriter over Client).
	Writer Writer
	Clock  clock.Clock
	Logger *slog.Logger
}

// Mode is the ownership strategy of the Service VIPs.
type Mode struct {
	// Spread (svc_election): spread mode, every node holds a share of the
	// VIPs through a heartbeat Lease of its own (see spread.go). Settle is
	// how long a node that (re)joins waits before it is given VIPs
	// (default 2 × LeaseDuration).
	Spread bool
	Settle time.Duration
	// Standby, if set, hands the Services Lease (single-holder mode) to
	// another node while this Node is cordoned (see election.Options).
	Standby election.Standby
}

// Datapath is the layer-2 datapath: a held address on Interface with a
// kernel lifetime, announced by gratuitous ARP or unsolicited NA, probed
// before a first claim and watched for other hosts answering for it.
type Datapath struct {
	Kernel    vip.Kernel
	Sender    announce.Sender
	Interface string
	// AnnouncePeriod is how often a held address is announced; Announce,
	// if set, is told each announcement's outcome (metrics).
	AnnouncePeriod time.Duration
	Announce       func(error)
	// HasIPv6 reports whether Interface has a global IPv6 address; IPv6
	// VIPs are not taken without one.
	HasIPv6 func() bool
	// Link, if set, reads the Services' interface: its own addresses and
	// gateways are never Service VIPs (S7).
	Link func() (Link, error)
	// Probe, if set, asks the wire whether another host answers for
	// addresses that no vipd node is known to have held, before the first
	// claim (announce.Probe); it returns those answered, with the MAC.
	Probe func(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error)
	// WatchEvery, if positive (and Probe set), probes the addresses this
	// node holds in rounds this far apart, a batch each (package
	// conflict): another host answering for one is reported on its
	// Service (Event AddressConflict), in the log, on this node's Leases
	// (conflict.Annotation) and to OnConflict.
	WatchEvery time.Duration
	// Listen, if set, hears claims other hosts make on the wire by
	// themselves between probes (announce.Listen).
	Listen     func(ctx context.Context, seen func(netip.Addr, net.HardwareAddr)) error
	OnConflict func(netip.Addr)
	// MAC is the interface's hardware address, published on this node's
	// Leases (conflict.MACAnnotation).
	MAC string
}

// Controller runs the VIPs of LoadBalancer Services on this node.
type Controller struct {
	o       Options
	log     *slog.Logger
	poster  *events.Poster
	asap    chan struct{} // plan now (planNow)
	soon    chan struct{} // plan soon: an informer event (planSoon, see pacer)
	elector *election.Elector
	wg      sync.WaitGroup
	monitor *conflict.Monitor // nil without WatchEvery

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

	passTurn int           // where the next pass with too many writes starts (pass only)
	memo     planMemo      // the last plan
	failed   atomic.Uint64 // writes that failed (retry)
	retrying atomic.Bool   // a pass is due a second after a failed write
	// st is the ownership strategy: the single-holder mode (holder) or
	// spread mode (spread).
	st strategy
	// dp is what the groups decided for each address, applied by its own
	// goroutine (the kernel address and its announcements), off the loop.
	dp datapath.Table
	// tb and out, if set, take the place of dp and of the goroutines and
	// timers the loop's handlers start (the permutation tests).
	tb  table
	out outside
	// lag: how far the datapath lags the decisions (applied).
	lag lagging

	// lp owns what follows, up to based: every read and change of it runs
	// on the loop (loop.go).
	lp loop
	// cluster is the Services Lease: every Cluster VIP in the
	// single-holder mode; in spread mode it only allocates.
	cluster  *group
	vips     map[netip.Addr]*serviceVIP
	stopping bool
	seen     leaseView // the claim check's view of the Leases

	// The pools last parsed, and the ConfigMap data they came from (the
	// pass's only).
	pools     *ipam.Pools
	poolsSeen string

	// based maps a Service to the resourceVersions our successful writes
	// replaced: while the cache still shows one of them, it is behind our
	// own write and the Service is left alone (a write would only conflict).
	basedMu sync.Mutex
	based   map[string]map[string]bool
	// unconfirmed: allocations written whose Service the cache still
	// shows without a requested address (key -> addresses).
	unconfirmed map[string][]netip.Addr

	// sources are the caches' lists and watches (for Ready).
	sourcesMu sync.Mutex
	sources   []*kubeapi.Source
	informers []*kubeapi.Informer
}

// serviceVIP is a Service VIP this node may own (it holds it only once its group's claim says so).
type serviceVIP struct {
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
	if o.Writer == nil {
		o.Writer = ClientWriter{Client: o.Client}
	}
	if o.Writers <= 0 {
		o.Writers = 16
	}
	if o.EventClient == nil {
		o.EventClient = o.Client
	}
	if o.Datapath.HasIPv6 == nil {
		o.Datapath.HasIPv6 = func() bool { return true }
	}
	if o.Instance == "" {
		o.Instance = election.NewInstance()
	}
	if o.API == nil {
		o.API = kubeapi.NewTracker("the API server", o.Logger, nil)
	}
	log := o.Logger.With("component", "services")
	c := &Controller{
		o: o, log: log, asap: make(chan struct{}, 1), soon: make(chan struct{}, 1), vips: map[netip.Addr]*serviceVIP{}, ready: make(chan struct{}), based: map[string]map[string]bool{}, unconfirmed: map[string][]netip.Addr{},
		seen: leaseView{}, runCtx: context.Background(),
		poster: &events.Poster{Client: o.EventClient, Node: o.NodeName, Log: log},
	}
	c.dp.OnHeld = c.planNow // their Services' status is due
	c.dp.Now, c.dp.Applied = o.Clock.Now, c.applied
	c.cluster = c.newGroup(o.LeaseNamespace + "/" + o.LeaseName)
	if o.Spread {
		sp, err := c.newSpread()
		if err != nil {
			return nil, err
		}
		c.st = sp
	} else {
		c.st = c.newHolder()
	}
	elGate, standby := c.st.servicesLease()
	el, err := election.New(election.Options{
		Gate: elGate, Standby: standby,
		Client: o.Client, Namespace: o.LeaseNamespace, Name: o.LeaseName, Identity: o.NodeName,
		Timing:      o.Timing,
		Annotations: c.cluster.annotations,
		Guard:       c.cluster, Recorder: o.Leader, Clock: o.Clock, Logger: log,
		Instance: o.Instance, OnEdited: c.edited(o.LeaseNamespace, o.LeaseName),
	})
	if err != nil {
		return nil, err
	}
	c.elector = el
	if dp := o.Datapath; dp.WatchEvery > 0 && dp.Probe != nil {
		c.monitor = conflict.New(conflict.Options{
			Probe: dp.Probe, Listen: dp.Listen, Held: c.heldAddrs, Every: dp.WatchEvery,
			Report: c.wireConflict, Resolve: c.wireResolved, Clock: o.Clock, Logger: log,
		})
	}
	return c, nil
}

// Ready reports an error until the caches are filled and the Services
// Lease has been read.
func (c *Controller) Ready() error {
	c.sourcesMu.Lock()
	sources := slices.Clone(c.sources)
	c.sourcesMu.Unlock()
	waiting := c.o.API.Waiting(sources...)
	select {
	case <-c.ready:
		if waiting != nil {
			return fmt.Errorf("services: %w", waiting)
		}
	default:
		if waiting != nil {
			return fmt.Errorf("services: caches not synced: %w", waiting)
		}
		return errors.New("services: caches not synced yet")
	}
	if err := c.st.ready(); err != nil {
		return err
	}
	return c.elector.Ready()
}

// Check is the health of the Services VIPs: an error when this node leads
// but its fence has passed.
func (c *Controller) Check() (err error) {
	c.lp.do(func() {
		if c.cluster.k.leading && !c.cluster.fenceOK() {
			err = fmt.Errorf("services: leader of %s/%s but no successful renewal: fence passed", c.o.LeaseNamespace, c.o.LeaseName)
			return
		}
		err = c.st.check()
	})
	return err
}

// Holding counts the Service VIPs on this node's interface.
func (c *Controller) Holding() (n int) {
	c.lp.do(func() {
		for _, h := range c.vips {
			if h.ov.Holding() {
				n++
			}
		}
	})
	return n
}

func (c *Controller) reserved() netip.Addr {
	if c.o.Reserved == nil {
		return netip.Addr{}
	}
	return c.o.Reserved()
}

// Replan makes the controller plan again soon (the control-plane VIP moved).
func (c *Controller) Replan() { c.planNow() }

func (c *Controller) planNow() {
	select {
	case c.asap <- struct{}{}:
	default:
	}
}

// planSoon asks for a pass after an informer event: the pacer coalesces a
// burst of them (1000 Services converging are thousands of events).
func (c *Controller) planSoon() {
	select {
	case c.soon <- struct{}{}:
	default:
	}
}

// Run watches Services until ctx ends, then steps down in order: stop
// announcing, remove every VIP, release the Leases.
func (c *Controller) Run(ctx context.Context) error {
	c.poster.Async(ctx, 4096)
	// The informers and the heartbeat outlive ctx by the hand-over of a
	// planned stop (spread mode): the other nodes' heartbeats are watched,
	// and this node's renewed, until its VIPs are handed over.
	live, stopLive := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLive()
	c.startInformers(live)
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return ctx.Err()
	}
	c.sweep()
	c.runCtx = ctx
	// The datapath outlives ctx: the electors' last drops and every VIP's
	// removal at the end go through it.
	dpCtx, stopDP := context.WithCancel(context.WithoutCancel(ctx))
	dpDone := make(chan struct{})
	go func() { defer close(dpDone); c.dp.Run(dpCtx) }()
	defer func() { stopDP(); <-dpDone }()
	close(c.ready)
	c.st.run(live)

	if c.monitor != nil {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.monitor.Run(ctx)
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
	c.planNow()
	schedule(ctx, c.o.Clock, c.asap, c.soon, func() { c.pass(ctx) })
	c.st.handOver(live, handOverWait)
	var dropped uint64
	c.lp.do(func() { dropped = c.halt() })
	c.table().Wait(dropped)
	stopLive()
	c.wg.Wait()
	return runErr
}

// halt takes every VIP off this node at the end (on the loop): no claim
// after it. The Leases are released once the drops it returns are done.
func (c *Controller) halt() (dropped uint64) {
	c.stopping = true
	for ip, h := range c.vips {
		c.stop(ip, h, "shutting down")
	}
	return c.table().Barrier()
}

func (c *Controller) startInformers(ctx context.Context) {
	// Every input of the plan but the Leases (memo.gen).
	changed := func() { c.memo.gen.Add(1); c.planSoon() }
	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { changed() },
		UpdateFunc: func(any, any) { changed() },
		DeleteFunc: func(any) { changed() },
	}
	client, ns := c.o.Client, c.o.Namespace
	forbidden := "services: the ClusterRole does not allow %s, which svc_enable needs: generate the RBAC with the same flags as the DaemonSet (vipd manifest rbac --svc-enable ...), or add those rules to ClusterRole system:kube-vip-role"
	svcs := kubeapi.New("Services", client.CoreV1().Services(ns).List, client.CoreV1().Services(ns).Watch, nil)
	svcs.Required, svcs.Forbidden = true, fmt.Sprintf(forbidden, "services (list, watch, update) and services/status (update)")
	si := c.inform(svcs, &corev1.Service{}, nil, onChange)
	c.svcLister = listerscorev1.NewServiceLister(si.GetIndexer())
	slices := kubeapi.New("EndpointSlices", client.DiscoveryV1().EndpointSlices(ns).List, client.DiscoveryV1().EndpointSlices(ns).Watch, nil)
	slices.Required, slices.Forbidden = true, fmt.Sprintf(forbidden, "endpointslices.discovery.k8s.io (list, watch)")
	ei := c.inform(slices, &discoveryv1.EndpointSlice{}, cache.Indexers{"service": func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[discoveryv1.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}}, onChange)
	c.slices = ei.GetIndexer()
	c.st.watch()
	c.startOthers(onChange)

	// The pools ConfigMap: the seed's ClusterRole cannot read ConfigMaps;
	// then there are no pools until it can.
	cms := client.CoreV1().ConfigMaps(PoolsNamespace)
	pools := kubeapi.New("ConfigMap "+PoolsNamespace+"/"+PoolsName, cms.List, cms.Watch, func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", PoolsName).String()
	})
	pools.Forbidden = "cannot read ConfigMap " + PoolsNamespace + "/" + PoolsName + " (forbidden by RBAC), so there are no address pools: only Services with annotation " + AnnotationIPs + " or spec.loadBalancerIP get an address. Add {apiGroups: [\"\"], resources: [\"configmaps\"], verbs: [\"get\", \"list\", \"watch\"]} to ClusterRole system:kube-vip-role (vipd manifest rbac has it)"
	ci := c.inform(pools, &corev1.ConfigMap{}, nil, onChange)
	c.cmLister = listerscorev1.NewConfigMapLister(ci.GetIndexer())
	for _, inf := range c.informers {
		go inf.RunWithContext(ctx)
	}
}

// inform makes an informer over src; startInformers starts them all once
// every lister is set, and Run waits for them to sync (an optional source
// that RBAC forbids is synced and empty).
func (c *Controller) inform(src *kubeapi.Source, obj runtime.Object, indexers cache.Indexers, handlers ...cache.ResourceEventHandler) *kubeapi.Informer {
	inf := c.o.API.Informer(src, obj, indexers)
	for _, h := range handlers {
		inf.AddEventHandler(h)
	}
	c.synced = append(c.synced, inf.HasSynced)
	c.sourcesMu.Lock()
	c.sources = append(c.sources, src)
	c.sourcesMu.Unlock()
	c.informers = append(c.informers, inf)
	return inf
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
			removed, _, err := vip.SweepMarked(c.o.Datapath.Kernel, ip)
			if err != nil {
				c.log.Warn("cannot remove a leftover Service VIP", "address", ip, "err", err)
			}
			for _, f := range removed {
				c.log.Warn("removed leftover Service VIP before joining the election", "address", f.Prefix, "interface", f.Iface)
			}
		}
	}
}

func ref(obj metav1.Object, kind string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion()}
}

// edited returns the election.Options.OnEdited of Lease namespace/name:
// a Warning Event on the Lease that names what someone else changed.
func (c *Controller) edited(namespace, name string) func(string, bool) {
	return func(what string, held bool) {
		msg := fmt.Sprintf("Lease %s/%s was changed by someone other than its holder: %s. ", namespace, name, what)
		if held {
			msg += fmt.Sprintf("Node %s held it: it removed its addresses and takes the Lease back; ", c.o.NodeName)
		} else {
			msg += "The other nodes count its last holder for a lease duration from now; "
		}
		msg += "only vipd may write vipd's Leases: see vipd doctor for who else may (kubectl edit, scripts, GitOps tools re-applying them)"
		go c.poster.Post(c.runCtx, corev1.ObjectReference{APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: namespace, Name: name},
			corev1.EventTypeWarning, "LeaseEdited", msg)
	}
}

// want is what should happen to one address.
type want struct {
	local string // Service key when externalTrafficPolicy: Local
	svc   *corev1.Service
}

// pass makes the world match the Services: one plan, then VIPs, then writes.
func (c *Controller) pass(ctx context.Context) {
	start := c.o.Clock.Now()
	defer func() { c.log.Debug("pass", "took", c.o.Clock.Since(start)) }()
	gen := c.memo.gen.Load() // before listing: see planMemo
	all, err := c.svcLister.List(labels.Everything())
	if err != nil {
		c.log.Error("listing Services from the cache", "err", err)
		return
	}
	c.forget(all)
	ours, stale := c.sortServices(all)
	// reports: this node tells users about bad input (Events). The
	// allocator in the single-holder mode; in spread mode, where the
	// allocator exists only while there is something to allocate, one
	// node that every node's view agrees on (spread.reports).
	var leading, reports bool
	c.lp.do(func() {
		leading = c.cluster.fenceOK()
		reports = c.st.reports(leading)
	})
	pools := c.readPools(ctx, reports)

	others, subnets := c.others()
	// In spread mode every node peeks at the allocations, so that it knows
	// whether there is work for the allocator (allocGate); only the
	// holder of the Services Lease plans and writes them all.
	plan := c.memo.get(gen, Input{Services: ours, Pools: pools, PoolsOnly: c.o.PoolsOnly, Reserved: c.reserved(), Others: others, Subnets: subnets, Allocate: leading, Peek: c.st.peeks(), Unconfirmed: c.confirm(ours)})
	c.reconcile(ctx, c.desired(ctx, plan, c.st.place(ctx, reports), reports))

	if reports {
		c.report(ctx, plan)
	}
	var writes []func()
	if peeks := c.st.peeks(); leading || peeks {
		// (Not run unless leading: in spread mode they only tell the
		// allocator's gate whether there is work.)
		alloc := c.allocatorWrites(ctx, plan, stale)
		if peeks {
			c.st.allocating(len(alloc) > 0)
		}
		if leading {
			writes = append(writes, alloc...)
		}
	}
	c.runBounded(append(writes, c.ownerWrites(ctx, plan)...))
}

// sortServices splits the Services into vipd's and those it served before
// (a write of vipd's is still on them).
func (c *Controller) sortServices(all []*corev1.Service) (ours, stale []*corev1.Service) {
	for _, s := range all {
		if ok, _ := c.o.Filter.Ours(s); ok {
			ours = append(ours, s)
		} else if s.Annotations[AnnotationHost] != "" || s.Annotations[AnnotationAllocated] != "" {
			stale = append(stale, s)
		}
	}
	return ours, stale
}

// desired are the addresses of the plan this node may hold: those the
// placement puts here, and IPv6 ones only with IPv6 on the interface.
func (c *Controller) desired(ctx context.Context, plan []*Entry, p placement, reports bool) map[netip.Addr]want {
	desired := map[netip.Addr]want{}
	// Asked of the kernel only when some Service has an IPv6 address.
	ipv6 := sync.OnceValue(c.o.Datapath.HasIPv6)
	for _, e := range plan {
		if e.Problem != nil || len(e.Allocated) > 0 {
			continue
		}
		for _, ip := range e.Addrs {
			if !p.here(ip) {
				continue // spread mode: placed on another node, or on none
			}
			if ip.Is6() && !ipv6() {
				// Said by the node it is placed on (spread mode), else by
				// the allocator or a node with a local endpoint.
				if p.named || reports || e.Local && c.localReady(e.Key) {
					c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, "NoIPv6",
						fmt.Sprintf("service %s asks for IPv6 address %s, but interface %s on node %s has no global IPv6 address, so vipd does not announce it: give the nodes IPv6 on that interface, or use an IPv4 address", e.Key, ip, c.o.Datapath.Interface, c.o.NodeName))
				}
				continue
			}
			w := want{svc: e.Svc}
			if e.Local && p.locals {
				w.local = e.Key // its own Lease (spread mode: the heartbeat)
			}
			desired[ip] = w
		}
	}
	return desired
}

// runBounded runs a pass's writes, at most passWrites × Options.Writers.
func (c *Controller) runBounded(writes []func()) {
	if n := passWrites * c.o.Writers; len(writes) > n {
		// The rest in the next pass, at once: a pass waits for its writes,
		// and one that did them all kept the node from placing and
		// claiming until they were done (in spread mode at 10 nodes, the
		// allocator of 1000 Services spent 21 s in one pass, and the VIPs
		// the other nodes placed on it were on no node until it ended).
		// Each pass starts where the last one stopped, so that writes
		// that keep failing (a webhook that rejects them) never hold up
		// the others; and after a pass in which a write failed, the next
		// comes a second later (retry), not at once: it would only spin.
		start := c.passTurn % len(writes)
		c.passTurn += n
		writes = slices.Concat(writes[start:], writes[:start])[:n]
		failed := c.failed.Load()
		defer func() {
			if c.failed.Load() == failed {
				c.planNow()
			}
		}()
	}
	c.run(writes)
}

// passWrites × Options.Writers bounds the Services one pass writes (each
// one write, or two: owner and status).
const passWrites = 4

// reconcile starts and stops VIPs to match desired. Each VIP belongs to
// one group (the Services Lease, or its Local Service's Lease), which
// decides when it goes on the interface (see group).
func (c *Controller) reconcile(ctx context.Context, desired map[netip.Addr]want) {
	c.lp.do(func() { c.reconciled(ctx, desired) })
}

// reconciled is reconcile on the loop.
func (c *Controller) reconciled(ctx context.Context, desired map[netip.Addr]want) {
	if c.stopping {
		return
	}
	for ip, h := range c.vips {
		if w, ok := desired[ip]; !ok || w.local != h.local {
			c.stop(ip, h, "no longer a VIP of a Service vipd serves")
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
		g := c.st.assign(ip, w)
		h := c.newServiceVIP(ip, w.local)
		h.g, h.svc = g, w.svc
		c.vips[ip] = h
		g.add(ip, h.ov)
	}
	c.st.reconciled(ctx, svcs)
}

func (c *Controller) newServiceVIP(ip netip.Addr, local string) *serviceVIP {
	log := c.log.With("service", local)
	if local == "" {
		log = c.log
	}
	ann := announce.New(c.o.Datapath.Sender, announce.Options{Period: c.o.Datapath.AnnouncePeriod}, c.o.Clock, log.With("component", "announce"), c.o.Datapath.Announce)
	addr := vip.NewAddress(c.o.Datapath.Kernel, c.o.Datapath.Interface, netip.PrefixFrom(ip, ip.BitLen()), c.o.Clock.Now)
	return &serviceVIP{ov: owner.New(addr, ann, nopPresent{}, c.o.Clock, log), local: local}
}

type nopPresent struct{}

func (nopPresent) SetPresent(bool) {}

// stop takes a VIP off this node (S3) and out of its group (on the loop);
// the group's next write no longer lists it, and waits for the removal.
func (c *Controller) stop(ip netip.Addr, h *serviceVIP, reason string) {
	c.table().Forget(h.ov, reason)
	h.g.remove(ip)
	delete(c.vips, ip)
}
