// Package controlplane runs the control-plane VIP: one Lease election whose
// holder owns one VIP on one interface.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/lease"
	"github.com/vipd/vipd/internal/metrics"
	"github.com/vipd/vipd/internal/owner"
	"github.com/vipd/vipd/internal/vip"
)

// Options are what the control-plane VIP needs, and nothing more.
type Options struct {
	Client    kubernetes.Interface
	Kernel    vip.Kernel
	Sender    announce.Sender
	Interface string
	Prefix    netip.Prefix
	// Resolve, when set, is called every ResolveEvery; a changed answer moves the VIP.
	Resolve      func() (netip.Addr, error)
	ResolveEvery time.Duration

	Namespace, LeaseName, NodeName string
	election.Timing
	AnnouncePeriod time.Duration
	Metrics        *metrics.VIP
	// Gate, if set, keeps this node out while its local API server is not ready.
	Gate election.Gate
	// Standby, if set, hands the VIP to another node while this Node is
	// cordoned (see election.Options).
	Standby election.Standby
	// FreshClient returns a client on new connections (see election.Options).
	FreshClient func() (kubernetes.Interface, error)
	// Instance is this process's token (see election.Options).
	Instance string
	// OnRetarget, if set, is called after the VIP moved to a new address.
	OnRetarget func()
	// Probe, if set, watches the wire for another host that answers for
	// the VIP while this node holds it (see package conflict), and probes
	// before the Lease is first created (a cold start: no previous vipd
	// holder). Conflicts go to the log, Events (Events, if set) and
	// OnConflict.
	Probe conflict.Prober
	// Listen, if set (with Probe), hears claims other hosts make on the
	// wire by themselves between probes (announce.Listen).
	Listen     func(ctx context.Context, seen func(netip.Addr, net.HardwareAddr)) error
	Events     *events.Poster
	OnConflict func(netip.Addr)
	// MAC is the interface's hardware address, published on the Lease
	// (MACAnnotation) so that anyone can tell the owner from another host.
	MAC    string
	Clock  clock.Clock
	Logger *slog.Logger
}

// ErrForeignAddress: the VIP is already an address of this node that vipd
// did not add. It is a configuration error (S7).
var ErrForeignAddress = errors.New("the VIP is an address vipd does not own")

// VIP is a running control-plane VIP.
type VIP struct {
	o        Options
	owner    *owner.VIP
	elector  *election.Elector
	log      *slog.Logger
	monitor  *conflict.Monitor
	coldNext time.Time // cold-start probe: the next one not before this
	coldWait time.Duration
}

// New sweeps leftovers of an earlier run from the host (S4) and prepares
// the election. Nothing is added to any interface until the Lease is won.
func New(o Options) (*VIP, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	log := o.Logger.With("component", "controlplane")
	removed, foreign, err := vip.SweepMarked(o.Kernel, o.Prefix.Addr())
	if err != nil {
		return nil, err
	}
	if len(foreign) > 0 {
		f := foreign[0]
		return nil, fmt.Errorf("%w: address=%s is already on this node's interface %s as %s, not added by vipd (a node address, or a VIP another tool added permanently, such as kube-vip): vipd never takes over or removes an address it did not add; choose a free address for the VIP, or remove it first (ip addr del %s dev %s) if it is a leftover", ErrForeignAddress, o.Prefix.Addr(), f.Iface, f.Prefix, f.Prefix, f.Iface)
	}
	for _, f := range removed {
		log.Warn("removed leftover VIP before joining the election", "address", f.Prefix, "interface", f.Iface)
	}
	ann := announce.New(o.Sender, announce.Options{Period: o.AnnouncePeriod}, o.Clock, log.With("component", "announce"), o.Metrics.Announced)
	ow := owner.New(vip.NewAddress(o.Kernel, o.Interface, o.Prefix, o.Clock.Now), ann, o.Metrics, o.Clock, log)
	v := &VIP{o: o, owner: ow, log: log}
	if o.Probe != nil {
		v.monitor = conflict.New(conflict.Options{
			Probe: o.Probe, Listen: o.Listen, Clock: o.Clock, Logger: log,
			Held: func() []netip.Addr {
				if ow.HoldingNow() {
					return []netip.Addr{ow.Prefix().Addr()}
				}
				return nil
			},
			Report: v.conflict, Resolve: v.resolved,
		})
	}
	el, err := election.New(election.Options{
		Client: o.Client, Namespace: o.Namespace, Name: o.LeaseName, Identity: o.NodeName,
		Timing:      o.Timing,
		Annotations: v.annotations,
		Guard:       ow, Gate: o.Gate, Standby: o.Standby, FreshClient: o.FreshClient, Recorder: o.Metrics, Clock: o.Clock, Logger: log.With("component", "election"),
		ColdStart: v.coldStart, Instance: o.Instance, OnEdited: v.edited,
	})
	if err != nil {
		return nil, err
	}
	v.elector = el
	return v, nil
}

// annotations are written on the Lease with every renewal.
func (v *VIP) annotations() map[string]string {
	m := lease.Marks{VIP: v.owner.Prefix().String(), MAC: v.o.MAC, Watching: v.monitor != nil}
	if v.monitor != nil {
		m.Conflicts = conflict.Format(v.monitor.Active())
	}
	return m.Annotations()
}

