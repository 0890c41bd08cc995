package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// These tests guard S8 (hand over, never overlap) from outside: addresses
// on every node's interface sampled every 20 ms, a client probing.

// setPolicy switches a Service's externalTrafficPolicy (retrying on conflict).
func setPolicy(t *testing.T, c kubernetes.Interface, ns, name string, p corev1.ServiceExternalTrafficPolicy) {
	t.Helper()
	eventually(t, 10*time.Second, "updating externalTrafficPolicy", func() error {
		s, err := c.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.ExternalTrafficPolicy = p
		_, err = c.CoreV1().Services(ns).Update(context.Background(), s, metav1.UpdateOptions{})
		return err
	})
}

// onlyOn waits until ip is on node alone.
func onlyOn(t *testing.T, l *lab.Lab, ip netip.Addr, node string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, fmt.Sprintf("%s on %s alone", ip, node), func() error {
		o, err := l.AllOwners()
		if err != nil {
			return err
		}
		if len(o[ip]) != 1 || o[ip][0] != node {
			return fmt.Errorf("on %v", o[ip])
		}
		return nil
	})
}

// TestServicesTrafficPolicySwitch: a Service switched Cluster -> Local ->
// Cluster 10 times. A Cluster VIP belongs to the Services Lease holder, a
// Local one to the holder of the Service's own Lease (on the node with the
// endpoint, another node): every switch hands the address from one node to
// the other. Everything the API server sends to the Services Lease holder
// arrives 1 s late (its watch lags, its writes are answered late), so the
// two nodes see each switch a second apart. The address is never on two
// nodes.
func TestServicesTrafficPolicySwitch(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	c := l.Admin
	ip := netip.MustParseAddr("198.51.100.160")
	create(t, c, lbService("default", "flip", port, withIPs(ip.String())))
	lagged := l.Nodes[0]
	stopLag, err := l.LagAPI(lagged, 16443, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopLag)
	procs := map[string]*lab.Proc{}
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	// The lagging node starts first and takes the Services Lease.
	for i, n := range l.Nodes {
		ct, err := sc.Container(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if n == lagged {
			ct.Env = append(ct.Env, lab.APIEnv(16443)...)
		}
		if procs[n.Name], err = l.RunVipd(ctx, n, ct, sc.Token); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			eventually(t, 30*time.Second, "the lagging node holds the Services Lease", func() error {
				if h, err := l.Holder(ctx, leaseNS, svcLease); err != nil || h != lagged.Name {
					return fmt.Errorf("holder %q (%v)", h, err)
				}
				return nil
			})
		}
	}
	holder := lagged.Name
	eventually(t, 30*time.Second, "the Cluster VIP on the Services Lease holder", func() error {
		if _, err := converged(ctx, l, []string{"default/flip"}, map[string]string{"default/flip": ip.String()}); err != nil {
			return err
		}
		if o, _ := l.AllOwners(); len(o[ip]) != 1 || o[ip][0] != holder {
			return fmt.Errorf("on %v, Services Lease held by %q", o[ip], holder)
		}
		return nil
	})
	local := l.Nodes[0].Name
	if local == holder {
		local = l.Nodes[1].Name
	}
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice("default", "flip", local), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	obs := l.Observe(ip, port, 20*time.Millisecond, 50*time.Millisecond)
	start := time.Now()
	var moves []time.Duration
	for range 10 {
		for _, step := range []struct {
			p    corev1.ServiceExternalTrafficPolicy
			node string
		}{{corev1.ServiceExternalTrafficPolicyLocal, local}, {corev1.ServiceExternalTrafficPolicyCluster, holder}} {
			at := time.Now()
			setPolicy(t, c, "default", "flip", step.p)
			onlyOn(t, l, ip, step.node, 30*time.Second)
			moves = append(moves, time.Since(at))
			time.Sleep(200 * time.Millisecond) // longer than a sampling period: every owner is seen
		}
	}
	rep := obs.Stop()
	var ms []string
	for _, d := range moves {
		ms = append(ms, fmt.Sprint(d.Round(10*time.Millisecond)))
	}
	t.Logf("20 switches in %s, samples=%d probes=%d, each switch until the VIP was on its new node alone: %s",
		time.Since(start).Round(time.Millisecond), len(rep.Samples), len(rep.Probes), strings.Join(ms, " "))
	if m := rep.MaxOwners(); m > 1 {
		t.Errorf("%d nodes had %s at once, for %s in all", m, ip, rep.TwoOwnerTime())
	}
	if seq := rep.OwnerChanges(); len(seq) != 21 {
		var trace []string
		last := ""
		for _, smp := range rep.Samples {
			if o := strings.Join(smp.Owners, "+"); o != last {
				trace = append(trace, fmt.Sprintf("%s:%s", smp.At.Sub(start).Round(10*time.Millisecond), o))
				last = o
			}
		}
		t.Errorf("owners seen %v: want 21 (the VIP moved 20 times); %d sample errors %v; trace %v", seq, len(rep.Errors), rep.Errors[:min(3, len(rep.Errors))], trace)
	}
}

