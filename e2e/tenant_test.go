package e2e

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
)

// sumMetric adds up every sample of metric in a /metrics body.
func sumMetric(body, metric string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, metric+"{") || strings.HasPrefix(line, metric+" ") {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

// TestServicesTenantSafe: a tenant's Service cannot take an address that
// belongs to someone else (S7). The nodes are registered as kubelets would
// register them, and every node has a route through the gateway
// 198.51.100.1. Services asking for the API server's address, each node's
// address, the subnet's network and broadcast addresses and the gateway get
// an AddressReserved Event naming whose it is, no status, and no node ever
// has the address (sampled every 50 ms for 10 s); meanwhile the
// control-plane VIP never moves and no Lease renewal fails; a Service with
// a free address works. All that without pools (as with the seed's
// ClusterRole). Then, with pools, an address in namespace team-a's
// dedicated pool is refused in team-b and works in team-a, and with
// svc_pools_only off an address outside every pool works.
func TestServicesTenantSafe(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	c := l.Admin
	for i, n := range l.Nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"node-role.kubernetes.io/control-plane": "true"}},
			Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: lab.NodeAddr(i).String()}, {Type: corev1.NodeHostName, Address: n.Name}}}}
		if _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.IPCmd("route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	refused := map[string]string{
		"198.51.100.2":   "the API server's address",
		"198.51.100.0":   "the network address of 198.51.100.0/24",
		"198.51.100.255": "the broadcast address of 198.51.100.0/24",
		"198.51.100.1":   "the gateway of interface eth0",
	}
	for i, n := range l.Nodes {
		refused[lab.NodeAddr(i).String()] = "node " + n.Name + "'s address (InternalIP)"
	}
	name := func(ip string) string { return "ask-" + strings.ReplaceAll(ip, ".", "-") }
	for ip := range refused {
		create(t, c, lbService("default", name(ip), port, withIPs(ip)))
	}
	create(t, c, lbService("default", "free", port, withIPs("198.51.100.170")))

	// The API server's endpoints, as its endpoint reconciler publishes them
	// in a cluster (the lab runs kube-apiserver with
	// --endpoint-reconciler-type=none, so the test writes them).
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "kubernetes", Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{lab.CPAddr.String()}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(6443)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startDaemons(t, l, sc)
	owner, err := l.WaitOwner(ctx, sc, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cp := l.Observe(l.VIP, port, 50*time.Millisecond, 0)
	eventually(t, 30*time.Second, "the free address served", func() error {
		_, err := converged(ctx, l, []string{"default/free"}, map[string]string{"default/free": "198.51.100.170"})
		return err
	})
	// Sample every node for 10 s: none of the refused addresses, anywhere.
	seen := map[string][]string{}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		o, err := l.AllOwners()
		if err != nil {
			t.Fatal(err)
		}
		for ip := range refused {
			if nodes := o[netip.MustParseAddr(ip)]; len(nodes) > 0 {
				seen[ip] = nodes
			}
		}
	}
	for ip, nodes := range seen {
		t.Errorf("%s (%s) was put on %v", ip, refused[ip], nodes)
	}
	for ip, who := range refused {
		msg, err := eventFor(ctx, c, "default", name(ip), "AddressReserved")
		if err != nil || !strings.Contains(msg, who) {
			t.Errorf("%s: AddressReserved Event %q (%v), want one naming %q", ip, msg, err, who)
		}
		s, err := c.CoreV1().Services("default").Get(ctx, name(ip), metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s: status %v (%v), want none", ip, s.Status.LoadBalancer.Ingress, err)
		}
	}

	// Pools now: team-a's dedicated range is only for team-a.
	setPools(t, c, map[string]string{"range-team-a": "198.51.100.180-198.51.100.189", "range-global": "198.51.100.170-198.51.100.179,198.51.100.190-198.51.100.199"})
	for _, ns := range []string{"team-a", "team-b"} {
		ensureNamespace(t, c, ns)
	}
	create(t, c, lbService("team-b", "steal", port, withIPs("198.51.100.185")))
	create(t, c, lbService("team-a", "own", port, withIPs("198.51.100.185")))
	// svc_pools_only is off (kube-vip's behaviour): an address outside
	// every pool is served; TestServices runs with it on.
	create(t, c, lbService("team-b", "outside", port, withIPs("198.51.100.160")))
	eventually(t, 30*time.Second, "team-a's own pool address and the one outside the pools served", func() error {
		_, err := converged(ctx, l, []string{"team-a/own", "team-b/outside"}, map[string]string{"team-a/own": "198.51.100.185", "team-b/outside": "198.51.100.160"})
		return err
	})
	if msg, err := eventFor(ctx, c, "team-b", "steal", "AddressInOtherNamespacePool"); err != nil || !strings.Contains(msg, "namespace team-a") {
		t.Errorf("team-b asking for team-a's pool address: Event %q (%v)", msg, err)
	}
	if s, err := c.CoreV1().Services("team-b").Get(ctx, "steal", metav1.GetOptions{}); err != nil || len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("team-b/steal: status %v (%v), want none", s.Status.LoadBalancer.Ingress, err)
	}
	rep := cp.Stop()
	if seq := rep.OwnerChanges(); len(seq) != 1 || seq[0] != owner || rep.MaxOwners() != 1 {
		t.Errorf("the control-plane VIP moved: %s", rep.Summary(time.Now()))
	}
	hc := lab.HTTPClient(l.Client, 2*time.Second)
	for _, n := range l.Nodes {
		resp, err := hc.Get("http://" + n.IP.String() + ":2112/metrics")
		if err != nil {
			t.Fatalf("metrics of %s: %v", n.Name, err)
		}
		if f := sumMetric(readAll(resp), "vipd_renew_failures_total"); f != 0 {
			t.Errorf("%s: %v failed Lease renewals", n.Name, f)
		}
	}
}
