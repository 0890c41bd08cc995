package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// BenchmarkFailover runs every fault of the matrix VIPD_BENCH_RUNS times
// (default 5) at the seed's timings (5/3/1 s) and prints, per fault, the
// median client-seen gap and the median time with two owners.
//
//	make bench-failover
func BenchmarkFailover(b *testing.B) {
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("VIPD_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	l := newLab(b)
	seed := seedScenario(b, l)
	seed.Settle = time.Second
	type row struct {
		fault            string
		gaps, twos, recs []time.Duration
		fails            int
		runs             []*lab.Result
	}
	var sb strings.Builder
	for _, p := range []struct {
		name, title string
		sc          lab.ScenarioOptions
		lease       time.Duration
	}{
		{"seed", "the seed's timings (lease 5 s, renew deadline 3 s, retry 1 s)", seed, leaseDuration},
		{"fast", "the fast profile (lease 4 s, renew deadline 2 s, retry 0.5 s)", withEnv(seed, FastProfile...), 4 * time.Second},
	} {
		var rows []row
		var writes float64
		for range b.N {
			rows = rows[:0]
			writes = leaseWrites(b, l, p.sc)
			for _, f := range lab.Faults {
				r := row{fault: f.Name}
				for range runs {
					res, err := l.RunFault(context.Background(), p.sc, f)
					if err != nil {
						b.Fatalf("%s: %v", f.Name, err)
					}
					if err := res.Check(p.lease + 3*time.Second); err != nil {
						r.fails++
						b.Logf("%s: %v (%s)", f.Name, err, res.Report.Summary(res.FaultAt))
					}
					r.gaps = append(r.gaps, res.Gap)
					r.twos = append(r.twos, res.TwoOwners)
					r.recs = append(r.recs, res.Recovery)
					r.runs = append(r.runs, res)
				}
				rows = append(rows, r)
			}
		}
		fmt.Fprintf(&sb, "\nFailover at %s, %d runs per fault, median [min-max]; Lease writes in steady state: %.2f/s (3 nodes)\n", p.title, runs, writes)
		fmt.Fprintf(&sb, "| fault | client-seen gap (ms) | fault → new owner answers (ms) | time with two owners (ms) | runs failing a check |\n|---|---|---|---|---|\n")
		for _, r := range rows {
			fmt.Fprintf(&sb, "| %s | %s | %s | %s | %d |\n", r.fault, stats(r.gaps), stats(r.recs), stats(r.twos), r.fails)
			name := strings.ReplaceAll(strings.Fields(r.fault)[0], "-", "")
			b.ReportMetric(float64(median(r.gaps).Milliseconds()), p.name+"-"+name+"-gap-ms")
			if dir := lab.ImageDir(); dir != "" && p.name == "seed" {
				timeline(b, l, dir, name, p.title, r.runs)
			}
		}
	}
	fmt.Print(sb.String())
}

// leaseWrites starts vipd on every node with sc and returns the Lease
// writes (create and update) per second over 10 s once one node holds the
// VIP; the daemons are stopped again.
func leaseWrites(b *testing.B, l *lab.Lab, sc lab.ScenarioOptions) float64 {
	ctx := context.Background()
	procs, _, err := l.StartFresh(ctx, sc, 30*time.Second)
	defer lab.KillAll(procs)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	rates, _, _ := window(ctx, b, l, procs, 10*time.Second, leaseRequests)
	return rates["PUT"] + rates["POST"]
}

// timeline draws the run of a fault with the median client-seen gap
// (docs/img/failover-<fault>.svg).
func timeline(b *testing.B, l *lab.Lab, dir, name, timings string, runs []*lab.Result) {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(x, y *lab.Result) int { return int(x.Gap - y.Gap) })
	r := sorted[len(sorted)/2]
	var nodes []string
	for _, n := range l.Nodes {
		nodes = append(nodes, n.Name)
	}
	title := fmt.Sprintf("%s of the VIP's holder %s: client-seen gap %d ms, two owners %d ms", r.Fault, r.OldOwner, r.Gap.Milliseconds(), r.TwoOwners.Milliseconds())
	path := filepath.Join(dir, "failover-"+strings.ToLower(name)+".svg")
	if err := lab.TimelineSVG(path, title, lab.Caption("vipd at "+timings+", the median of "+strconv.Itoa(len(runs))+" runs", len(nodes)), r.Report, r.FaultAt, nodes); err != nil {
		b.Error(err)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func stats(d []time.Duration) string {
	return fmt.Sprintf("%d [%d-%d]", median(d).Milliseconds(), slices.Min(d).Milliseconds(), slices.Max(d).Milliseconds())
}

// BenchmarkControlPlaneStop is the seed's failover test in the "ha" lab:
// the leader's etcd and kube-apiserver stop (systemctl stop k3s) while vipd
// keeps running there. It prints the median time from the stop until
// kubectl through the VIP works again, VIPD_BENCH_RUNS runs (default 5), for
// vipd reaching the API through the Service (default) and k8s_api=local.
//
//	make bench-failover
func BenchmarkControlPlaneStop(b *testing.B) {
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("VIPD_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	l := newLabWith(b, lab.Options{Nodes: 3, HA: true})
	type row struct {
		name   string
		extra  []string
		outs   []time.Duration
		twoMax int
	}
	rows := []*row{{name: "API through the in-cluster Service (default)"}, {name: "k8s_api=local", extra: []string{"k8s_api=local"}}}
	for range b.N {
		for _, r := range rows {
			r.outs, r.twoMax = nil, 0
			sc := haScenario(b, l, r.extra...)
			for range runs {
				res, err := l.RunControlPlaneStop(context.Background(), sc, 20*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				if res.Outage < 0 {
					b.Fatalf("%s: kubectl through the VIP did not come back within 20 s", r.name)
				}
				r.outs = append(r.outs, res.Outage)
				r.twoMax = max(r.twoMax, res.Report.MaxOwners())
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nControl plane (etcd + kube-apiserver) stopped on the leader, vipd still running there; seed timings, health gate 3 × 1 s; %d runs, median [min-max]\n", runs)
	fmt.Fprintf(&sb, "| vipd reaches the API | stop → kubectl through the VIP works (ms) | most nodes with the VIP at once |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %d |\n", r.name, stats(r.outs), r.twoMax)
	}
	fmt.Print(sb.String())
	b.ReportMetric(float64(median(rows[0].outs).Milliseconds()), "cpstop-ms")
}

// BenchmarkSteadyState measures, with three vipd at the seed's settings and
// nothing failing, the Lease requests per second the API server served (its
// own apiserver_request_total), and each daemon's resident memory and CPU,
// over VIPD_STEADY_SECONDS (default 30).
//
//	make bench-steady
func BenchmarkSteadyState(b *testing.B) {
	win := 30 * time.Second
	if n, err := strconv.Atoi(os.Getenv("VIPD_STEADY_SECONDS")); err == nil && n > 0 {
		win = time.Duration(n) * time.Second
	}
	l := newLab(b)
	sc := seedScenario(b, l)
	ctx := context.Background()
	procs, _, err := l.StartFresh(ctx, sc, 30*time.Second)
	defer lab.KillAll(procs)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(3 * time.Second) // past the takeover burst
	for range b.N {
		rates, rss, cpu := window(ctx, b, l, procs, win, leaseRequests)
		var sb strings.Builder
		fmt.Fprintf(&sb, "\nSteady state, 3 nodes, seed settings, %s window\n| Lease requests (verb) | per second |\n|---|---|\n", win)
		verbs := []string{}
		for v := range rates {
			verbs = append(verbs, v)
		}
		slices.Sort(verbs)
		for _, v := range verbs {
			fmt.Fprintf(&sb, "| %s | %.2f |\n", v, rates[v])
		}
		fmt.Fprintf(&sb, "\n| vipd on | role | resident memory (MiB) | CPU (%% of one core) |\n|---|---|---|---|\n")
		holder, _ := l.Holder(ctx, sc.Namespace, sc.LeaseName)
		for _, n := range l.Nodes {
			role := "follower"
			if n.Name == holder {
				role = "leader"
			}
			fmt.Fprintf(&sb, "| %s | %s | %.1f | %.2f |\n", n.Name, role, rss[n.Name], cpu[n.Name])
		}
		fmt.Print(sb.String())
	}
}

// requestTotals sums the API server's apiserver_request_total (from its own
// /metrics) under the keys that keys returns for each series' labels.
func requestTotals(ctx context.Context, l *lab.Lab, keys func(labels string) []string) (map[string]float64, error) {
	body, err := l.Admin.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		for _, k := range keys(line) {
			out[k] += v
		}
	}
	return out, nil
}

// leaseRequests sums apiserver_request_total for resource="leases" in
// kube-system by verb. This includes the API server renewing its own
// identity Lease (one update per 10 s); the metric does not tell them apart.
func leaseRequests(ctx context.Context, l *lab.Lab) (map[string]float64, error) {
	return requestTotals(ctx, l, func(line string) []string {
		if !strings.Contains(line, `resource="leases"`) || strings.Contains(line, `scope="cluster"`) {
			return nil
		}
		i := strings.Index(line, `verb="`)
		if i < 0 {
			return nil
		}
		verb := line[i+6:]
		return []string{verb[:strings.Index(verb, `"`)]}
	})
}

// window measures, over d, the requests counted by count (per second) and
// each daemon's CPU (% of one core), and its resident memory (MiB) at the end.
func window(ctx context.Context, b *testing.B, l *lab.Lab, procs map[string]*lab.Proc, d time.Duration,
	count func(context.Context, *lab.Lab) (map[string]float64, error)) (rates map[string]float64, rssMiB, cpuPct map[string]float64) {
	before, err := count(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := map[string]time.Duration{}
	for n, p := range procs {
		cpu0[n], _ = procCPU(p.Cmd.Process.Pid)
	}
	time.Sleep(d)
	after, err := count(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	rates, rssMiB, cpuPct = map[string]float64{}, map[string]float64{}, map[string]float64{}
	for k, v := range after {
		rates[k] = (v - before[k]) / d.Seconds()
	}
	for n, p := range procs {
		rss, _ := procRSS(p.Cmd.Process.Pid)
		cpu, _ := procCPU(p.Cmd.Process.Pid)
		rssMiB[n], cpuPct[n] = float64(rss)/(1<<20), 100*(cpu-cpu0[n]).Seconds()/d.Seconds()
	}
	return rates, rssMiB, cpuPct
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// procCPU is user+system CPU time of pid (clock ticks of 10 ms).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	st := string(b)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// benchSizes are the numbers of Services BenchmarkServices runs
// (VIPD_BENCH_SERVICES, default 100 and 1000).
func benchSizes() []int {
	sizes := []int{100, 1000}
	if v := os.Getenv("VIPD_BENCH_SERVICES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			if n, err := strconv.Atoi(f); err == nil && n > 0 {
				sizes = append(sizes, n)
			}
		}
	}
	if len(sizes) == 0 {
		sizes = []int{100, 1000}
	}
	return sizes
}

// BenchmarkServices measures, for N = 100 and N = 1000 LoadBalancer
// Services (pool-allocated, so each needs an allocation write, an owner
// annotation and a status write) on three nodes at the seed's settings, in
// vipd's single-holder mode, its spread mode and MetalLB v0.15.2's layer 2
// mode side by side: time from start to every VIP answered by exactly one
// node and every status set; VIPs per node; API requests per second in steady
// state (the API server's own apiserver_request_total, all resources), and
// each daemon's resident memory and CPU over VIPD_STEADY_SECONDS (default
// 30); then, asking the wire (ARP from the client host), SIGSTOP of a node
// for 10 s (time with two nodes answering one VIP, time until its VIPs are
// answered by other nodes) and its power loss (time until its VIPs are
// answered by other nodes). Spread mode also measures a planned move.
// VIPD_BENCH_SERVICES=100,1000 chooses the sizes, VIPD_BENCH_MODES=single,spread,metallb
// the systems, VIPD_BENCH_NODES=3 the nodes; VIPD_BENCH_LOG=<path> writes
// the Services Lease holder's log to <path>.<N>, and in spread mode every
// node's log right after the planned move to <path>.<N>.move.<node>;
// VIPD_BENCH_LOGLEVEL=debug runs vipd with that --log-level.
//
//	make bench-services
func BenchmarkServices(b *testing.B) {
	win := 30 * time.Second
	if n, err := strconv.Atoi(os.Getenv("VIPD_STEADY_SECONDS")); err == nil && n > 0 {
		win = time.Duration(n) * time.Second
	}
	nodes := 3
	if n, err := strconv.Atoi(os.Getenv("VIPD_BENCH_NODES")); err == nil && n > 0 {
		nodes = n
	}
	l := newLabWith(b, lab.Options{Nodes: nodes})
	if err := l.Apply(context.Background(), poolsRBAC); err != nil {
		b.Fatal(err)
	}
	sc := seedScenario(b, l)
	if lv := os.Getenv("VIPD_BENCH_LOGLEVEL"); lv != "" {
		base := sc.Container
		sc.Container = func(node string) (lab.Container, error) {
			c, err := base(node)
			c.Args = append(c.Args, "--log-level="+lv)
			return c, err
		}
	}
	ctx := context.Background()
	c := l.Admin
	// 2048 addresses from the benchmark range, away from the Service CIDR;
	// 12,288 when a size needs more (VIPD_BENCH_SERVICES=10000), and then a
	// second ServiceCIDR, since the lab's /20 has 4094 cluster IPs.
	pool := "198.18.64.0-198.18.71.255"
	if slices.Max(benchSizes()) > 2048 {
		pool = "198.18.64.0-198.18.111.255"
		extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"198.19.0.0/18"}}}
		if _, err := c.NetworkingV1().ServiceCIDRs().Create(ctx, extra, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: services.PoolsNamespace, Name: services.PoolsName},
		Data: map[string]string{"range-global": pool}}
	if _, err := c.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	// Node objects, as a cluster has: MetalLB announces only from nodes its
	// L2Advertisement selects among them. vipd does not need them.
	createNodes(b, l)
	if _, err := lab.VipdBinary(); err != nil { // built before the clock starts
		b.Fatal(err)
	}
	w, err := l.Wire()
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	var sb, cmp strings.Builder
	modes := []string{"single", "spread", "metallb"}
	if v := os.Getenv("VIPD_BENCH_MODES"); v != "" {
		modes = strings.Split(v, ",")
	}
	var m *metalLB
	figs := map[string]*[2]lab.Series{} // by system: convergence, writes to converge
	for _, mode := range modes {
		switch mode {
		case "spread":
			sc = withEnv(sc, "svc_election=true")
			fmt.Fprintf(&sb, "\nSpread mode (svc_election=true), the same Services, %d nodes; steady state over %s\n", nodes, win)
			fmt.Fprintf(&sb, "| Services | start → all VIPs up and all status set (s) | CPU to converge per node (s) | VIPs per node (min-max) | API requests/s in steady state (writes/s) | RSS per node (MiB) | CPU per node (%% of a core) |\n|---|---|---|---|---|---|---|\n")
		case "single":
			fmt.Fprintf(&sb, "\nLoadBalancer Services from the pool, %d nodes, seed settings; steady state over %s\n", nodes, win)
			fmt.Fprintf(&sb, "| Services | start → all VIPs up and all status set (s) | API requests/s in steady state (writes/s) | leader RSS (MiB) | follower RSS (MiB) | leader CPU (%% of a core) | follower CPU (%%) |\n|---|---|---|---|---|---|---|\n")
		case "metallb":
			m = newMetalLB(ctx, b, l, pool)
		default:
			b.Fatalf("VIPD_BENCH_MODES: unknown mode %q (single, spread, metallb)", mode)
		}
		benchServices(ctx, b, l, w, m, sc, mode, win, &sb, &cmp, figs)
	}
	fmt.Print(sb.String())
	if dir := lab.ImageDir(); dir != "" {
		servicesCharts(b, dir, nodes, modes, figs)
	}
	fmt.Printf("\nSide by side, %d nodes, the same Services; ARP answers seen from the client host; steady state over %s\n", nodes, win)
	fmt.Printf("| system | Services | start → all VIPs answered by one node, all status set (s) | CPU to converge per node (s) | VIPs per node (min-max) | API requests to converge (writes) | API requests/s in steady state (writes/s) | RSS per node (MiB) | CPU per node (%% of a core) | SIGSTOP 10 s of a node: time two nodes answered one of its VIPs (ms) | SIGSTOP: its VIPs answered by others (s) | power loss: its VIPs answered by others (s) |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n%s", cmp.String())
}

// benchServices runs the Services benchmark for one system: vipd's single or
// spread mode, or MetalLB (m).
func benchServices(ctx context.Context, b *testing.B, l *lab.Lab, w *lab.Wire, m *metalLB, sc lab.ScenarioOptions, mode string, win time.Duration, sb, cmp *strings.Builder, figs map[string]*[2]lab.Series) {
	c := l.Admin
	moves := &strings.Builder{}
	defer func() {
		if moves.Len() > 0 {
			fmt.Fprintf(sb, "\nSpread mode, planned moves (a node stopped with SIGTERM, then started again)\n")
			fmt.Fprintf(sb, "| Services | its VIPs | SIGTERM → all on other nodes (s) | longest time a VIP was on no node (ms, kernels' notifications) | longest time from its last ARP answer for one to the new owner's first (ms, the client asking every %s) | restart → even again (s) | VIPs moved back (ideal: its share) | other VIPs moved |\n|---|---|---|---|---|---|---|---|\n%s", moveAskEvery, moves.String())
		}
	}()
	system := map[string]string{"single": "vipd, one holder", "spread": "vipd, spread mode", "metallb": "MetalLB v0.15.2 L2"}[mode]
	fig := &[2]lab.Series{{Name: system, Peer: mode == "metallb"}, {Name: system, Peer: mode == "metallb"}}
	figs[mode] = fig
	for range b.N {
		sizes := benchSizes()
		for _, n := range sizes {
			ns := fmt.Sprintf("bench-%s-%d", mode, n)
			if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				name := fmt.Sprintf("s%04d", i)
				s := lbService(ns, name, port, func(s *corev1.Service) { s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false) })
				if _, err := c.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
					b.Fatalf("creating Service %d: %v", i, err)
				}
				if mode == "metallb" {
					// MetalLB announces only Services with a ready endpoint.
					es := endpointSlice(ns, name, l.Nodes[i%len(l.Nodes)].Name)
					if _, err := c.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
						b.Fatalf("creating EndpointSlice %d: %v", i, err)
					}
				}
			}
			leases := []string{svcLease}
			for _, h := range l.Nodes {
				leases = append(leases, services.HeartbeatName(h.Name))
			}
			for _, name := range leases {
				if err := c.CoordinationV1().Leases(leaseNS).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					b.Fatal(err)
				}
			}
			req0, err := apiRequests(ctx, l)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			var procs map[string]*lab.Proc
			up := func() (bool, string) { return servicesUp(ctx, l, ns, n) }
			if mode == "metallb" {
				procs, err = m.start()
				up = func() (bool, string) { return wireUp(ctx, l, w, ns, n) }
			} else {
				procs, err = l.StartDaemons(ctx, sc)
			}
			if err != nil {
				lab.KillAll(procs)
				b.Fatal(err)
			}
			var last string
			for {
				ok, why := up()
				if ok {
					break
				}
				if time.Since(start) > 5*time.Minute {
					lab.KillAll(procs)
					b.Fatalf("%s, N=%d: not converged in 5 min: %s (last: %s)", mode, n, why, last)
				}
				last = why
				time.Sleep(100 * time.Millisecond)
			}
			converge := time.Since(start)
			req1, err := apiRequests(ctx, l)
			if err != nil {
				b.Fatal(err)
			}
			// CPU each daemon spent from its start to convergence (the
			// issue's item 7: it should grow about linearly with N).
			toConverge := map[string]float64{}
			for name, p := range procs {
				d, _ := procCPU(p.Cmd.Process.Pid)
				toConverge[name] = d.Seconds()
			}
			ips, err := statusIPs(ctx, l, ns)
			if err != nil {
				b.Fatal(err)
			}
			perNode := map[string]int{}
			for _, node := range wireOwners(b, w, ips) {
				perNode[node]++
			}
			// Steady state: 2 Lease writes per second, and a heartbeat per
			// node in spread mode.
			quiet := 5.0
			if mode != "single" {
				quiet = float64(len(l.Nodes)) + 5
			}
			settled := waitSettled(ctx, b, l, quiet)
			rates, rss, cpu := window(ctx, b, l, procs, win, apiRequests)
			holder, _ := l.Holder(ctx, leaseNS, svcLease)
			if mode == "spread" {
				spreadMoves(ctx, b, l, w, sc, procs, holder, n, moves)
			}
			if path := os.Getenv("VIPD_BENCH_LOG"); path != "" && procs[holder] != nil {
				_ = os.WriteFile(fmt.Sprintf("%s.%d", path, n), []byte(procs[holder].Output()), 0o644)
			}
			stop, loss := benchFaults(ctx, b, l, w, mode, procs, ips)
			lab.KillAll(procs)
			note("%s, N=%d: writes settled (the Events' backlog posted) %s after convergence; CPU to converge: %v s (Services Lease holder %q)", mode, n, settled.Round(time.Second), toConverge, holder)
			if p := procs["controller"]; p != nil {
				note("MetalLB's controller: %.1f MiB, %.2f %% of a core in steady state, %.2f s of CPU to converge", rss["controller"], cpu["controller"], toConverge["controller"])
			}
			var all, allRSS, allCPU, conv, fRSS, fCPU []float64
			for name := range nodeProcs(procs) {
				all, allRSS, allCPU = append(all, float64(perNode[name])), append(allRSS, rss[name]), append(allCPU, cpu[name])
				conv = append(conv, toConverge[name])
				if name != holder {
					fRSS, fCPU = append(fRSS, rss[name]), append(fCPU, cpu[name])
				}
			}
			switch mode {
			case "spread":
				fmt.Fprintf(sb, "| %d | %.1f | %.2f-%.2f | %.0f-%.0f | %.2f (%.2f) | %.1f-%.1f | %.2f-%.2f |\n", n, converge.Seconds(), slices.Min(conv), slices.Max(conv), slices.Min(all), slices.Max(all),
					rates["all"], rates["write"], slices.Min(allRSS), slices.Max(allRSS), slices.Min(allCPU), slices.Max(allCPU))
			case "single":
				fmt.Fprintf(sb, "| %d | %.1f | %.2f (%.2f) | %.1f | %.1f-%.1f | %.2f | %.2f-%.2f |\n", n, converge.Seconds(), rates["all"], rates["write"],
					rss[holder], slices.Min(fRSS), slices.Max(fRSS), cpu[holder], slices.Min(fCPU), slices.Max(fCPU))
			}
			extra := ""
			if p := procs["controller"]; p != nil {
				extra = fmt.Sprintf(" (+ controller %.1f MiB, %.2f %%)", rss["controller"], cpu["controller"])
			}
			fmt.Fprintf(cmp, "| %s | %d | %.1f | %.2f-%.2f | %.0f-%.0f | %.0f (%.0f) | %.2f (%.2f) | %.1f-%.1f%s | %.2f-%.2f | %d (%d of %d VIPs) | %s | %s |\n", system, n, converge.Seconds(),
				slices.Min(conv), slices.Max(conv), slices.Min(all), slices.Max(all), req1["all"]-req0["all"], req1["write"]-req0["write"], rates["all"], rates["write"],
				slices.Min(allRSS), slices.Max(allRSS), extra, slices.Min(allCPU), slices.Max(allCPU),
				stop.twoOwners.Milliseconds(), stop.twoVIPs, stop.vips, seconds(stop.moved), seconds(loss.moved))
			b.ReportMetric(converge.Seconds(), fmt.Sprintf("%s-converge-%d-s", mode, n))
			fig[0].X, fig[0].Y = append(fig[0].X, float64(n)), append(fig[0].Y, converge.Seconds())
			fig[1].X, fig[1].Y = append(fig[1].X, float64(n)), append(fig[1].Y, req1["write"]-req0["write"])
			for i := range n {
				if err := c.CoreV1().Services(ns).Delete(ctx, fmt.Sprintf("s%04d", i), metav1.DeleteOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			time.Sleep(4 * time.Second) // the killed daemons' VIPs expire
		}
	}
}

