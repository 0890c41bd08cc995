package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// poolsRBAC adds to the seed's ClusterRole what Service pools and Events
// need (vipd manifest rbac has both): read ConfigMaps, post Events.
var poolsRBAC = []byte(`
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: vipd-pools-events
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch"]
  - apiGroups: [""]
    resources: ["events"]
    verbs: ["create", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: vipd-pools-events
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: vipd-pools-events
subjects:
  - kind: ServiceAccount
    name: kube-vip
    namespace: kube-system
`)

const svcLease = "plndr-svcs-lock"

// servicesLab is a three-node lab running the seed's DaemonSet (which has
// createNodes creates a Node object for each lab node, as a cluster has
// (spread mode honours their labels and cordons; MetalLB announces only
// from nodes).
func createNodes(tb testing.TB, l *lab.Lab) {
	tb.Helper()
	for _, n := range l.Nodes {
		if _, err := l.Admin.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}, metav1.CreateOptions{}); err != nil {
			tb.Fatal(err)
		}
	}
}

// svc_enable=true), with pools and Events allowed.
func servicesLab(t testing.TB) (*lab.Lab, lab.ScenarioOptions) {
	t.Helper()
	return servicesLabWith(t, lab.Options{Nodes: 3})
}

// servicesLabWith is servicesLab with lab options (IPv6).
func servicesLabWith(t testing.TB, o lab.Options) (*lab.Lab, lab.ScenarioOptions) {
	t.Helper()
	l := newLabWith(t, o)
	if err := l.Apply(context.Background(), poolsRBAC); err != nil {
		t.Fatal(err)
	}
	return l, seedScenario(t, l)
}

func setPools(t *testing.T, c kubernetes.Interface, data map[string]string) {
	t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: services.PoolsNamespace, Name: services.PoolsName}, Data: data}
	_, err := c.CoreV1().ConfigMaps(cm.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func ensureNamespace(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	_, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// lbService is a LoadBalancer Service on TCP port (the lab's servers listen on 8080).
func lbService(ns, name string, p int32, mods ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeLoadBalancer,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "tcp", Protocol: corev1.ProtocolTCP, Port: p, TargetPort: intstr.FromInt32(p)}},
		},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func withIPs(v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Annotations[services.AnnotationIPs] = v }
}

func withSpecIP(v string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = v }
}

func create(t testing.TB, c kubernetes.Interface, s *corev1.Service) {
	t.Helper()
	if _, err := c.CoreV1().Services(s.Namespace).Create(context.Background(), s, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating Service %s/%s: %v", s.Namespace, s.Name, err)
	}
}

// eventually polls f until it returns nil, or fails with its last error.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	poll(t, 200*time.Millisecond, timeout, what, f)
}

// converged checks that every Service in keys has its status set to the
// addresses in want (if given), that each address is on exactly one node, the
// one named in the owner annotation, and that a client reaches that node
// through it. It returns the Services' addresses.
func converged(ctx context.Context, l *lab.Lab, keys []string, want map[string]string) (map[string]string, error) {
	owners, err := l.AllOwners()
	if err != nil {
		return nil, err
	}
	got := map[string]string{}
	for _, k := range keys {
		ns, name, _ := strings.Cut(k, "/")
		s, err := l.Admin.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		in := s.Status.LoadBalancer.Ingress
		if len(in) != 1 {
			return nil, fmt.Errorf("%s: status.loadBalancer.ingress %v, want one address", k, in)
		}
		ip := netip.MustParseAddr(in[0].IP)
		if w, ok := want[k]; ok && w != ip.String() {
			return nil, fmt.Errorf("%s: got %s, want %s", k, ip, w)
		}
		host := s.Annotations[services.AnnotationHost]
		if o := owners[ip]; len(o) != 1 || o[0] != host {
			return nil, fmt.Errorf("%s: %s is on %v, owner annotation says %q", k, ip, o, host)
		}
		node, err := l.Reach(ctx, ip, port, time.Second)
		if err != nil || node != host {
			return nil, fmt.Errorf("%s: client through %s reached %q (%v), want %s", k, ip, node, err, host)
		}
		got[k] = ip.String()
	}
	return got, nil
}

