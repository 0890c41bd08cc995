// Package controlplane runs the control-plane VIP: one Lease election whose
// holder owns one VIP on one interface.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/announce"
	"github.com/vipd/vipd/internal/election"
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

	Namespace, LeaseName, NodeName            string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	AnnouncePeriod                            time.Duration
	Metrics                                   *metrics.VIP
	// Gate, if set, keeps this node out while its local API server is not ready.
	Gate election.Gate
	// Standby, if set, hands the VIP to another node while this Node is
	// cordoned (see election.Options).
	Standby election.Standby
	// FreshClient returns a client on new connections (see election.Options).
	FreshClient func() (kubernetes.Interface, error)
	// OnRetarget, if set, is called after the VIP moved to a new address.
	OnRetarget func()
	Clock      clock.Clock
	Logger     *slog.Logger
}

// ErrForeignAddress: the VIP is already an address of this node that vipd
// did not add. It is a configuration error (S7).
var ErrForeignAddress = errors.New("the VIP is an address vipd does not own")

// VIP is a running control-plane VIP.
type VIP struct {
	o       Options
	owner   *owner.VIP
	elector *election.Elector
	log     *slog.Logger
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
	el, err := election.New(election.Options{
		Client: o.Client, Namespace: o.Namespace, Name: o.LeaseName, Identity: o.NodeName,
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Annotations: func() map[string]string { return map[string]string{election.VIPAnnotation: ow.Prefix().String()} },
		Guard:       ow, Gate: o.Gate, Standby: o.Standby, FreshClient: o.FreshClient, Recorder: o.Metrics, Clock: o.Clock, Logger: log.With("component", "election"),
	})
	if err != nil {
		return nil, err
	}
	return &VIP{o: o, owner: ow, elector: el, log: log}, nil
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
