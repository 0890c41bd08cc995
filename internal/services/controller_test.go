package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/vip/viptest"
)

type sender struct{}

func (sender) Announce(netip.Addr) error { return nil }

// node runs one controller against api, with a client of its own; stop
// ends it and waits.
func node(t *testing.T, api *apiServer, name string) (k *viptest.Kernel, stop func()) {
	return nodeIn(t, api, name, "")
}

// nodeIn is node serving only namespace ns ("" = all).
func nodeIn(t *testing.T, api *apiServer, name, ns string) (k *viptest.Kernel, stop func()) {
	t.Helper()
	k = viptest.New(nil)
	_, stop = run(t, Options{Client: api.client(0), NodeName: name, Namespace: ns, Datapath: Datapath{Kernel: k}})
	return k, stop
}

// run starts a controller with o, the test defaults filled in: interface
// eth0, the Services Lease, the shortest timings the rules allow with a
// lifetime of at least 1 s. stop ends it and waits (also at cleanup).
func run(t *testing.T, o Options) (c *Controller, stop func()) {
	t.Helper()
	o.Datapath.Sender, o.Datapath.Interface, o.LeaseNamespace, o.LeaseName = sender{}, "eth0", "kube-system", "plndr-svcs-lock"
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 4*time.Second, 2*time.Second, 500*time.Millisecond
	o.Datapath.AnnouncePeriod = time.Second
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

func waitFor(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func withSpec(ip string) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.LoadBalancerIP = ip }
}

func announced(client *fake.Clientset, ns, name, ip, owner string) func() error {
	return func() error {
		s, err := client.CoreV1().Services(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if in := s.Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != ip || s.Annotations[AnnotationHost] != owner {
			return fmt.Errorf("status %v, owner %q: want %s on %s", in, s.Annotations[AnnotationHost], ip, owner)
		}
		return nil
	}
}

func TestClusterVIPFollowsTheServicesLease(t *testing.T) {
	api, client := newCluster(lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.120")))
	k, stop := node(t, api, "n1")
	waitFor(t, "VIP announced with status and owner", announced(client, "default", "web", "198.51.100.120", "n1"))
	if !k.Has("198.51.100.120/32") {
		t.Fatal("status written but the VIP is not on the interface")
	}
	if err := client.CoreV1().Services("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "VIP removed with its Service", func() error {
		if k.Has("198.51.100.120/32") {
			return fmt.Errorf("still there")
		}
		return nil
	})
	stop()
	l, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-svcs-lock", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != "" {
		t.Fatalf("Lease after shutdown: %v %v, want released", l, err)
	}
}

func TestOnlyTheServedNamespace(t *testing.T) {
	api, client := newCluster(
		lb("team", "web", 0, annotate(AnnotationIPs, "198.51.100.120")),
		lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.121")))
	k, _ := nodeIn(t, api, "n1", "team")
	waitFor(t, "team/web announced", announced(client, "team", "web", "198.51.100.120", "n1"))
	time.Sleep(500 * time.Millisecond)
	if k.Has("198.51.100.121/32") {
		t.Fatal("svc_namespace=team, but a Service in default got its VIP")
	}
	if s, _ := client.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("a Service outside svc_namespace got status %v", s.Status.LoadBalancer.Ingress)
	}
}