// eventFor returns the message of the newest Event with reason on the object.
func eventFor(ctx context.Context, c kubernetes.Interface, ns, name, reason string) (string, error) {
	evs, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name + ",reason=" + reason})
	if err != nil {
		return "", err
	}
	if len(evs.Items) == 0 {
		return "", fmt.Errorf("no %s Event on %s/%s", reason, ns, name)
	}
	return evs.Items[len(evs.Items)-1].Message, nil
}

// TestServices is the main scenario: 50 Services of every kind on
// three nodes, class filtering, changes that take a Service away from vipd,
// deleting half, and every kind of bad input.
func TestServices(t *testing.T) {
	l, sc := servicesLab(t)
	// Only pool addresses (svc_pools_only): bad-outside is refused.
	sc = withEnv(sc, "svc_pools_only=true")
	ctx := context.Background()
	c := l.Admin
	ensureNamespace(t, c, "team")
	ensureNamespace(t, c, "tiny")
	setPools(t, c, map[string]string{
		"range-global": "198.51.100.120-198.51.100.190,2001:db8::10-2001:db8::20",
		"range-team":   "198.51.100.64-198.51.100.79",
		"cidr-tiny":    "198.51.100.96/32",
	})

	var keys []string
	want := map[string]string{}
	add := func(s *corev1.Service, ip string) {
		create(t, c, s)
		k := s.Namespace + "/" + s.Name
		keys = append(keys, k)
		if ip != "" {
			want[k] = ip
		}
	}
	for i := range 5 {
		ip := fmt.Sprintf("198.51.100.%d", 185+i)
		add(lbService("default", fmt.Sprintf("annotated-%d", i), port, withIPs(ip)), ip)
	}
	for i := range 5 {
		ip := fmt.Sprintf("198.51.100.%d", 180+i)
		add(lbService("default", fmt.Sprintf("spec-%d", i), port, withSpecIP(ip)), ip)
	}
	share := func(s *corev1.Service) { s.Annotations[services.AnnotationShare] = "pair" }
	add(lbService("default", "pair-a", port, share), "")
	add(lbService("default", "pair-b", port+1, share), "")
	for i := range 10 {
		add(lbService("team", fmt.Sprintf("team-%d", i), port), "")
	}
	for i := range 28 {
		add(lbService("default", fmt.Sprintf("pool-%d", i), port), "")
	}
	if len(keys) != 50 {
		t.Fatalf("%d Services, want 50", len(keys))
	}
	// Another controller's class: untouched.
	other := func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/other-lb") }
	create(t, c, lbService("default", "other-class", port, other))
	create(t, c, lbService("default", "other-class-ip", port, other, withSpecIP("198.51.100.179")))

	startDaemons(t, l, sc)
	start := time.Now()
	var addrs map[string]string
	eventually(t, 60*time.Second, "50 Services converged", func() error {
		var err error
		addrs, err = converged(ctx, l, keys, want)
		return err
	})
	t.Logf("50 Services converged %s after vipd started", time.Since(start).Round(time.Millisecond))

	// Metrics: each node counts the Service VIPs on its interface.
	owners, err := l.AllOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		held := 0
		for ip, o := range owners {
			if ip != l.VIP && len(o) == 1 && o[0] == n.Name {
				held++
			}
		}
		body, err := lab.HTTPClient(l.Client, 2*time.Second).Get(fmt.Sprintf("http://%s:2112/metrics", n.IP))
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(body.Body)
		body.Body.Close()
		if want := fmt.Sprintf("\nvipd_service_vips_present %d\n", held); !strings.Contains(string(m), want) {
			t.Errorf("%s has %d Service VIPs; its /metrics lacks %q", n.Name, held, strings.TrimSpace(want))
		}
	}

	// Distinct addresses, except the pair; namespace pools honoured.
	users := map[string][]string{}
	for k, ip := range addrs {
		users[ip] = append(users[ip], k)
	}
	for ip, ks := range users {
		sort.Strings(ks)
		if len(ks) > 1 && strings.Join(ks, ",") != "default/pair-a,default/pair-b" {
			t.Errorf("%s is given to %v", ip, ks)
		}
	}
	if addrs["default/pair-a"] != addrs["default/pair-b"] {
		t.Errorf("the sharing pair got %s and %s, want one address", addrs["default/pair-a"], addrs["default/pair-b"])
	}
	team := netip.MustParsePrefix("198.51.100.64/28")
	for k, ip := range addrs {
		if strings.HasPrefix(k, "team/") != team.Contains(netip.MustParseAddr(ip)) {
			t.Errorf("%s got %s: namespace team allocates from 198.51.100.64-79, others not", k, ip)
		}
	}
	for _, k := range keys {
		if strings.HasPrefix(k, "default/pool-") || strings.HasPrefix(k, "team/") {
			ns, name, _ := strings.Cut(k, "/")
			if msg, err := eventFor(ctx, c, ns, name, "Allocated"); err != nil || !strings.Contains(msg, addrs[k]) {
				t.Errorf("%s: Allocated Event %q (%v)", k, msg, err)
			}
		}
	}
	if msg, err := eventFor(ctx, c, "default", "annotated-0", "Announced"); err != nil || !strings.Contains(msg, "announced by node") {
		t.Errorf("Announced Event: %q (%v)", msg, err)
	}

	// Class filter: nothing written, nothing announced.
	for _, name := range []string{"other-class", "other-class-ip"} {
		s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Status.LoadBalancer.Ingress) != 0 || s.Annotations[services.AnnotationIPs] != "" || s.Annotations[services.AnnotationHost] != "" {
			t.Errorf("%s (another class) was touched: status %v annotations %v", name, s.Status.LoadBalancer.Ingress, s.Annotations)
		}
	}
	if o, _ := l.AllOwners(); len(o[netip.MustParseAddr("198.51.100.179")]) != 0 {
		t.Errorf("the other class's address is on %v", o[netip.MustParseAddr("198.51.100.179")])
	}

	badInput(t, l, addrs)
	leaveVipd(t, l, addrs) // takes pool-26 and pool-27 away from vipd, then deletes them
	keys = keys[:len(keys)-2]

	// Delete half: their addresses leave every interface and return to the pools.
	var gone, kept []string
	for _, k := range keys {
		_, name, _ := strings.Cut(k, "/")
		var n int
		if _, err := fmt.Sscanf(name[strings.LastIndex(name, "-")+1:], "%d", &n); err != nil {
			n = 99
		}
		switch {
		case strings.HasPrefix(name, "pool-") && n < 14, strings.HasPrefix(name, "team-") && n < 6, strings.HasPrefix(name, "spec-"):
			gone = append(gone, k)
		default:
			kept = append(kept, k)
		}
	}
	if len(gone) != 25 || len(kept) != 23 {
		t.Fatalf("deleting %d, keeping %d: the test's arithmetic is off", len(gone), len(kept))
	}
	for _, k := range gone {
		ns, name, _ := strings.Cut(k, "/")
		if err := c.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "deleted Services' addresses off every interface", func() error {
		o, err := l.AllOwners()
		if err != nil {
			return err
		}
		for _, k := range gone {
			ip := netip.MustParseAddr(addrs[k])
			if strings.Contains(k, "pair") || len(o[ip]) == 0 {
				continue
			}
			return fmt.Errorf("%s's %s still on %v", k, ip, o[ip])
		}
		return nil
	})
	if _, err := converged(ctx, l, kept, addrs); err != nil {
		t.Errorf("the Services kept: %v", err)
	}
	// The lowest address freed in the global pool goes to the next Service.
	lowest := ""
	for _, k := range gone {
		ip := netip.MustParseAddr(addrs[k])
		if strings.HasPrefix(k, "default/pool-") && (lowest == "" || ip.Less(netip.MustParseAddr(lowest))) {
			lowest = ip.String()
		}
	}
	create(t, c, lbService("default", "after-delete", port))
	eventually(t, 20*time.Second, "a new Service gets a freed address", func() error {
		_, err := converged(ctx, l, []string{"default/after-delete"}, map[string]string{"default/after-delete": lowest})
		return err
	})
}

