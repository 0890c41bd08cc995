package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/services"
)

func TestStatusText(t *testing.T) {
	now := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", Annotations: map[string]string{election.VIPAnnotation: "198.51.100.200/32"}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("n2"), LeaseDurationSeconds: ptr.To(int32(5)), LeaseTransitions: ptr.To(int32(3)),
			AcquireTime: &metav1.MicroTime{Time: now.Add(-time.Minute)}, RenewTime: &metav1.MicroTime{Time: now.Add(-400 * time.Millisecond)},
		},
	}
	var b bytes.Buffer
	if err := printStatus(&b, leaseStatus(l, now), "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Holder:       n2\n", "VIP:          198.51.100.200/32", "Renewed:      400ms ago (lease 5s)", "(3 transitions)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	st := leaseStatus(l, now.Add(10*time.Second))
	b.Reset()
	printStatus(&b, st, "text")
	if !st.Expired || !strings.Contains(b.String(), "EXPIRED") {
		t.Errorf("an old renewal is not reported as expired:\n%s", b.String())
	}
}

func TestStatusShowsServices(t *testing.T) {
	now := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	lb := func(name string, mod func(*corev1.Service)) corev1.Service {
		s := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: map[string]string{}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer}}
		mod(&s)
		return s
	}
	svcs := []corev1.Service{
		lb("web", func(s *corev1.Service) {
			s.Annotations[services.AnnotationHost] = "n2"
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.120"}}
		}),
		lb("bad", func(*corev1.Service) {}),
		lb("other", func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/lb") }),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cluster-ip"}},
	}
	evs := []corev1.Event{{
		InvolvedObject: corev1.ObjectReference{Kind: "Service", Namespace: "default", Name: "bad"}, ReportingController: "vipd",
		Type: corev1.EventTypeWarning, Reason: "AddressOutsidePools", Message: "service default/bad asks for 203.0.113.9, which is outside every address pool",
		LastTimestamp: metav1.NewTime(now),
	}}
	st := &Status{Lease: "kube-system/plndr-cp-lock", Holder: "n1", Services: serviceStatuses(svcs, evs),
		ServicesLease: &Status{Lease: "kube-system/plndr-svcs-lock", Holder: "n2"}}
	var b bytes.Buffer
	if err := printStatus(&b, st, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Services:     Lease kube-system/plndr-svcs-lock held by n2",
		"default/web    198.51.100.120  n2     announced",
		"default/bad    -               -      AddressOutsidePools: service default/bad asks for 203.0.113.9",
		"default/other  -               -      class example.com/lb",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "cluster-ip") {
		t.Errorf("lists a ClusterIP Service:\n%s", b.String())
	}
}

// TestStatusShowsHeartbeats: in spread mode, every node's heartbeat, its
// readiness and the VIPs it holds.
func TestStatusShowsHeartbeats(t *testing.T) {
	now := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	hbs := []services.Heartbeat{
		{Node: "n1", Holder: "n1", Renewed: now.Add(-300 * time.Millisecond), Duration: 5 * time.Second, Ready: true, Holds: []string{"198.51.100.120", "198.51.100.121"}},
		{Node: "n2", Holder: "n2", Renewed: now.Add(-time.Second), Duration: 5 * time.Second},
		{Node: "n3", Holder: "n3", Renewed: now.Add(-9 * time.Second), Duration: 5 * time.Second, Ready: true, Holds: []string{"198.51.100.122"}},
		{Node: "n4", Renewed: now.Add(-2 * time.Second), Duration: time.Second},
	}
	st := &Status{Lease: "kube-system/plndr-cp-lock", Holder: "n1", Nodes: nodeStatuses(hbs, now)}
	var b bytes.Buffer
	if err := printStatus(&b, st, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Spread mode:  4 nodes with a heartbeat (Lease vipd-node-<node>)",
		"n1    300ms ago         yes            2 (198.51.100.120, 198.51.100.121)",
		"n2    1s ago            no (settling)  0",
		"n3    EXPIRED (9s ago)  yes            1 (198.51.100.122)",
		"n4    released",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStatusShowsAStoppingNode: a node handing its VIPs over (SIGTERM in
// spread mode) says so; once it released its heartbeat it is "released".
func TestStatusShowsAStoppingNode(t *testing.T) {
	now := time.Date(2026, 11, 29, 7, 0, 0, 0, time.UTC)
	hbs := []services.Heartbeat{
		{Node: "n5", Holder: "n5", Renewed: now.Add(-100 * time.Millisecond), Duration: 5 * time.Second, Ready: true, Stopping: true, Holds: []string{"198.51.100.130"}},
		{Node: "n6", Renewed: now.Add(-time.Second), Duration: 5 * time.Second, Ready: true, Stopping: true},
	}
	var b bytes.Buffer
	if err := printStatus(&b, &Status{Lease: "kube-system/plndr-cp-lock", Holder: "n1", Nodes: nodeStatuses(hbs, now)}, "text"); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !regexp.MustCompile(`n5\s+100ms ago\s+no \(stopping: handing its VIPs over\)\s+1 \(198\.51\.100\.130\)`).MatchString(out) {
		t.Errorf("the stopping node's row:\n%s", out)
	}
	if strings.Contains(strings.SplitN(out, "n6", 2)[1], "stopping") {
		t.Errorf("a released heartbeat shown as stopping:\n%s", out)
	}
}

// TestStatusShowsConflicts: what a holder writes on its Lease about other
// hosts answering for its addresses is shown, with the owner's MAC.
func TestStatusShowsConflicts(t *testing.T) {
	ls := []coordinationv1.Lease{
		{ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", Annotations: map[string]string{
			conflict.Annotation: "198.51.100.200=02:00:00:00:00:66", conflict.MACAnnotation: "02:00:00:00:00:01"}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "plndr-svcs-lock", Namespace: "kube-system", Annotations: map[string]string{conflict.Annotation: ""}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n2")}},
	}
	st := &Status{Lease: "kube-system/plndr-cp-lock", Holder: "n1", MAC: "02:00:00:00:00:01", Conflicts: conflict.Describe(ls)}
	var b bytes.Buffer
	if err := printStatus(&b, st, "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Holder:       n1\nHolder's MAC: 02:00:00:00:00:01\n", "ADDRESS CONFLICTS on the wire:\n  198.51.100.200: another host answers for it from MAC 02:00:00:00:00:66; node n1 (MAC 02:00:00:00:00:01) holds it (Lease kube-system/plndr-cp-lock)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	if len(st.Conflicts) != 1 {
		t.Errorf("conflicts %v, want one", st.Conflicts)
	}
}