// TestServicesDualStackLocalDropsIPv6: a dual-stack Local Service has one
// Lease and one elector for both addresses. The Service drops its IPv6
// address: the IPv6 VIP leaves, the IPv4 VIP stays on its node without a
// gap, and the Service's Lease is never released meanwhile.
func TestServicesDualStackLocalDropsIPv6(t *testing.T) {
	l, sc := servicesLabWith(t, lab.Options{Nodes: 3, IPv6: true})
	ctx := context.Background()
	c := l.Admin
	v4, v6 := netip.MustParseAddr("198.51.100.152"), netip.MustParseAddr("2001:db8::152")
	node := l.Nodes[1].Name
	create(t, c, lbService("default", "dual-local", port, withIPs(v4.String()+","+v6.String()), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice("default", "dual-local", node), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startDaemons(t, l, sc)
	onlyOn(t, l, v4, node, 30*time.Second)
	onlyOn(t, l, v6, node, 10*time.Second)

	obs := l.Observe(v4, port, 20*time.Millisecond, 50*time.Millisecond)
	// Every version of the Service's Lease, from a watch (polling would
	// miss a release that is taken back within milliseconds).
	var mu sync.Mutex
	holders := map[string]bool{}
	pollCtx, stopPoll := context.WithCancel(ctx)
	w, err := c.CoordinationV1().Leases("default").Watch(pollCtx, metav1.ListOptions{FieldSelector: "metadata.name=" + services.LocalLeasePrefix + "dual-local"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ev := range w.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok {
				mu.Lock()
				holders[ptr.Deref(l.Spec.HolderIdentity, "")] = true
				mu.Unlock()
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	eventually(t, 10*time.Second, "dropping the IPv6 address", func() error {
		s, err := c.CoreV1().Services("default").Get(ctx, "dual-local", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Annotations[services.AnnotationIPs] = v4.String()
		_, err = c.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	eventually(t, 10*time.Second, "the IPv6 VIP gone, the status IPv4 only", func() error {
		if o, err := l.AllOwners(); err != nil || len(o[v6]) != 0 {
			return fmt.Errorf("%s on %v (%v)", v6, o[v6], err)
		}
		s, err := c.CoreV1().Services("default").Get(ctx, "dual-local", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if in := s.Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != v4.String() {
			return fmt.Errorf("status %v", in)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	stopPoll()
	w.Stop()
	wg.Wait()
	rep := obs.Stop()
	if m := rep.MaxOwners(); m > 1 {
		t.Errorf("%d nodes had %s at once", m, v4)
	}
	if seq := rep.OwnerChanges(); len(seq) != 1 || seq[0] != node {
		t.Errorf("owners of %s seen %v, want only [%s] (never removed)", v4, seq, node)
	}
	if ans := rep.AnsweredBy(); len(ans) != 1 || ans[0] != node {
		t.Errorf("client reached %v through %s, want only %s", ans, v4, node)
	}
	if len(holders) != 1 || !holders[node] {
		t.Errorf("the Service's Lease was held by %v meanwhile, want only %s throughout", holders, node)
	}
}

// TestDeleteLeaseDuringPartition: the control-plane Lease is deleted
// (kubectl delete lease, the usual way to "unstick" kube-vip) while its
// holder is cut off from the API server. The holder may still have the VIP
// until its fence passes; the followers must count the deletion as an
// observation of that holder and wait a lease duration, not take the VIP
// at once.
func TestDeleteLeaseDuringPartition(t *testing.T) {
	l := newLab(t)
	sc := seedScenario(t, l)
	f := lab.Fault{Name: "API blackhole 12s, Lease deleted after 1 s", Inject: func(l *lab.Lab, p *lab.Proc) error {
		route := []string{"route", "add", "blackhole", lab.CPAddr.String() + "/32"}
		if err := p.Host.IPCmd(route...); err != nil {
			return err
		}
		time.Sleep(time.Second)
		if err := l.Admin.CoordinationV1().Leases(sc.Namespace).Delete(context.Background(), sc.LeaseName, metav1.DeleteOptions{}); err != nil {
			return err
		}
		time.Sleep(11 * time.Second)
		route[1] = "del"
		return p.Host.IPCmd(route...)
	}}
	runFault(t, l, sc, f)
}
