package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Fault is a failure injected on the VIP's owner.
type Fault struct {
	Name string
	// Inject breaks the owner; it returns when the fault is over (e.g. after
	// SIGCONT), or at once for permanent faults.
	Inject func(l *Lab, owner *Proc) error
	// Ends says the fault ends the process (it must be started again);
	// Inject may return before it has exited.
	Ends bool
}

// Faults are the faults of the failover matrix, in the order they are run.
var Faults = []Fault{
	{"SIGTERM", func(_ *Lab, p *Proc) error { return p.Signal(syscall.SIGTERM) }, true},
	{"SIGKILL", func(_ *Lab, p *Proc) error { return p.Signal(syscall.SIGKILL) }, true},
	{"power loss (SIGKILL + link down)", func(_ *Lab, p *Proc) error {
		if err := p.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		return p.Host.IPCmd("link", "set", "eth0", "down")
	}, true},
	{"SIGSTOP 10s", func(_ *Lab, p *Proc) error {
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		time.Sleep(10 * time.Second)
		return p.Signal(syscall.SIGCONT)
	}, false},
	{"API blackhole 12s", func(_ *Lab, p *Proc) error {
		route := []string{"route", "add", "blackhole", CPAddr.String() + "/32"}
		if err := p.Host.IPCmd(route...); err != nil {
			return err
		}
		time.Sleep(12 * time.Second)
		route[1] = "del"
		return p.Host.IPCmd(route...)
	}, false},
}

// ScenarioOptions describe one failover run.
type ScenarioOptions struct {
	// Container builds the container to run on each node.
	Container func(node string) (Container, error)
	// Token is the ServiceAccount token the daemons use.
	Token     string
	Namespace string
	LeaseName string
	Port      int
	// Settle is how long to keep watching after the fault is over, to see
	// that ownership does not flap back.
	Settle time.Duration
}

// Result is what one failover run measured.
type Result struct {
	Fault       string
	OldOwner    string
	NewOwner    string
	Gap         time.Duration // client-seen outage; -1 if never reachable again
	Recovery    time.Duration // from the fault to the first answer from the new owner
	TwoOwners   time.Duration
	Report      *Report
	FaultAt     time.Time
	ExitedClean bool // SIGTERM: the daemon exited 0 within 1 s
	ExitAfter   time.Duration
	Lease       string // holder at the end
}

// StartDaemons runs vipd on every node and returns the processes by node name.
func (l *Lab) StartDaemons(ctx context.Context, o ScenarioOptions) (map[string]*Proc, error) {
	procs := map[string]*Proc{}
	for _, n := range l.Nodes {
		c, err := o.Container(n.Name)
		if err != nil {
			return nil, err
		}
		p, err := l.RunVipd(ctx, n, c, o.Token)
		if err != nil {
			return procs, err
		}
		procs[n.Name] = p
	}
	return procs, nil
}