// servicesCharts draws convergence time and API writes to converge against
// the number of Services, a line per system (docs/img/services-*.svg).
func servicesCharts(b *testing.B, dir string, nodes int, modes []string, figs map[string]*[2]lab.Series) {
	var conv, writes []lab.Series
	for _, mode := range modes {
		conv, writes = append(conv, figs[mode][0]), append(writes, figs[mode][1])
	}
	caption := lab.Caption("make bench-services", nodes)
	if err := lab.SeriesSVG(filepath.Join(dir, "services-converge.svg"), "LoadBalancer Services: start until every VIP answers from one node and every status is set",
		caption, "Services", "seconds", true, conv); err != nil {
		b.Error(err)
	}
	if err := lab.SeriesSVG(filepath.Join(dir, "services-writes.svg"), "API writes until converged",
		caption, "Services", "writes", true, writes); err != nil {
		b.Error(err)
	}
}

// seconds prints d in seconds, or "not all" for -1.
func seconds(d time.Duration) string {
	if d < 0 {
		return "not all"
	}
	return fmt.Sprintf("%.2f", d.Seconds())
}

// benchFaults stops one node for 10 s (SIGSTOP, SIGCONT), waits until it
// answers for its share again, then cuts its power, and reports what the
// wire showed. The node is the Services Lease holder in the single mode (it
// holds every VIP), else one that is not.
func benchFaults(ctx context.Context, b *testing.B, l *lab.Lab, w *lab.Wire, mode string, procs map[string]*lab.Proc, ips []netip.Addr) (stop, loss wireFaultResult) {
	victim := func() string {
		holder, _ := l.Holder(ctx, leaseNS, svcLease)
		for _, h := range l.Nodes {
			if (mode == "single") == (h.Name == holder) {
				return h.Name
			}
		}
		b.Fatalf("no node to fail (holder %q)", holder)
		return ""
	}
	v := victim()
	stop = wireFault(b, w, ips, v, sigstop(procs[v]), 30*time.Second)
	note("%s: SIGSTOP 10 s of %s: %s", mode, v, stop)
	if mode == "single" {
		v = victim()
	}
	// The node answers for its share again (spread mode: after settling).
	want := stop.vips
	if mode == "single" {
		want = len(ips)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		got := 0
		for _, node := range wireOwners(b, w, ips) {
			if node == v {
				got++
			}
		}
		if got >= want || (mode == "spread" && got >= len(ips)/len(l.Nodes)-1) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s: %s answers for %d VIPs a minute after SIGCONT, want %d", mode, v, got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	loss = wireFault(b, w, ips, v, powerLoss(procs[v]), 0)
	note("%s: power loss of %s: %s", mode, v, loss)
	if err := l.Node(v).IPCmd("link", "set", "eth0", "up"); err != nil {
		b.Fatal(err)
	}
	return stop, loss
}

// spreadMoves stops a node that is not the allocator with SIGTERM, then
// starts it again, and prints what moved: how long its VIPs took to be on
// other nodes, the longest time one was on no node (from the kernels'
// address notifications: the node's removal to the new owner's addition),
// the longest time from the node's last ARP answer for one to the new
// owner's first (the client asks every moveAskEvery), how long until the
// split was even again (the settling time, 2 × lease duration, included)
// and how many VIPs moved back (its share, at best) or moved otherwise.
// The owners are also sampled every 100 ms, and an address on two nodes
// fails the run. Both watches are light, so that the figures are not
// those of a machine busy measuring (sampling the owners back to back, as
// before, kept most of a core busy).
func spreadMoves(ctx context.Context, b *testing.B, l *lab.Lab, w *lab.Wire, sc lab.ScenarioOptions, procs map[string]*lab.Proc, holder string, n int, out *strings.Builder) {
	var victim *lab.Host
	for _, h := range l.Nodes {
		if h.Name != holder {
			victim = h
			break
		}
	}
	owner := func() map[netip.Addr]string {
		o, err := l.AllOwners()
		for try := 0; err != nil && try < 10; try++ {
			o, err = l.AllOwners() // a dump interrupted by a change (NLM_F_DUMP_INTR)
		}
		if err != nil {
			b.Fatal(err)
		}
		m := map[netip.Addr]string{}
		for ip, nodes := range o {
			if len(nodes) > 1 {
				// The dumps run one node after another: a move from an
				// earlier node to a later one between them looks like two
				// owners. Ask those nodes again, in the other order.
				var still []string
				for i := len(nodes) - 1; i >= 0; i-- {
					if present, up, err := l.Node(nodes[i]).HasAddr(ip); err == nil && present && up {
						still = append(still, nodes[i])
					}
				}
				if len(still) > 1 {
					b.Fatalf("%s on %v", ip, still)
				}
				note("%s seen on %v in one sample of the nodes one after another, then on %v only: moved between the reads", ip, nodes, still)
				nodes = still
			}
			if len(nodes) == 1 && ip != l.VIP {
				m[ip] = nodes[0]
			}
		}
		return m
	}
	before := owner()
	var mine []netip.Addr
	for ip, node := range before {
		if node == victim.Name {
			mine = append(mine, ip)
		}
	}
	aw, err := l.WatchAddrs()
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	onWire := make(chan wireMove, 1)
	go func() { onWire <- watchMove(w, mine, victim.Name, start, 30*time.Second) }()
	time.Sleep(200 * time.Millisecond) // the wire's first rounds see the victim answer
	start = time.Now()
	if err := procs[victim.Name].Signal(syscall.SIGTERM); err != nil {
		b.Fatal(err)
	}
	for moved := 0; moved < len(mine) && time.Since(start) < 30*time.Second; {
		time.Sleep(100 * time.Millisecond)
		now := owner()
		moved = 0
		for _, ip := range mine {
			if node := now[ip]; node != "" && node != victim.Name {
				moved++
			}
		}
	}
	events, err := aw.Stop()
	if err != nil {
		b.Fatalf("watching the nodes' addresses: %v", err)
	}
	drain, gap := kernelMove(b, events, mine, victim.Name, start)
	<-procs[victim.Name].Done()
	seen := <-onWire
	if path := os.Getenv("VIPD_BENCH_LOG"); path != "" {
		for name, p := range procs {
			_ = os.WriteFile(fmt.Sprintf("%s.%d.move.%s", path, n, name), []byte(p.Output()), 0o644)
		}
		note("SIGTERM of %s at %s", victim.Name, start.UTC().Format("15:04:05.000"))
	}
	note("spread, N=%d: on the wire (ARP for %s's %d VIPs from the client every ~%s): longest time from its last answer for one to another node's first %s, all answered by others %s after SIGTERM; %d never seen moved",
		n, victim.Name, len(mine), seen.round.Round(time.Millisecond), seen.gap.Round(time.Millisecond), seen.moved.Sub(start).Round(time.Millisecond), seen.missing)
	after := owner()
	restart := time.Now()
	runOn(b, l, sc, procs, victim)
	// Even: no node above ceil(n / nodes), so the restarted one holds at
	// least what the others leave.
	bound := (n + len(l.Nodes) - 1) / len(l.Nodes)
	share := n - (len(l.Nodes)-1)*bound
	var final map[netip.Addr]string
	for {
		final = owner()
		counts := map[string]int{}
		for _, node := range final {
			counts[node]++
		}
		if counts[victim.Name] >= share {
			break
		}
		if time.Since(restart) > time.Minute {
			b.Fatalf("%s holds %d VIPs a minute after it started again; want %d", victim.Name, counts[victim.Name], share)
		}
		time.Sleep(100 * time.Millisecond)
	}
	even := time.Since(restart)
	movedBack, other := 0, 0
	for ip, node := range final {
		switch {
		case node == after[ip]:
		case node == victim.Name:
			movedBack++
		default:
			other++
		}
	}
	note("spread, N=%d: %s's %d VIPs on other nodes %s after SIGTERM (longest on no node %s); even again %s after its restart, %d moved back, %d others moved",
		n, victim.Name, len(mine), drain.Round(time.Millisecond), gap.Round(time.Millisecond), even.Round(100*time.Millisecond), movedBack, other)
	fmt.Fprintf(out, "| %d | %d | %.2f | %.0f | %.0f | %.1f | %d | %d |\n", n, len(mine), drain.Seconds(), float64(gap.Milliseconds()), float64(seen.gap.Milliseconds()), even.Seconds(), movedBack, other)
}

// kernelMove reads the address notifications of a planned move: for each
// of addrs, when victim's kernel removed it and another node's added it.
// It returns the time from start until the last was added elsewhere, and
// the longest time one was on no node. Each node's notifications are read
// by a thread of its own, and on a saturated machine one may read a burst
// late: an addition read less than readLag before the removal counts as no
// gap (and is noted); one read earlier than that fails the run, as an
// address on two nodes.
func kernelMove(b *testing.B, events []lab.AddrEvent, addrs []netip.Addr, victim string, start time.Time) (drain, gap time.Duration) {
	const readLag = 20 * time.Millisecond
	removed, added := map[netip.Addr]lab.AddrEvent{}, map[netip.Addr]lab.AddrEvent{}
	for _, e := range events {
		_, r := removed[e.IP]
		_, a := added[e.IP]
		switch {
		case e.Node == victim && !e.Added && !r:
			removed[e.IP] = e
		case e.Node != victim && e.Added && !a:
			added[e.IP] = e
		}
	}
	inverted, most, which := 0, time.Duration(0), []string(nil)
	for _, ip := range addrs {
		r, rok := removed[ip]
		a, aok := added[ip]
		switch {
		case !aok:
			b.Fatalf("%s: no other node added it after %s's SIGTERM (the kernels' notifications)", ip, victim)
		case !rok:
			b.Fatalf("%s: added on %s at +%s, but %s's kernel never said it removed it", ip, a.Node, a.At.Sub(start), victim)
		case r.At.Sub(a.At) > readLag:
			b.Fatalf("%s on two nodes: added on %s at +%s, removed from %s at +%s (as read)", ip, a.Node, a.At.Sub(start), victim, r.At.Sub(start))
		case a.At.Before(r.At):
			inverted, most = inverted+1, max(most, r.At.Sub(a.At))
			which = append(which, fmt.Sprintf("%s (to %s, %s)", ip, a.Node, r.At.Sub(a.At).Round(100*time.Microsecond)))
		}
		drain, gap = max(drain, a.At.Sub(start)), max(gap, a.At.Sub(r.At))
	}
	if inverted > 0 {
		note("%d of %s's VIPs: the new owner's addition read up to %s before %s's removal (each node's notifications read by a thread of its own; within %s, counted as no gap): %s",
			inverted, victim, most.Round(100*time.Microsecond), victim, readLag, strings.Join(which[:min(5, len(which))], ", "))
	}
	return drain, gap
}

// moveAskEvery is how often the client asks ARP for each moving VIP.
const moveAskEvery = 20 * time.Millisecond

// wireMove is what the client saw of a planned move on the wire.
type wireMove struct {
	gap, round time.Duration
	moved      time.Time // when the last VIP was first answered by another node
	missing    int
}

// watchMove asks ARP for addrs from the client every moveAskEvery until
// every one is answered by a node other than victim (or limit after
// start passes). Over the answers as the client read them, it returns the
// longest time from victim's last answer for one to another node's first,
// and when the last was first answered by another: what a client that
// keeps asking sees, to within a round.
func watchMove(w *lab.Wire, addrs []netip.Addr, victim string, start time.Time, limit time.Duration) wireMove {
	lastVictim, firstOther := map[netip.Addr]time.Time{}, map[netip.Addr]time.Time{}
	var r wireMove
	rounds, begin := 0, time.Now()
	w.Take()
	read := func() {
		for _, a := range w.Take() {
			_, moved := firstOther[a.IP]
			switch {
			case moved:
			case a.Node == victim:
				lastVictim[a.IP] = a.At
			default:
				firstOther[a.IP] = a.At
			}
		}
	}
	for len(firstOther) < len(addrs) && time.Since(start) < limit {
		t0 := time.Now()
		if err := w.Send(addrs); err != nil {
			break
		}
		rounds++
		read()
		time.Sleep(moveAskEvery - time.Since(t0))
	}
	time.Sleep(moveAskEvery)
	read()
	if rounds > 0 {
		r.round = time.Since(begin) / time.Duration(rounds)
	}
	for _, ip := range addrs {
		t, ok := firstOther[ip]
		if !ok {
			r.missing++
			continue
		}
		if t.After(r.moved) {
			r.moved = t
		}
		if v, ok := lastVictim[ip]; ok {
			r.gap = max(r.gap, t.Sub(v))
		}
	}
	return r
}

// waitSettled waits, up to 2 minutes, until the API server sees fewer than
// quiet writes per second over 2 s (vipd's Events are posted behind the writes
// they describe), and returns how long that took.
func waitSettled(ctx context.Context, b *testing.B, l *lab.Lab, quiet float64) time.Duration {
	start := time.Now()
	for time.Since(start) < 2*time.Minute {
		r0, err := apiRequests(ctx, l)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		r1, err := apiRequests(ctx, l)
		if err != nil {
			b.Fatal(err)
		}
		if (r1["write"]-r0["write"])/2 < quiet {
			break
		}
	}
	time.Sleep(2 * time.Second) // and past the last takeover bursts
	return time.Since(start)
}

// servicesUp reports whether all n Services in ns have their status set and
// their VIP on exactly one node, the one the owner annotation names.
func servicesUp(ctx context.Context, l *lab.Lab, ns string, n int) (bool, string) {
	list, err := l.Admin.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return false, err.Error()
	}
	owners, err := l.AllOwners()
	if err != nil {
		return false, err.Error()
	}
	done := 0
	for _, s := range list.Items {
		in := s.Status.LoadBalancer.Ingress
		if len(in) != 1 {
			continue
		}
		o := owners[netip.MustParseAddr(in[0].IP)]
		if len(o) == 1 && o[0] == s.Annotations[services.AnnotationHost] {
			done++
		}
	}
	return done == n, fmt.Sprintf("%d of %d up", done, n)
}

// apiRequests sums the API server's apiserver_request_total: "all", and
// "write" for the verbs that change something.
func apiRequests(ctx context.Context, l *lab.Lab) (map[string]float64, error) {
	return requestTotals(ctx, l, func(line string) []string {
		for _, w := range []string{`verb="POST"`, `verb="PUT"`, `verb="PATCH"`, `verb="DELETE"`} {
			if strings.Contains(line, w) {
				return []string{"all", "write"}
			}
		}
		return []string{"all"}
	})
}

// note prints a detail of a benchmark run at once (go test cuts a
// benchmark's log after a few lines).
func note(format string, args ...any) {
	fmt.Printf("    "+format+"\n", args...)
}