// badInput: each bad input gets its Event naming the Service and the fix,
// and nothing is announced for it.
func badInput(t *testing.T, l *lab.Lab, addrs map[string]string) {
	t.Helper()
	ctx := context.Background()
	c := l.Admin
	cases := []struct {
		svc    *corev1.Service
		reason string
		text   []string
		ip     string // must be on no interface (or only its rightful owner's)
	}{
		{lbService("default", "bad-outside", port, withIPs("203.0.113.50")), "AddressOutsidePools",
			[]string{"default/bad-outside", "203.0.113.50", "outside every address pool"}, "203.0.113.50"},
		{lbService("default", "bad-in-use", port, withSpecIP(addrs["default/annotated-0"])), "AddressInUse",
			[]string{"default/bad-in-use", addrs["default/annotated-0"] + " is already used by default/annotated-0"}, ""},
		{lbService("tiny", "bad-exhausted-1", port), "", nil, ""},
		{lbService("tiny", "bad-exhausted-2", port), "PoolExhausted",
			[]string{"tiny/bad-exhausted-2", `pool "tiny"`, "widen the pool"}, ""},
		{lbService("default", "bad-ipv6", port, withIPs("2001:db8::15")), "NoIPv6",
			[]string{"default/bad-ipv6", "2001:db8::15", "has no global IPv6 address"}, "2001:db8::15"},
	}
	for _, tc := range cases {
		create(t, c, tc.svc)
		time.Sleep(10 * time.Millisecond) // distinct creation order for the tiny pool
	}
	for _, tc := range cases {
		if tc.reason == "" {
			continue
		}
		eventually(t, 15*time.Second, tc.reason+" Event", func() error {
			msg, err := eventFor(ctx, c, tc.svc.Namespace, tc.svc.Name, tc.reason)
			if err != nil {
				return err
			}
			for _, s := range tc.text {
				if !strings.Contains(msg, s) {
					return fmt.Errorf("message %q lacks %q", msg, s)
				}
			}
			return nil
		})
	}
	time.Sleep(2 * time.Second) // time enough to (wrongly) announce
	owners, err := l.AllOwners()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		if tc.reason == "" {
			continue
		}
		s, err := c.CoreV1().Services(tc.svc.Namespace).Get(ctx, tc.svc.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Status.LoadBalancer.Ingress) != 0 || s.Annotations[services.AnnotationHost] != "" {
			t.Errorf("%s (%s): status %v, owner %q: want nothing", tc.svc.Name, tc.reason, s.Status.LoadBalancer.Ingress, s.Annotations[services.AnnotationHost])
		}
		if tc.ip != "" && len(owners[netip.MustParseAddr(tc.ip)]) != 0 {
			t.Errorf("%s (%s): %s is on %v", tc.svc.Name, tc.reason, tc.ip, owners[netip.MustParseAddr(tc.ip)])
		}
	}
	if ip := netip.MustParseAddr(addrs["default/annotated-0"]); len(owners[ip]) != 1 {
		t.Errorf("%s (asked for twice) is on %v, want exactly one node", ip, owners[ip])
	}

	// vipd status shows who holds what, and why a Service has nothing.
	out, err := vipdStatus(t, l)
	holder, _ := l.Holder(ctx, leaseNS, svcLease)
	okLine := regexp.MustCompile(`(?m)^  default/annotated-0 +` + regexp.QuoteMeta(addrs["default/annotated-0"]) + ` +` + regexp.QuoteMeta(owners[netip.MustParseAddr(addrs["default/annotated-0"])][0]) + ` +announced$`)
	badLine := regexp.MustCompile(`(?m)^  default/bad-outside +- +- +AddressOutsidePools: service default/bad-outside asks for 203.0.113.50`)
	if err != nil || !okLine.Match(out) || !badLine.Match(out) || !strings.Contains(string(out), "Services:     Lease kube-system/plndr-svcs-lock held by "+holder) {
		t.Errorf("vipd status: %v\n%s", err, out)
	}

	// A malformed ConfigMap: an Event on it, and the last good pools still serve.
	setPools(t, c, map[string]string{"range-global": "198.51.100.120-bogus", "range-team": "198.51.100.64-198.51.100.79", "cidr-tiny": "198.51.100.96/32"})
	eventually(t, 15*time.Second, "InvalidPools Event", func() error {
		msg, err := eventFor(ctx, c, services.PoolsNamespace, services.PoolsName, "InvalidPools")
		if err == nil && !strings.Contains(msg, "bogus") {
			err = fmt.Errorf("message %q does not name the bad value", msg)
		}
		return err
	})
	create(t, c, lbService("default", "during-bad-pools", port))
	eventually(t, 20*time.Second, "allocation from the last good pools", func() error {
		_, err := converged(ctx, l, []string{"default/during-bad-pools"}, nil)
		return err
	})
	setPools(t, c, map[string]string{"range-global": "198.51.100.120-198.51.100.190,2001:db8::10-2001:db8::20", "range-team": "198.51.100.64-198.51.100.79", "cidr-tiny": "198.51.100.96/32"})
	for _, tc := range cases {
		_ = c.CoreV1().Services(tc.svc.Namespace).Delete(ctx, tc.svc.Name, metav1.DeleteOptions{})
	}
	_ = c.CoreV1().Services("default").Delete(ctx, "during-bad-pools", metav1.DeleteOptions{})
}

