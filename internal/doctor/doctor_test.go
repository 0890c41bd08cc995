package doctor

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestServiceLBFromServiceStatus(t *testing.T) {
	c := fake.NewClientset(
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.51.100.11"}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "traefik", Namespace: "kube-system"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.11"}}}}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ok", Namespace: "default"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
			Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "198.51.100.50"}}}}},
	)
	fs, err := ServiceLB(context.Background(), c)
	if err != nil || len(fs) != 1 || !strings.Contains(fs[0].Message, "service/kube-system/traefik has node n1's address 198.51.100.11") || strings.Contains(fs[0].Message, "service/default/ok") {
		t.Fatalf("%v %v", fs, err)
	}
}

func TestNoServiceLBNoFinding(t *testing.T) {
	c := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "coredns-abc", Namespace: "kube-system"}})
	fs, err := ServiceLB(context.Background(), c)
	if err != nil || len(fs) != 0 {
		t.Fatalf("%v %v", fs, err)
	}
}

func TestReporterPostsOnceAndWarnsOnceWhenForbidden(t *testing.T) {
	c := fake.NewClientset()
	posts := 0
	c.PrependReactor("create", "events", func(k8stesting.Action) (bool, runtime.Object, error) {
		posts++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "events"}, "", nil)
	})
	var log strings.Builder
	r := &Reporter{Client: c, Namespace: "kube-system", Lease: "plndr-cp-lock", Node: "n1", Log: slog.New(slog.NewTextHandler(&log, nil))}
	f := Finding{Reason: "ServiceLBEnabled", Message: "K3s ServiceLB is running"}
	r.Report(context.Background(), f)
	r.Report(context.Background(), f)
	r.Report(context.Background(), Finding{Reason: "VIPNotInCertificate", Message: "no VIP"})
	if posts != 1 {
		t.Errorf("%d Event posts, want 1 (then Events are known forbidden)", posts)
	}
	if n := strings.Count(log.String(), "K3s ServiceLB is running"); n != 1 {
		t.Errorf("finding logged %d times", n)
	}
	if n := strings.Count(log.String(), "cannot post Events"); n != 1 {
		t.Errorf("forbidden warning logged %d times", n)
	}
}

func TestCertificateWithAndWithoutTheVIP(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler()) // certificate for 127.0.0.1 and ::1
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "https://")
	d := (&net.Dialer{}).DialContext
	fs, err := Certificate(context.Background(), d, addr, netip.MustParseAddr("127.0.0.1"))
	if err != nil || len(fs) != 0 {
		t.Fatalf("VIP in certificate: %v %v", fs, err)
	}
	fs, err = Certificate(context.Background(), d, addr, netip.MustParseAddr("198.51.100.200"))
	if err != nil || len(fs) != 1 || fs[0].Reason != "VIPNotInCertificate" ||
		!strings.Contains(fs[0].Message, "does not include the VIP 198.51.100.200 (its names: 127.0.0.1") ||
		!strings.Contains(fs[0].Message, "--tls-san 198.51.100.200") {
		t.Fatalf("VIP missing: %v %v", fs, err)
	}
	srv.Close()
	if _, err := Certificate(context.Background(), d, addr, netip.MustParseAddr("198.51.100.200")); err == nil {
		t.Fatal("no server: want an error, not a finding")
	}
}

func TestServiceAddresses(t *testing.T) {
	pools := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubevip", Namespace: "kube-system"}, Data: map[string]string{"cidr-team-a": "198.51.100.64/28"}}
	empty := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kubevip", Namespace: "kube-system"}, Data: map[string]string{"unrelated": "x"}}
	for _, tc := range []struct {
		name      string
		objs      []runtime.Object
		poolsOnly bool
		reason    string
		msg       []string
	}{
		{"no ConfigMap, policy off", nil, false, "ServiceAddressesOpen", []string{"anyone allowed to create a LoadBalancer Service", "svc_pools_only=true", "cidr-global"}},
		{"no pools, policy off", []runtime.Object{empty}, false, "ServiceAddressesOpen", []string{"kube-system/kubevip"}},
		{"no pools, policy on", nil, true, "NoAddressPool", []string{"every LoadBalancer Service is refused"}},
		{"pools, policy off", []runtime.Object{pools}, false, "", nil},
		// The seed's ClusterRole: vipd cannot read the pools, so has none.
		{"forbidden", []runtime.Object{pools}, false, "ServiceAddressesOpen", []string{"which vipd may not read", "configmaps get, list and watch"}},
		{"pools, policy on", []runtime.Object{pools}, true, "", nil},
	} {
		c := fake.NewClientset(tc.objs...)
		if tc.name == "forbidden" {
			c.PrependReactor("get", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "kubevip", nil)
			})
		}
		fs, err := ServiceAddresses(context.Background(), c, tc.poolsOnly)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.reason == "" {
			if len(fs) != 0 {
				t.Errorf("%s: findings %v, want none", tc.name, fs)
			}
			continue
		}
		if len(fs) != 1 || fs[0].Reason != tc.reason {
			t.Errorf("%s: findings %v, want one %s", tc.name, fs, tc.reason)
			continue
		}
		for _, m := range tc.msg {
			if !strings.Contains(fs[0].Message, m) {
				t.Errorf("%s: %q lacks %q", tc.name, fs[0].Message, m)
			}
		}
	}
}