// WaitOwner waits until exactly one node has the VIP, the Lease names it,
// and a client reaches it through the VIP; it returns that node.
func (l *Lab) WaitOwner(ctx context.Context, o ScenarioOptions, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		s, err := l.Owners(l.VIP)
		if err == nil && len(s.Owners) == 1 {
			holder, herr := l.Holder(ctx, o.Namespace, o.LeaseName)
			node, rerr := l.Reach(ctx, l.VIP, o.Port, 500*time.Millisecond)
			if herr == nil && rerr == nil && holder == s.Owners[0] && node == holder {
				return holder, nil
			}
			last = fmt.Sprintf("owner %v, lease holder %q (%v), client reached %q (%v)", s.Owners, holder, herr, node, rerr)
		} else {
			last = fmt.Sprintf("owners %v (%v)", s.Owners, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no single owner of %s within %s: %s", l.VIP, timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Holder returns the Lease's holderIdentity ("" if absent).
func (l *Lab) Holder(ctx context.Context, ns, name string) (string, error) {
	le, err := l.Lease(ctx, ns, name)
	if err != nil || le == nil || le.Spec.HolderIdentity == nil {
		return "", err
	}
	return *le.Spec.HolderIdentity, nil
}

// Lease returns the Lease, or nil if it does not exist.
func (l *Lab) Lease(ctx context.Context, ns, name string) (*coordinationv1.Lease, error) {
	le, err := l.Admin.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return le, err
}

// StartFresh deletes the Lease, starts vipd on every node and waits for an
// owner. The caller stops the daemons (KillAll), also on error.
func (l *Lab) StartFresh(ctx context.Context, o ScenarioOptions, timeout time.Duration) (map[string]*Proc, string, error) {
	if err := l.Admin.CoordinationV1().Leases(o.Namespace).Delete(ctx, o.LeaseName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return nil, "", err
	}
	procs, err := l.StartDaemons(ctx, o)
	if err != nil {
		return procs, "", err
	}
	owner, err := l.WaitOwner(ctx, o, timeout)
	return procs, owner, err
}

// KillAll kills every process of procs.
func KillAll(procs map[string]*Proc) {
	for _, p := range procs {
		p.Kill()
	}
}

// Node returns the node host with the given name, or nil.
func (l *Lab) Node(name string) *Host {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// RunFault starts vipd on every node, waits for an owner, injects f on it
// while observing, and measures the failover. Every daemon is stopped and
// every fault undone before it returns.
func (l *Lab) RunFault(ctx context.Context, o ScenarioOptions, f Fault) (*Result, error) {
	procs, owner, err := l.StartFresh(ctx, o, 30*time.Second)
	defer func() {
		KillAll(procs)
		for _, n := range l.Nodes {
			n.IPCmd("link", "set", "eth0", "up")
			n.IPCmd("route", "del", "blackhole", CPAddr.String()+"/32")
			n.IPCmd("addr", "del", netip.PrefixFrom(l.VIP, l.VIP.BitLen()).String(), "dev", "eth0")
		}
	}()
	if err != nil {
		return nil, err
	}
	// Let every follower observe the Lease before the fault.
	time.Sleep(1500 * time.Millisecond)
	obs := l.Observe(l.VIP, o.Port, 50*time.Millisecond, 20*time.Millisecond)
	time.Sleep(time.Second)
	r := &Result{Fault: f.Name, OldOwner: owner, FaultAt: time.Now()}
	p := procs[owner]
	injectErr := make(chan error, 1)
	go func() { injectErr <- f.Inject(l, p) }()
	if f.Name == "SIGTERM" {
		exited, err := p.Wait(time.Second)
		r.ExitAfter = time.Since(r.FaultAt)
		r.ExitedClean = exited && err == nil
	}
	if err := <-injectErr; err != nil {
		obs.Stop()
		return nil, fmt.Errorf("injecting %s: %w", f.Name, err)
	}
	// Wait for recovery (bounded), then watch a while for flapping.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s, err := l.Owners(l.VIP)
		if err == nil && len(s.Owners) == 1 && s.Owners[0] != owner {
			if node, err := l.Reach(ctx, l.VIP, o.Port, 300*time.Millisecond); err == nil && node == s.Owners[0] {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(o.Settle)
	r.Report = obs.Stop()
	r.Gap = r.Report.Gap(r.FaultAt)
	r.TwoOwners = r.Report.TwoOwnerTime()
	if seq := r.Report.OwnerChanges(); len(seq) > 0 {
		r.NewOwner = seq[len(seq)-1]
	}
	r.Lease, _ = l.Holder(ctx, o.Namespace, o.LeaseName)
	r.Recovery = r.Report.Recovery(r.FaultAt, r.NewOwner)
	return r, nil
}

// Check returns what is wrong with r against the safety and liveness
// requirements: never two owners, exactly one change of owner (seen on the
// interfaces and by the client), the Lease on the new owner, and the VIP
// reachable again within bound.
func (r *Result) Check(bound time.Duration) error {
	var errs []error
	if m := r.Report.MaxOwners(); m > 1 {
		errs = append(errs, fmt.Errorf("%d nodes had the VIP at once, for %s", m, r.TwoOwners))
	}
	seq := r.Report.OwnerChanges()
	if len(seq) != 2 || seq[0] != r.OldOwner {
		errs = append(errs, fmt.Errorf("owners seen on interfaces %v: want exactly [%s <other>]", seq, r.OldOwner))
	}
	ans := r.Report.AnsweredBy()
	if len(ans) != 2 || ans[0] != r.OldOwner {
		errs = append(errs, fmt.Errorf("nodes that answered the client %v: want exactly [%s <other>]", ans, r.OldOwner))
	}
	if len(seq) == 2 && !slices.Equal(seq, ans) {
		errs = append(errs, fmt.Errorf("client reached %v but interfaces showed %v", ans, seq))
	}
	if r.Lease != r.NewOwner {
		errs = append(errs, fmt.Errorf("Lease held by %q, VIP on %q", r.Lease, r.NewOwner))
	}
	switch {
	case r.Gap < 0:
		errs = append(errs, errors.New("the VIP never became reachable again"))
	case r.Gap > bound:
		errs = append(errs, fmt.Errorf("client-seen gap %s exceeds %s", r.Gap.Round(time.Millisecond), bound))
	}
	return errors.Join(errs...)
}