// leaveVipd: a Service that changes type, or is marked to be ignored, loses
// its VIP from the interface and its status; vipd's allocation returns.
func leaveVipd(t *testing.T, l *lab.Lab, addrs map[string]string) {
	t.Helper()
	ctx := context.Background()
	c := l.Admin
	changes := map[string]func(*corev1.Service){
		"pool-26": func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Spec.AllocateLoadBalancerNodePorts = nil
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
			s.Spec.ExternalTrafficPolicy = ""
		},
		"pool-27": func(s *corev1.Service) { s.Annotations["kube-vip.io/ignore"] = "true" },
	}
	for name, change := range changes {
		eventually(t, 10*time.Second, "changing "+name, func() error {
			s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			change(s)
			_, err = c.CoreV1().Services("default").Update(ctx, s, metav1.UpdateOptions{})
			return err
		})
	}
	for name := range changes {
		ip := netip.MustParseAddr(addrs["default/"+name])
		eventually(t, 15*time.Second, name+" left vipd", func() error {
			s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			o, err := l.AllOwners()
			if err != nil {
				return err
			}
			var errs []error
			if len(o[ip]) != 0 {
				errs = append(errs, fmt.Errorf("%s still on %v", ip, o[ip]))
			}
			if len(s.Status.LoadBalancer.Ingress) != 0 {
				errs = append(errs, fmt.Errorf("status still %v", s.Status.LoadBalancer.Ingress))
			}
			for _, a := range []string{services.AnnotationHost, services.AnnotationAllocated, services.AnnotationIPs} {
				if v, ok := s.Annotations[a]; ok {
					errs = append(errs, fmt.Errorf("annotation %s=%s still there", a, v))
				}
			}
			return errors.Join(errs...)
		})
	}
	for name := range changes {
		_ = c.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	}
}