// coldStart probes the VIP before this node creates the Lease (no vipd
// held it before, so nobody knows who else may have the address). Someone
// answering is a conflict: no claim, and the next probe after a back-off
// (doubling from the retry period up to 30 s).
func (v *VIP) coldStart(ctx context.Context) error {
	if v.o.Probe == nil {
		return nil
	}
	now := v.o.Clock.Now()
	if now.Before(v.coldNext) {
		return fmt.Errorf("waiting %s before probing %s again", v.coldNext.Sub(now).Round(time.Millisecond), v.Addr())
	}
	ip := v.Addr()
	answered, err := v.o.Probe(ctx, []netip.Addr{ip})
	if err != nil {
		v.log.Warn("cannot probe the wire before the first claim; claiming without", "vip", ip, "err", err)
		return nil
	}
	mac, ok := answered[ip]
	if !ok {
		v.coldWait = 0
		return nil
	}
	// Another vipd may have created the Lease and added the VIP while this
	// node probed: that is no conflict, and the create fails anyway.
	if l, err := v.o.Client.CoordinationV1().Leases(v.o.Namespace).Get(ctx, v.o.LeaseName, metav1.GetOptions{}); err == nil && l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		return fmt.Errorf("the Lease is now held by %s", *l.Spec.HolderIdentity)
	}
	v.coldWait = min(max(2*v.coldWait, v.o.RetryPeriod), 30*time.Second)
	v.coldNext = v.o.Clock.Now().Add(v.coldWait)
	f := conflict.Finding{Addr: ip, MAC: conflict.MAC(mac.String()), Since: now}
	v.post(corev1.EventTypeWarning, "AddressConflict", fmt.Sprintf("another host already answers for the control-plane VIP %s on the wire (MAC %s), so node %s does not claim it: %s; vipd probes again in %s and claims it once nobody answers",
		ip, f.MAC, v.o.NodeName, conflict.Causes, v.coldWait), "vip", ip, "mac", f.MAC)
	if v.o.OnConflict != nil {
		v.o.OnConflict(ip)
	}
	return fmt.Errorf("another host answers for %s (MAC %s)", ip, f.MAC)
}

// conflict reports another host answering for the VIP this node holds.
func (v *VIP) conflict(f conflict.Finding) {
	v.post(corev1.EventTypeWarning, "AddressConflict", f.Report("the control-plane VIP "+f.Addr.String(), v.o.NodeName, v.o.MAC), "vip", f.Addr, "mac", f.MAC)
	if v.o.OnConflict != nil {
		v.o.OnConflict(f.Addr)
	}
	v.elector.Renew() // publish it on the Lease
}

// resolved reports that the other host stopped answering.
func (v *VIP) resolved(f conflict.Finding) {
	v.post(corev1.EventTypeNormal, "AddressConflictResolved", f.Resolved("the control-plane VIP "+f.Addr.String(), v.o.NodeName), "vip", f.Addr, "mac", f.MAC)
	v.elector.Renew()
}

// edited reports a change of the Lease that its holder did not write (S9).
func (v *VIP) edited(what string, held bool) {
	msg := fmt.Sprintf("Lease %s/%s was changed by someone other than its holder: %s. ", v.o.Namespace, v.o.LeaseName, what)
	if held {
		msg += fmt.Sprintf("Node %s held it: it removed the control-plane VIP and takes the Lease back; ", v.o.NodeName)
	} else {
		msg += "The other nodes count its last holder for a lease duration from now; "
	}
	msg += "only vipd may write vipd's Leases: see vipd doctor for who else may (kubectl edit, scripts, GitOps tools re-applying them)"
	go v.post(corev1.EventTypeWarning, "LeaseEdited", msg, "changed", what)
}

// post posts an Event on the Lease, which logs it too (without a poster:
// only logs).
func (v *VIP) post(typ, reason, msg string, kv ...any) {
	if v.o.Events != nil {
		v.o.Events.Post(context.Background(), corev1.ObjectReference{
			APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: v.o.Namespace, Name: v.o.LeaseName,
		}, typ, reason, msg)
		return
	}
	if typ == corev1.EventTypeWarning {
		v.log.Warn(msg, kv...)
	} else {
		v.log.Info(msg, kv...)
	}
}

// Addr is the VIP now (it follows a DNS name that resolves elsewhere).
func (v *VIP) Addr() netip.Addr { return v.owner.Prefix().Addr() }

// Check is the health of the VIP (see owner.VIP.Check).
func (v *VIP) Check() error { return v.owner.Check() }

// Ready reports an error until the Lease has been read once: before that,
// the API server has not answered and this node cannot take part.
func (v *VIP) Ready() error { return v.elector.Ready() }

// Run takes part in the election until ctx ends, then steps down in order:
// stop announcing, remove the address, release the Lease.
func (v *VIP) Run(ctx context.Context) error {
	if v.o.Resolve != nil && v.o.ResolveEvery > 0 {
		go v.follow(ctx)
	}
	if v.monitor != nil {
		go v.monitor.Run(ctx)
	}
	if err := v.elector.Run(ctx); err != nil {
		return fmt.Errorf("control-plane election: %w", err)
	}
	return nil
}

// follow re-resolves the configured DNS name and moves the VIP when it changes.
func (v *VIP) follow(ctx context.Context) {
	cur := v.o.Prefix
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.o.Clock.After(v.o.ResolveEvery):
		}
		ip, err := v.o.Resolve()
		if err != nil {
			v.log.Warn("cannot resolve the VIP's name; keeping the current address", "address", cur.Addr(), "err", err)
			continue
		}
		if ip == cur.Addr() {
			continue
		}
		next := netip.PrefixFrom(ip, cur.Bits())
		if ip.BitLen() != cur.Addr().BitLen() {
			next = netip.PrefixFrom(ip, ip.BitLen())
		}
		v.log.Info("VIP's name resolves to a new address", "from", cur.Addr(), "to", ip)
		v.owner.Retarget(vip.NewAddress(v.o.Kernel, v.o.Interface, next, v.o.Clock.Now))
		cur = next
		if v.o.OnRetarget != nil {
			v.o.OnRetarget()
		}
	}
}
