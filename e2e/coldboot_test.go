package e2e

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vipd/vipd/internal/kubeapi"
	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// klogLine is a line in klog's own format (client-go logging by itself).
var klogLine = regexp.MustCompile(`(?m)^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ `)

// readyz is node h's /readyz (prometheus_server=:2112): nil when ok.
func readyz(l *lab.Lab, h *lab.Host) error {
	resp, err := lab.HTTPClient(l.Client, 2*time.Second).Get("http://" + h.IP.String() + ":2112/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("/readyz on %s: %d %s", h.Name, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return nil
}

// apiGates is one switchable path to the API server per node: while it is
// off, nothing listens at 127.0.0.1:16443 in the node (connection
// refused); switching it off resets every connection, as an API server
// that stops does.
type apiGates struct {
	l    *lab.Lab
	stop map[string]func()
}

const gatePort = 16443

func (g *apiGates) on(t *testing.T) {
	t.Helper()
	for _, n := range g.l.Nodes {
		if g.stop[n.Name] != nil {
			continue
		}
		stop, err := g.l.LagAPI(n, gatePort, 0)
		if err != nil {
			t.Fatal(err)
		}
		g.stop[n.Name] = stop
	}
}

func (g *apiGates) off() {
	for name, stop := range g.stop {
		stop()
		delete(g.stop, name)
	}
}

// TestStartOrders (issue 25), in both Service modes: the seed's RBAC (no
// ConfigMaps), svc_enable,
// the control-plane VIP and 10 Service VIPs. vipd starts while its API
// server refuses connections; the API server answers 3 s later; it is
// then away for 30 s while vipd runs; ConfigMaps are granted (a Service
// waiting for a pool address gets one) and revoked again. After each
// change every VIP is on one node within lease duration + 2 s and /readyz
// is ok; never an address on two nodes (both read orders, every 20 ms);
// no line in klog's format in vipd's output.
func TestStartOrders(t *testing.T) {
	t.Run("single holder", func(t *testing.T) { startOrders(t, false) })
	t.Run("spread", func(t *testing.T) { startOrders(t, true) })
}

func startOrders(t *testing.T, spread bool) {
	l := newLab(t)
	sc := seedScenario(t, l)
	ctx := context.Background()
	c := l.Admin
	if spread {
		sc = withEnv(sc, "svc_election=true")
		createNodes(t, l)
	}
	var ips []netip.Addr
	for i := range 10 {
		ip := fmt.Sprintf("198.51.100.%d", 60+i)
		create(t, c, lbService("default", fmt.Sprintf("s-%d", i), port, withIPs(ip)))
		ips = append(ips, netip.MustParseAddr(ip))
	}
	setPools(t, c, map[string]string{"cidr-global": "198.51.100.80/29"})
	create(t, c, lbService("default", "pooled", port))
	all := append(slices.Clone(ips), l.VIP)

	gates := &apiGates{l: l, stop: map[string]func(){}}
	t.Cleanup(gates.off)
	procs := runOnEveryNode(t, l, sc, func(*lab.Host) []string { return lab.APIEnv(gatePort) })
	s := sampleBothOrders(l)
	upAgain := func(what string, at time.Time, want []netip.Addr) {
		t.Helper()
		poll(t, 20*time.Millisecond, leaseDuration+2*time.Second, what+": every VIP on one node and /readyz ok", func() error {
			if _, err := s.owners(want); err != nil {
				return err
			}
			for _, n := range l.Nodes {
				if err := readyz(l, n); err != nil {
					return err
				}
			}
			return nil
		})
		t.Logf("%s: every VIP on one node and /readyz ok %s after it", what, time.Since(at).Round(10*time.Millisecond))
		s.check(t, what)
	}

	// vipd first; the API server 3 s later.
	time.Sleep(3 * time.Second)
	for _, n := range l.Nodes {
		err := readyz(l, n)
		if err == nil || !strings.Contains(err.Error(), "waiting for the API server at https://127.0.0.1:16443 (connection refused) for ") {
			t.Errorf("/readyz on %s while the API server refuses: %v", n.Name, err)
		}
	}
	gates.on(t)
	upAgain("API server answering 3 s after vipd started", time.Now(), all)

	// The API server away for 30 s while vipd runs (past client-go's
	// longest back-off).
	gates.off()
	time.Sleep(30 * time.Second)
	gates.on(t)
	upAgain("API server back after 30 s away", time.Now(), all)

	// ConfigMaps granted: the pooled Service gets its address.
	if err := l.Apply(ctx, poolsRBAC); err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	var pooled netip.Addr
	poll(t, 20*time.Millisecond, leaseDuration+2*time.Second, "the pooled Service's address once ConfigMaps are allowed", func() error {
		svc, err := c.CoreV1().Services("default").Get(ctx, "pooled", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(svc.Status.LoadBalancer.Ingress) == 0 {
			return fmt.Errorf("no ingress yet (annotation %q)", svc.Annotations[services.AnnotationIPs])
		}
		pooled, err = netip.ParseAddr(svc.Status.LoadBalancer.Ingress[0].IP)
		return err
	})
	upAgain("ConfigMaps allowed", granted, append(slices.Clone(all), pooled))
	saidOn := func(what string, times int) func() error {
		return func() error {
			for name, p := range procs {
				if n := strings.Count(p.Output(), what); n != times {
					var said []string
					for _, line := range strings.Split(p.Output(), "\n") {
						if strings.Contains(line, "ConfigMap") {
							said = append(said, line[:min(len(line), 160)])
						}
					}
					return fmt.Errorf("vipd on %s said %q %d times; what it said of ConfigMaps:\n%s", name, what, n, strings.Join(said, "\n"))
				}
			}
			return nil
		}
	}
	eventually(t, 2*kubeapi.ForbiddenRetry, "every vipd reading the pools", saidOn("ConfigMap kube-system/kubevip can be read now", 1))

	// ConfigMaps revoked: seen at the next list (after a reconnect here);
	// every VIP stays, the pooled one too (its address was written).
	if err := c.RbacV1().ClusterRoleBindings().Delete(ctx, "vipd-pools-events", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the API server's RBAC cache
	gates.off()
	time.Sleep(time.Second)
	gates.on(t)
	upAgain("ConfigMaps revoked (and the API server away for 1 s)", time.Now(), append(slices.Clone(all), pooled))
	eventually(t, 10*time.Second, "every vipd saying ConfigMaps are forbidden again", saidOn("cannot read ConfigMap kube-system/kubevip (forbidden by RBAC)", 2))
	if _, err := s.owners(append(slices.Clone(all), pooled)); err != nil {
		t.Errorf("after ConfigMaps were revoked: %v", err)
	}
	s.end(t)
	for _, line := range strings.Split(procs[l.Nodes[0].Name].Output(), "\n") {
		if strings.Contains(line, "component=kubeapi") {
			t.Logf("vipd on %s: %s", l.Nodes[0].Name, line)
		}
	}
	for name, p := range procs {
		if m := klogLine.FindAllString(p.Output(), 3); len(m) > 0 {
			t.Errorf("vipd on %s printed lines in klog's format: %q", name, m)
		}
	}
}