// endpointSlice puts one ready endpoint of svc on node.
func endpointSlice(ns, svc, node string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"198.18.16.10"}, NodeName: ptr.To(node),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
}

// TestServicesLocalTraffic: with externalTrafficPolicy: Local only a node
// with a ready local endpoint owns the VIP, and the VIP follows the endpoint,
// never on two nodes.
func TestServicesLocalTraffic(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	c := l.Admin
	ip := netip.MustParseAddr("198.51.100.150")
	n2, n3 := l.Nodes[1].Name, l.Nodes[2].Name
	create(t, c, lbService("default", "local", port, withIPs(ip.String()), func(s *corev1.Service) {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}))
	if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice("default", "local", n2), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startDaemons(t, l, sc)
	eventually(t, 30*time.Second, "the Local VIP on node 2", func() error {
		_, err := converged(ctx, l, []string{"default/local"}, map[string]string{"default/local": ip.String()})
		if err == nil {
			if o, _ := l.AllOwners(); len(o[ip]) != 1 || o[ip][0] != n2 {
				err = fmt.Errorf("on %v, want %s", o[ip], n2)
			}
		}
		return err
	})
	// Watch the interfaces while the endpoint moves to node 3.
	obs := l.Observe(ip, port, 20*time.Millisecond, 0)
	time.Sleep(500 * time.Millisecond)
	moved := time.Now()
	eventually(t, 10*time.Second, "moving the endpoint", func() error {
		es, err := c.DiscoveryV1().EndpointSlices("default").Get(ctx, "local-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		es.Endpoints[0].NodeName = ptr.To(n3)
		_, err = c.DiscoveryV1().EndpointSlices("default").Update(ctx, es, metav1.UpdateOptions{})
		return err
	})
	eventually(t, 15*time.Second, "the Local VIP follows to node 3", func() error {
		o, err := l.AllOwners()
		if err != nil {
			return err
		}
		if len(o[ip]) != 1 || o[ip][0] != n3 {
			return fmt.Errorf("on %v, want %s", o[ip], n3)
		}
		_, err = converged(ctx, l, []string{"default/local"}, nil)
		return err
	})
	t.Logf("the VIP moved to %s %s after the EndpointSlice update", n3, time.Since(moved).Round(time.Millisecond))
	time.Sleep(time.Second)
	rep := obs.Stop()
	if m := rep.MaxOwners(); m > 1 {
		t.Errorf("%d nodes had %s at once", m, ip)
	}
	if seq := rep.OwnerChanges(); len(seq) != 2 || seq[0] != n2 || seq[1] != n3 {
		t.Errorf("owners seen %v, want [%s %s]", seq, n2, n3)
	}
	if msg, err := eventFor(ctx, c, "default", "local", "Moved"); err != nil || !strings.Contains(msg, "from node "+n2+" to node "+n3) {
		t.Errorf("Moved Event %q (%v)", msg, err)
	}
	// No ready endpoint anywhere: nobody owns it.
	if err := c.DiscoveryV1().EndpointSlices("default").Delete(ctx, "local-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "no endpoint, no owner", func() error {
		if o, _ := l.AllOwners(); len(o[ip]) != 0 {
			return fmt.Errorf("%s still on %v", ip, o[ip])
		}
		return nil
	})
}

