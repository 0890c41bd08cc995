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

// refusal is what a Service that asks for someone else's address gets:
// an Event with reason, whose message names whose the address is.
type refusal struct{ reason, whose string }

// tenantFamily is one address family's half of the tenant-safety checks.
type tenantFamily struct {
	refused map[string]refusal
	// conflict is the client's address: it answers on the wire.
	conflict string
	free     string
	// pools for the second phase; steal is in team-a's pool, outside in none.
	pools         map[string]string
	steal, global string
	outside       string
}

// TestServicesTenantSafe: a tenant's Service cannot take an address that
// belongs to someone else (S7). The nodes are registered as kubelets would
// register them, and every node has a route through the gateway
// 198.51.100.1. Services asking for the API server's address, each node's
// address, the subnet's network and broadcast addresses and the gateway get
// an AddressReserved Event naming whose it is; one asking for the client's
// address, which answers on the wire, gets AddressConflict naming the
// client's MAC. None gets a status, and no node ever has any of these
// addresses (sampled every 50 ms for 10 s); meanwhile the control-plane VIP
// never moves and no Lease renewal fails; a Service with a free address
// works. All that without pools (as with the seed's ClusterRole). Then,
// with pools, an address in namespace team-a's dedicated pool is refused in
// team-b and works in team-a, and with svc_pools_only off an address
// outside every pool works.
func TestServicesTenantSafe(t *testing.T) {
	l, sc := servicesLab(t)
	refused := map[string]refusal{
		"198.51.100.2":   {"AddressReserved", "the API server's address"},
		"198.51.100.0":   {"AddressReserved", "the network address of 198.51.100.0/24"},
		"198.51.100.255": {"AddressReserved", "the broadcast address of 198.51.100.0/24"},
		"198.51.100.1":   {"AddressReserved", "the gateway of interface eth0"},
	}
	for i, n := range l.Nodes {
		refused[lab.NodeAddr(i).String()] = refusal{"AddressReserved", "node " + n.Name + "'s address (InternalIP)"}
	}
	tenantSafe(t, l, sc, tenantFamily{
		refused: refused, conflict: lab.ClientAddr.String(), free: "198.51.100.170",
		pools: map[string]string{"range-team-a": "198.51.100.180-198.51.100.189", "range-global": "198.51.100.170-198.51.100.179,198.51.100.190-198.51.100.199"},
		steal: "198.51.100.185", global: "198.51.100.175", outside: "198.51.100.160",
	})
}

// TestServicesTenantSafeIPv6 is the same for IPv6 addresses: the nodes'
// (2001:db8::11-13), the API server's, the subnet-router anycast address of
// 2001:db8::/64, the gateway 2001:db8::1, link-local and multicast
// addresses; the client's 2001:db8::100 answers neighbor solicitations.
func TestServicesTenantSafeIPv6(t *testing.T) {
	l, sc := servicesLabWith(t, lab.Options{Nodes: 3, IPv6: true})
	refused := map[string]refusal{
		"2001:db8::2": {"AddressReserved", "the API server's address"},
		"2001:db8::":  {"AddressReserved", "2001:db8::/64"},
		"2001:db8::1": {"AddressReserved", "the gateway of interface eth0"},
		"fe80::1":     {"InvalidAddress", "not a unicast address a node can own"},
		"ff02::1":     {"InvalidAddress", "not a unicast address a node can own"},
	}
	for _, n := range l.Nodes {
		refused[n.IP6.String()] = refusal{"AddressReserved", "node " + n.Name + "'s address (InternalIP)"}
	}
	tenantSafe(t, l, sc, tenantFamily{
		refused: refused, conflict: "2001:db8::100", free: "2001:db8::170",
		pools: map[string]string{"range-team-a": "2001:db8::180-2001:db8::189", "range-global": "2001:db8::170-2001:db8::179"},
		steal: "2001:db8::185", global: "2001:db8::175", outside: "2001:db8::160",
	})
}

