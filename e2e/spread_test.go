package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// overlapWatch samples every node's addresses every 50 ms until stopped and
// records every address seen on two nodes at once.
type overlapWatch struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	bad  map[netip.Addr][]string
	errs int
	last map[netip.Addr][]string
}

func watchOverlaps(l *lab.Lab) *overlapWatch {
	w := &overlapWatch{stop: make(chan struct{}), done: make(chan struct{}), bad: map[netip.Addr][]string{}}
	go func() {
		defer close(w.done)
		for {
			o, err := l.AllOwners()
			w.mu.Lock()
			if err != nil {
				w.errs++
			} else {
				w.last = o
				for ip, nodes := range o {
					if len(nodes) > 1 {
						w.bad[ip] = nodes
					}
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return w
}

// check reports the addresses seen on two nodes so far.
func (w *overlapWatch) check(t *testing.T, when string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for ip, nodes := range w.bad {
		t.Errorf("%s: %s was on %v at once", when, ip, nodes)
	}
	w.bad = map[netip.Addr][]string{}
}

func (w *overlapWatch) end(t *testing.T) {
	close(w.stop)
	<-w.done
	w.check(t, "at the end")
}

// spread returns where every Service's VIP is, once each is on exactly the
// node its owner annotation names, in its status, and reached by the client.
func spreadNow(ctx context.Context, l *lab.Lab, keys []string) (map[netip.Addr]string, error) {
	got, err := converged(ctx, l, keys, nil)
	if err != nil {
		return nil, err
	}
	owners, err := l.AllOwners()
	if err != nil {
		return nil, err
	}
	out := map[netip.Addr]string{}
	for _, ip := range got {
		a := netip.MustParseAddr(ip)
		if len(owners[a]) != 1 {
			return nil, fmt.Errorf("%s on %v", a, owners[a])
		}
		out[a] = owners[a][0]
	}
	return out, nil
}

func countBy(p map[netip.Addr]string) map[string]int {
	c := map[string]int{}
	for _, n := range p {
		c[n]++
	}
	return c
}

// balanced waits until every VIP is up and each of nodes holds its share ±1.
func balanced(t *testing.T, l *lab.Lab, keys []string, nodes []string, timeout time.Duration) map[netip.Addr]string {
	t.Helper()
	var p map[netip.Addr]string
	eventually(t, timeout, "every VIP up and the split even", func() error {
		var err error
		if p, err = spreadNow(context.Background(), l, keys); err != nil {
			return err
		}
		share := len(keys) / len(nodes)
		c := countBy(p)
		for _, n := range nodes {
			if c[n] < share-1 || c[n] > share+1 {
				return fmt.Errorf("split %v, want %d ± 1 on each of %v", c, share, nodes)
			}
		}
		return nil
	})
	return p
}

// TestSpread: spread mode (kube-vip's svc_election=true) with the seed's
// DaemonSet and ClusterRole: 60 Services on 3 nodes, 20 ± 1 VIPs on each,
// every VIP on exactly the node vipHost names. Then the fault matrix on one
// node after another: its VIPs move to the other two and answer again
// within lease duration + 3 s, the other VIPs never move and never miss a
// probe, and once the node is back and has settled the split is even
// again; never an address on two nodes (sampled every 50 ms). Then a node
// labelled node.kubernetes.io/exclude-from-external-load-balancers gives up
// its VIPs and gets none, and an externalTrafficPolicy: Local Service
// follows its endpoint.
func TestSpread(t *testing.T) {
	l, sc := servicesLab(t)
	sc = withEnv(sc, "svc_election=true")
	ctx := context.Background()
	c := l.Admin
	createNodes(t, l)
	setPools(t, c, map[string]string{"range-global": "198.51.100.120-198.51.100.190"})
	var keys []string
	for i := range 45 {
		create(t, c, lbService("default", fmt.Sprintf("pool-%d", i), port))
		keys = append(keys, fmt.Sprintf("default/pool-%d", i))
	}
	for i := range 15 {
		create(t, c, lbService("default", fmt.Sprintf("ask-%d", i), port, withIPs(fmt.Sprintf("198.51.100.%d", 60+i))))
		keys = append(keys, fmt.Sprintf("default/ask-%d", i))
	}
	names := []string{l.Nodes[0].Name, l.Nodes[1].Name, l.Nodes[2].Name}
	procs := startDaemons(t, l, sc)
	w := watchOverlaps(l)
	start := time.Now()
	p := balanced(t, l, keys, names, 60*time.Second)
	t.Logf("60 Services in spread mode: split %v after %s", countBy(p), time.Since(start).Round(100*time.Millisecond))
	w.check(t, "start")
	// Metrics per node: the nodes it sees, its readiness, its VIPs.
	hc := lab.HTTPClient(l.Client, 2*time.Second)
	for _, n := range l.Nodes {
		resp, err := hc.Get("http://" + n.IP.String() + ":2112/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.Name, err)
		}
		body := readAll(resp)
		if sumMetric(body, "vipd_spread_nodes") != 3 || sumMetric(body, "vipd_spread_ready") != 1 || sumMetric(body, "vipd_service_vips_present") != float64(countBy(p)[n.Name]) {
			t.Errorf("%s: vipd_spread_nodes %v, vipd_spread_ready %v, vipd_service_vips_present %v; want 3, 1, %d", n.Name,
				sumMetric(body, "vipd_spread_nodes"), sumMetric(body, "vipd_spread_ready"), sumMetric(body, "vipd_service_vips_present"), countBy(p)[n.Name])
		}
		// Each node's view of every heartbeat: the VIPs it lists, and a
		// renewal seen within the lease duration.
		for _, m := range names {
			vips := sumMetric(body, fmt.Sprintf(`vipd_spread_heartbeat_vips{node=%q}`, m))
			age := sumMetric(body, fmt.Sprintf(`vipd_spread_heartbeat_age_seconds{node=%q}`, m))
			if vips != float64(countBy(p)[m]) || !strings.Contains(body, fmt.Sprintf(`vipd_spread_heartbeat_age_seconds{node=%q}`, m)) || age >= leaseDuration.Seconds() {
				t.Errorf("%s's metrics on %s's heartbeat: %v VIPs, %v s old; want %d VIPs, under %s", n.Name, m, vips, age, countBy(p)[m], leaseDuration)
			}
		}
	}
	// vipd status: every node's heartbeat and the VIPs it holds.
	out, err := vipdStatus(t, l)
	if err != nil || !strings.Contains(string(out), "Spread mode:  3 nodes with a heartbeat") {
		t.Errorf("vipd status: %v\n%s", err, out)
	}
	for n, count := range countBy(p) {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^  %s +\S+ ago +yes +%d \(`, n, count)).Match(out) {
			t.Errorf("vipd status lacks %s holding %d:\n%s", n, count, out)
		}
	}

	for i, f := range lab.Faults {
		victim := l.Nodes[i%len(l.Nodes)]
		p = spreadFault(t, l, sc, procs, victim, f, keys, p)
		w.check(t, f.Name)
	}
	// Every node listens on the wire for other hosts announcing its
	// addresses: the moves between vipd nodes (each new owner announces
	// what the old one held) are no conflict.
	if n := conflictEvents(t, l); n != 0 {
		t.Errorf("%d AddressConflict Events after the fault matrix: moves between vipd nodes are no conflict", n)
	}

	// kubectl delete lease of a node's heartbeat: the Lease stays until
	// that node has removed its VIPs and let it go (its finalizer), so no
	// other node claims them while it may still hold them; it is created
	// again, and once the node has settled the split is even again.
	hb := services.HeartbeatName(names[1])
	if err := c.CoordinationV1().Leases(leaseNS).Delete(ctx, hb, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deletedAt := time.Now()
	for {
		l, err := c.CoordinationV1().Leases(leaseNS).Get(ctx, hb, metav1.GetOptions{})
		if err == nil && l.DeletionTimestamp == nil {
			break // created again
		}
		if time.Since(deletedAt) > 10*time.Second {
			t.Fatalf("heartbeat %s not deleted and created again within 10 s: %v %v", hb, err, l)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("heartbeat of %s deleted: created again after %s", names[1], time.Since(deletedAt).Round(10*time.Millisecond))
	balanced(t, l, keys, names, 45*time.Second)
	w.check(t, "heartbeat deleted")

	// A node excluded from external load balancers: its VIPs leave, in
	// planned moves; it gets none.
	n3, err := c.CoreV1().Nodes().Get(ctx, names[2], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n3.Labels = map[string]string{services.ExcludeLabel: ""}
	if _, err := c.CoreV1().Nodes().Update(ctx, n3, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p = balanced(t, l, keys, names[:2], 30*time.Second)
	if n := countBy(p)[names[2]]; n != 0 {
		t.Errorf("the excluded node %s holds %d VIPs", names[2], n)
	}
	w.check(t, "exclusion")

	// externalTrafficPolicy: Local follows its endpoint, never on two nodes.
	create(t, c, lbService("default", "local", port, withIPs("198.51.100.80"), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice("default", "local", names[0]), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	onlyOn(t, l, netip.MustParseAddr("198.51.100.80"), names[0], 20*time.Second)
	es, err := c.DiscoveryV1().EndpointSlices("default").Get(ctx, "local-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	es.Endpoints[0].NodeName = ptr.To(names[1])
	if _, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, es, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	onlyOn(t, l, netip.MustParseAddr("198.51.100.80"), names[1], 20*time.Second)
	w.end(t)
}

// spreadFault injects f on victim's vipd and checks what TestSpread says.
func spreadFault(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, procs map[string]*lab.Proc, victim *lab.Host, f lab.Fault, keys []string, before map[netip.Addr]string) map[netip.Addr]string {
	t.Helper()
	ctx := context.Background()
	var moving, staying []netip.Addr
	for ip, n := range before {
		if n == victim.Name {
			moving = append(moving, ip)
		} else {
			staying = append(staying, ip)
		}
	}
	sort.Slice(staying, func(i, j int) bool { return staying[i].Less(staying[j]) })
	staying = staying[:min(8, len(staying))]
	// A probe fails when it gets no answer within a second: a VIP that
	// did not move answers at once, unless the machine is very busy.
	obs := map[netip.Addr]*lab.Observer{}
	for _, ip := range staying {
		obs[ip] = l.ObserveTimeout(ip, port, 100*time.Millisecond, 250*time.Millisecond, time.Second)
	}
	at := time.Now()
	injected := make(chan error, 1)
	go func() { injected <- f.Inject(l, procs[victim.Name]) }()

	// Every VIP of the victim answers from another node within lease
	// duration + 3 s.
	// Each VIP is probed on its own every 100 ms (a sequential sweep of
	// 20 VIPs with 300 ms timeouts took 6 s and blurred the figures).
	// (A claim check whose read raced the victim's last renewal once
	// counted the lease duration from the read: about 1 run in 5 waited
	// twice the lease duration. Fixed in leaseView.saw.)
	limit := leaseDuration + 3*time.Second
	back := map[netip.Addr]time.Duration{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, ip := range moving {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(at) < limit+2*time.Second {
				if node, err := l.Reach(ctx, ip, port, 300*time.Millisecond); err == nil && node != victim.Name {
					mu.Lock()
					back[ip] = time.Since(at)
					mu.Unlock()
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	var worst time.Duration
	for _, ip := range moving {
		d, ok := back[ip]
		if !ok || d > limit {
			t.Errorf("%s on %s: %s answered from another node after %v (reached: %t), want within %s", f.Name, victim.Name, ip, d, ok, limit)
		}
		worst = max(worst, d)
	}
	if err := <-injected; err != nil {
		t.Fatalf("%s: %v", f.Name, err)
	}
	// Bring the node back as it would come back. (The VIPs of a node
	// stopped by SIGTERM may answer from the others before it has exited:
	// its hand-over is done before it releases its heartbeat. Not waiting
	// for the exit once left the node down for the rest of the test.)
	if f.Ends {
		if exited, _ := procs[victim.Name].Wait(10 * time.Second); !exited {
			t.Fatalf("%s: vipd on %s still running 10 s later", f.Name, victim.Name)
		}
		if strings.HasPrefix(f.Name, "power loss") {
			if err := victim.IPCmd("link", "set", "eth0", "up"); err != nil {
				t.Fatal(err)
			}
		}
		runOn(t, l, sc, procs, victim)
	}
	missed := 0
	for _, ip := range staying {
		r := obs[ip].Stop()
		if seq := r.OwnerChanges(); len(seq) != 1 || seq[0] != before[ip] {
			t.Errorf("%s on %s: %s, on %s before, moved: %v", f.Name, victim.Name, ip, before[ip], seq)
		}
		for _, pr := range r.Probes {
			if pr.Err != nil || pr.Node != before[ip] {
				missed++
			}
		}
	}
	if missed > 0 {
		t.Errorf("%s on %s: %d probes of VIPs on other nodes failed or reached another node", f.Name, victim.Name, missed)
	}
	t.Logf("%s on %s: its %d VIPs answered from the other nodes within %s; %d VIPs elsewhere never moved", f.Name, victim.Name, len(moving), worst.Round(10*time.Millisecond), len(staying))
	names := []string{l.Nodes[0].Name, l.Nodes[1].Name, l.Nodes[2].Name}
	return balanced(t, l, keys, names, 45*time.Second)
}

// TestSpreadRollingSwitch: a running cluster in the single-holder mode is
// switched to spread mode by restarting one node at a time (a rolling
// update of the DaemonSet): every VIP stays up and is never on two nodes;
// at the end the VIPs are spread over the three nodes.
func TestSpreadRollingSwitch(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	c := l.Admin
	setPools(t, c, map[string]string{"range-global": "198.51.100.120-198.51.100.190"})
	var keys []string
	for i := range 30 {
		create(t, c, lbService("default", fmt.Sprintf("s-%d", i), port))
		keys = append(keys, fmt.Sprintf("default/s-%d", i))
	}
	procs := startDaemons(t, l, sc)
	w := watchOverlaps(l)
	eventually(t, 60*time.Second, "every VIP up in the single-holder mode", func() error {
		_, err := converged(ctx, l, keys, nil)
		return err
	})
	spread := withEnv(sc, "svc_election=true")
	// The Services Lease holder last, as a rolling update may well do.
	holder, _ := l.Holder(ctx, leaseNS, svcLease)
	var order []*lab.Host
	for _, n := range l.Nodes {
		if n.Name != holder {
			order = append(order, n)
		}
	}
	for _, n := range l.Nodes {
		if n.Name == holder {
			order = append(order, n)
		}
	}
	for _, n := range order {
		if err := procs[n.Name].Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if exited, _ := procs[n.Name].Wait(10 * time.Second); !exited {
			t.Fatalf("vipd on %s did not exit on SIGTERM", n.Name)
		}
		runOn(t, l, spread, procs, n)
		eventually(t, 30*time.Second, "every VIP up after restarting "+n.Name+" in spread mode", func() error {
			_, err := converged(ctx, l, keys, nil)
			return err
		})
		w.check(t, "restart of "+n.Name)
	}
	p := balanced(t, l, keys, []string{l.Nodes[0].Name, l.Nodes[1].Name, l.Nodes[2].Name}, 60*time.Second)
	t.Logf("after the rolling switch: split %v", countBy(p))
	w.end(t)
}

// runOn starts vipd on h again with sc's container, in procs (whose
// processes the test kills at its end).
func runOn(t testing.TB, l *lab.Lab, sc lab.ScenarioOptions, procs map[string]*lab.Proc, h *lab.Host) {
	t.Helper()
	ct, err := sc.Container(h.Name)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.RunVipd(context.Background(), h, ct, sc.Token)
	if err != nil {
		t.Fatal(err)
	}
	procs[h.Name] = p
}