func TestLeftoversSweptBeforeJoining(t *testing.T) {
	// Another node holds the Services Lease, so nothing is added here: what
	// disappears was swept.
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "plndr-svcs-lock"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n9"), LeaseDurationSeconds: ptr.To(int32(30)), RenewTime: &now, AcquireTime: &now},
	}
	_, client := newCluster(lease,
		lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.120")),
		lb("default", "old", 0, func(s *corev1.Service) {
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.122"}}
		}),
		lb("default", "mistake", 0, withSpec("198.51.100.11")),
		lb("default", "dhcp", 0, withSpec("198.51.100.124")),
		lb("default", "mistake32", 0, withSpec("198.51.100.125")),
		lb("default", "klipper", 0, func(s *corev1.Service) {
			s.Spec.LoadBalancerClass = ptr.To("other.io/lb")
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.123"}}
		}))
	k := viptest.New(nil)
	// Left by an earlier run: vipd's mark (preferred 0, finite, full length).
	k.Put("eth0", "198.51.100.120/32", 2*time.Second, true)
	k.Put("eth0", "198.51.100.122/32", 2*time.Second, true)
	// The node's own addresses, which Services ask for by mistake: its /24,
	// a DHCP /32 (finite, preferred), a permanent /32.
	k.Put("eth0", "198.51.100.11/24", 0, false)
	k.Put("eth0", "198.51.100.124/32", time.Hour, false)
	k.Put("eth0", "198.51.100.125/32", 0, false)
	// Named only by a Service of another class: not vipd's to sweep.
	k.Put("eth1", "198.51.100.123/32", 2*time.Second, true)
	c, _ := run(t, Options{Client: client, NodeName: "n1", Datapath: Datapath{Kernel: k}})
	waitFor(t, "ready", c.Ready)
	if k.Has("198.51.100.120/32") || k.Has("198.51.100.122/32") {
		t.Error("leftover Service VIPs were not swept before joining the election")
	}
	for _, p := range []string{"198.51.100.11/24", "198.51.100.124/32", "198.51.100.125/32", "198.51.100.123/32"} {
		if !k.Has(p) {
			t.Errorf("the sweep removed %s, which is not vipd's", p)
		}
	}
}

func TestNotTheLeaseHolderHoldsNoClusterVIP(t *testing.T) {
	now := metav1.NewMicroTime(time.Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "plndr-svcs-lock"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n9"), LeaseDurationSeconds: ptr.To(int32(30)), RenewTime: &now, AcquireTime: &now},
	}
	api, client := newCluster(lease, lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.120")))
	k, _ := node(t, api, "n1")
	time.Sleep(1500 * time.Millisecond) // well within the other holder's lease
	if k.Has("198.51.100.120/32") {
		t.Fatal("a node that does not hold the Services Lease put a Cluster VIP on its interface")
	}
	if s, _ := client.CoreV1().Services("default").Get(context.Background(), "web", metav1.GetOptions{}); len(s.Status.LoadBalancer.Ingress) != 0 || s.Annotations[AnnotationHost] != "" {
		t.Fatalf("a node without the VIP wrote status %v / owner %q", s.Status.LoadBalancer.Ingress, s.Annotations[AnnotationHost])
	}
}

func TestLocalVIPNeedsAReadyLocalEndpoint(t *testing.T) {
	local := func(s *corev1.Service) {
		s.Annotations[AnnotationIPs] = "198.51.100.121"
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.10"}, NodeName: ptr.To("n2"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
	api, client := newCluster(lb("default", "web", 0, local), slice)
	k, _ := node(t, api, "n1")
	time.Sleep(1500 * time.Millisecond)
	if k.Has("198.51.100.121/32") {
		t.Fatal("n1 has no local endpoint but took the Local VIP")
	}
	// A not-ready endpoint on n1 does not count either.
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.0.11"}, NodeName: ptr.To("n1"),
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}})
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(context.Background(), slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if k.Has("198.51.100.121/32") {
		t.Fatal("n1 took the Local VIP for a not-ready endpoint")
	}
	slice.Endpoints[1].Conditions.Ready = ptr.To(true)
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(context.Background(), slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Local VIP on the node with the endpoint", announced(client, "default", "web", "198.51.100.121", "n1"))
	l, err := client.CoordinationV1().Leases("default").Get(context.Background(), LocalLeasePrefix+"web", metav1.GetOptions{})
	if err != nil || *l.Spec.HolderIdentity != "n1" {
		t.Fatalf("per-Service Lease: %v %v", l, err)
	}
	// The endpoint goes: the VIP leaves and the Lease is released for others.
	slice.Endpoints = slice.Endpoints[:1]
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(context.Background(), slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "VIP and Lease given up", func() error {
		l, err := client.CoordinationV1().Leases("default").Get(context.Background(), LocalLeasePrefix+"web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if k.Has("198.51.100.121/32") || *l.Spec.HolderIdentity != "" {
			return fmt.Errorf("VIP present %v, holder %q", k.Has("198.51.100.121/32"), *l.Spec.HolderIdentity)
		}
		return nil
	})
}

// TestIgnoredServiceKeepsAStatusVipdDidNotWrite: kube-vip.io/ignore means
// leave alone. vipd removes what it wrote (its owner annotation, and a
// status that lists the addresses it served), never another controller's.
func TestIgnoredServiceKeepsAStatusVipdDidNotWrite(t *testing.T) {
	ignored := func(ip, status string) func(*corev1.Service) {
		return func(s *corev1.Service) {
			s.Annotations[AnnotationIgnore] = "true"
			s.Annotations[AnnotationHost] = "n1"
			s.Annotations[AnnotationIPs] = ip
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: status}}
		}
	}
	api, client := newCluster(
		lb("default", "theirs", 0, ignored("198.51.100.120", "203.0.113.7")),
		lb("default", "ours", 0, ignored("198.51.100.121", "198.51.100.121")))
	node(t, api, "n1")
	waitFor(t, "owner annotations removed", func() error {
		for _, n := range []string{"theirs", "ours"} {
			s, _ := client.CoreV1().Services("default").Get(context.Background(), n, metav1.GetOptions{})
			if s.Annotations[AnnotationHost] != "" {
				return fmt.Errorf("%s still has %s", n, AnnotationHost)
			}
		}
		s, _ := client.CoreV1().Services("default").Get(context.Background(), "ours", metav1.GetOptions{})
		if len(s.Status.LoadBalancer.Ingress) != 0 {
			return fmt.Errorf("vipd's own status stays: %v", s.Status.LoadBalancer.Ingress)
		}
		return nil
	})
	s, _ := client.CoreV1().Services("default").Get(context.Background(), "theirs", metav1.GetOptions{})
	if in := s.Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != "203.0.113.7" {
		t.Fatalf("another controller's status was changed to %v", in)
	}
}