func tenantSafe(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, f tenantFamily) {
	t.Helper()
	ctx := context.Background()
	c := l.Admin
	for i, n := range l.Nodes {
		addrs := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: lab.NodeAddr(i).String()}}
		if n.IP6.IsValid() {
			addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.IP6.String()})
			if err := n.IPCmd("-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8::1", "dev", "eth0"); err != nil {
				t.Fatal(err)
			}
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: map[string]string{"node-role.kubernetes.io/control-plane": "true"}},
			Status: corev1.NodeStatus{Addresses: append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: n.Name})}}
		if _, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := n.IPCmd("route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	name := func(ip string) string {
		return "ask-" + strings.Trim(strings.NewReplacer(".", "-", ":", "-").Replace(ip), "-")
	}
	for ip := range f.refused {
		create(t, c, lbService("default", name(ip), port, withIPs(ip)))
	}
	create(t, c, lbService("default", name(f.conflict), port, withIPs(f.conflict)))
	create(t, c, lbService("default", "free", port, withIPs(f.free)))

	// The API server's endpoints, as its endpoint reconciler publishes them
	// in a cluster (the lab runs kube-apiserver with
	// --endpoint-reconciler-type=none, so the test writes them).
	for _, es := range []struct {
		typ  discoveryv1.AddressType
		addr string
	}{{discoveryv1.AddressTypeIPv4, lab.CPAddr.String()}, {discoveryv1.AddressTypeIPv6, "2001:db8::2"}} {
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "kubernetes-" + strings.ToLower(string(es.typ)), Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes"}},
			AddressType: es.typ,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{es.addr}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(6443)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		}
		if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	clientLink, err := l.Client.Netlink().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	clientMAC := clientLink.Attrs().HardwareAddr.String()
	startDaemons(t, l, sc)
	owner, err := l.WaitOwner(ctx, sc, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cp := l.Observe(l.VIP, port, 50*time.Millisecond, 0)
	eventually(t, 30*time.Second, "the free address served", func() error {
		_, err := converged(ctx, l, []string{"default/free"}, map[string]string{"default/free": f.free})
		return err
	})
	// Sample every node for 10 s: none of the refused addresses, anywhere.
	never := []string{f.conflict}
	for ip := range f.refused {
		never = append(never, ip)
	}
	seen := map[string][]string{}
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		o, err := l.AllOwners()
		if err != nil {
			t.Fatal(err)
		}
		for _, ip := range never {
			if nodes := o[netip.MustParseAddr(ip)]; len(nodes) > 0 {
				seen[ip] = nodes
			}
		}
	}
	for ip, nodes := range seen {
		t.Errorf("%s was put on %v", ip, nodes)
	}
	for ip, r := range f.refused {
		if msg, err := eventFor(ctx, c, "default", name(ip), r.reason); err != nil || !strings.Contains(msg, r.whose) || !strings.Contains(msg, ip) {
			t.Errorf("%s: %s Event %q (%v), want one naming it and %q", ip, r.reason, msg, err, r.whose)
		}
	}
	if msg, err := eventFor(ctx, c, "default", name(f.conflict), "AddressConflict"); err != nil || !strings.Contains(msg, clientMAC) || !strings.Contains(msg, f.conflict) {
		t.Errorf("the client's address %s: AddressConflict Event %q (%v), want one naming the client's MAC %s", f.conflict, msg, err, clientMAC)
	}
	for _, ip := range never {
		s, err := c.CoreV1().Services("default").Get(ctx, name(ip), metav1.GetOptions{})
		if err != nil || len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s: status %v (%v), want none", ip, s.Status.LoadBalancer.Ingress, err)
		}
	}

	// Pools now: team-a's dedicated range is only for team-a; the global
	// pool is open to all.
	setPools(t, c, f.pools)
	for _, ns := range []string{"team-a", "team-b"} {
		ensureNamespace(t, c, ns)
	}
	create(t, c, lbService("team-b", "steal", port, withIPs(f.steal)))
	create(t, c, lbService("team-a", "own", port, withIPs(f.steal)))
	create(t, c, lbService("team-a", "global", port, withIPs(f.global)))
	// svc_pools_only is off (kube-vip's behaviour): an address outside
	// every pool is served; TestServices runs with it on.
	create(t, c, lbService("team-b", "outside", port, withIPs(f.outside)))
	want := map[string]string{"team-a/own": f.steal, "team-a/global": f.global, "team-b/outside": f.outside}
	eventually(t, 30*time.Second, "team-a's own and global pool addresses and the one outside the pools served", func() error {
		_, err := converged(ctx, l, []string{"team-a/own", "team-a/global", "team-b/outside"}, want)
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