// TestServicesFailover applies the fault matrix to the Services' owner:
// never two owners for any Service VIP, every VIP reachable again within
// lease duration + 3 s.
func TestServicesFailover(t *testing.T) {
	l, sc := servicesLab(t)
	ctx := context.Background()
	c := l.Admin
	setPools(t, c, map[string]string{"range-global": "198.51.100.120-198.51.100.190"})
	var keys []string
	for i := range 10 {
		s := lbService("default", fmt.Sprintf("svc-%d", i), port)
		create(t, c, s)
		keys = append(keys, "default/"+s.Name)
	}
	svc := sc
	svc.LeaseName = svcLease
	bound := leaseDuration + 3*time.Second
	for _, f := range lab.Faults { // SIGTERM, SIGKILL, power loss, SIGSTOP, API blackhole
		t.Run(strings.Fields(f.Name)[0], func(t *testing.T) {
			procs, err := l.StartDaemons(ctx, sc)
			dumpOnFailure(t, procs)
			defer func() {
				lab.KillAll(procs)
				for _, n := range l.Nodes {
					n.IPCmd("link", "set", "eth0", "up")
					n.IPCmd("route", "del", "blackhole", lab.CPAddr.String()+"/32")
				}
			}()
			if err != nil {
				t.Fatal(err)
			}
			var addrs map[string]string
			eventually(t, 30*time.Second, "Services converged", func() error {
				addrs, err = converged(ctx, l, keys, nil)
				return err
			})
			owner, err := l.Holder(ctx, leaseNS, svcLease)
			if err != nil || owner == "" {
				t.Fatalf("Services Lease holder %q (%v)", owner, err)
			}
			time.Sleep(1500 * time.Millisecond)
			var obs []*lab.Observer
			for _, k := range keys[:4] {
				obs = append(obs, l.Observe(netip.MustParseAddr(addrs[k]), port, 50*time.Millisecond, 50*time.Millisecond))
			}
			time.Sleep(time.Second)
			at := time.Now()
			if err := f.Inject(l, procs[owner]); err != nil {
				t.Fatal(err)
			}
			eventually(t, 25*time.Second, "every VIP on a new owner", func() error {
				_, err := converged(ctx, l, keys, addrs)
				if err == nil {
					if h, _ := l.Holder(ctx, leaseNS, svcLease); h == owner {
						err = errors.New("Lease still on the old owner")
					}
				}
				return err
			})
			time.Sleep(sc.Settle)
			for i, o := range obs {
				r := o.Stop()
				if m := r.MaxOwners(); m > 1 {
					t.Errorf("%s: %d nodes had %s at once for %s", f.Name, m, addrs[keys[i]], r.TwoOwnerTime())
				}
				gap := r.Gap(at)
				if gap < 0 || gap > bound {
					t.Errorf("%s: %s unreachable for %s, want at most %s", f.Name, addrs[keys[i]], gap, bound)
				}
				if i == 0 {
					t.Logf("%s on the Services owner %s: %s", f.Name, owner, r.Summary(at))
				}
			}
		})
	}
}