// TestReservedFollowsTheControlPlaneVIP: a DNS-named control-plane VIP
// moves to an address a Service asks for: the Service loses it.
func TestReservedFollowsTheControlPlaneVIP(t *testing.T) {
	var mu sync.Mutex
	reserved := netip.MustParseAddr("198.51.100.200")
	_, client := newCluster(lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.120")))
	k := viptest.New(nil)
	c, _ := run(t, Options{Client: client, NodeName: "n1", Datapath: Datapath{Kernel: k},
		Reserved: func() netip.Addr { mu.Lock(); defer mu.Unlock(); return reserved }})
	waitFor(t, "VIP announced", announced(client, "default", "web", "198.51.100.120", "n1"))
	mu.Lock()
	reserved = netip.MustParseAddr("198.51.100.120")
	mu.Unlock()
	c.Replan()
	waitFor(t, "the Service loses the control-plane VIP's new address", func() error {
		if k.Has("198.51.100.120/32") {
			return fmt.Errorf("still on the interface")
		}
		return nil
	})
}

// TestForbiddenServicesSaysWhatIsMissing: with RBAC that does not allow
// listing Services (the ClusterRole made without --svc-enable), /readyz
// names what is missing and the fix, instead of "not synced".
func TestForbiddenServicesSaysWhatIsMissing(t *testing.T) {
	api, _ := newCluster()
	cs := api.client(0)
	cs.PrependReactor("list", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "", errors.New("RBAC"))
	})
	c, err := New(Options{Client: cs, NodeName: "n1", LeaseNamespace: "kube-system", LeaseName: "plndr-svcs-lock",
		Timing: election.Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler), Datapath: Datapath{Kernel: viptest.New(nil), Sender: sender{}, Interface: "eth0", AnnouncePeriod: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "readyz naming the missing permission", func() error {
		err := c.Ready()
		if err == nil || !strings.Contains(err.Error(), "services (list, watch, update)") || !strings.Contains(err.Error(), "vipd manifest rbac --svc-enable") {
			return fmt.Errorf("Ready() = %v", err)
		}
		return nil
	})
}