// TestServicesIPv6: Service VIPs over IPv6 (a /128, announced with
// unsolicited neighbor advertisements) and dual-stack (one IPv4 and one IPv6
// address in the annotation, both on the same node, both in the status),
// reachable from the client before and after a planned handover.
func TestServicesIPv6(t *testing.T) {
	l, sc := servicesLabWith(t, lab.Options{Nodes: 3, IPv6: true})
	ctx := context.Background()
	c := l.Admin
	create(t, c, lbService("default", "v6", port, withIPs("2001:db8::150")))
	create(t, c, lbService("default", "dual", port, withIPs("198.51.100.151,2001:db8::151")))
	want := map[string][]string{"v6": {"2001:db8::150"}, "dual": {"198.51.100.151", "2001:db8::151"}}

	// up checks every address of every Service: in the status, on exactly
	// the owner node, reached through by the client; it returns the owner.
	up := func() (string, error) {
		owners, err := l.AllOwners()
		if err != nil {
			return "", err
		}
		owner := ""
		for name, ips := range want {
			s, err := c.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			var got []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				got = append(got, in.IP)
			}
			if strings.Join(got, ",") != strings.Join(ips, ",") {
				return "", fmt.Errorf("%s: status %v, want %v", name, got, ips)
			}
			host := s.Annotations[services.AnnotationHost]
			for _, ip := range ips {
				a := netip.MustParseAddr(ip)
				if o := owners[a]; len(o) != 1 || o[0] != host {
					return "", fmt.Errorf("%s: %s on %v, owner annotation %q", name, ip, o, host)
				}
				if node, err := l.Reach(ctx, a, port, time.Second); err != nil || node != host {
					return "", fmt.Errorf("%s: client through %s reached %q (%v), want %s", name, ip, node, err, host)
				}
			}
			if owner != "" && owner != host {
				return "", fmt.Errorf("Cluster VIPs on %s and %s: want one owner (the Services Lease holder)", owner, host)
			}
			owner = host
		}
		return owner, nil
	}

	procs := startDaemons(t, l, sc)
	var owner string
	eventually(t, 30*time.Second, "IPv6 and dual-stack Services up", func() error {
		var err error
		owner, err = up()
		return err
	})
	for _, a := range []string{"2001:db8::150", "2001:db8::151"} {
		if err := checkV6Address(l.Node(owner), netip.MustParseAddr(a)); err != nil {
			t.Error(err)
		}
	}
	// A planned handover moves every address, v4 and v6, to one new owner.
	if err := procs[owner].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Services up on a new owner", func() error {
		o, err := up()
		if err == nil && o == owner {
			err = fmt.Errorf("still on %s", owner)
		}
		return err
	})
}

// checkV6Address: a Service VIP over IPv6 is a deprecated /128 with a
// lifetime of 1-3 s (the renew deadline).
func checkV6Address(n *lab.Host, ip netip.Addr) error {
	link, err := n.Netlink().LinkByName("eth0")
	if err != nil {
		return err
	}
	addrs, err := n.Netlink().AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if got, _ := netip.AddrFromSlice(a.IP); got == ip {
			if ones, _ := a.Mask.Size(); ones != 128 || a.Flags&unix.IFA_F_DEPRECATED == 0 || a.ValidLft <= 0 || a.ValidLft > 3 {
				return fmt.Errorf("%s on %s: /%d flags %#x valid_lft %d; want /128, deprecated, 1-3 s", ip, n.Name, ones, a.Flags, a.ValidLft)
			}
			return nil
		}
	}
	return fmt.Errorf("%s not on %s", ip, n.Name)
}
