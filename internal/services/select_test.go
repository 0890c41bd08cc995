package services

import (
	"net/netip"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(mod func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Annotations: map[string]string{}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer},
	}
	if mod != nil {
		mod(s)
	}
	return s
}

func TestOurs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter ClassFilter
		svc    *corev1.Service
		want   bool
		why    string
	}{
		{"legacy: no class is ours", ClassFilter{}, svc(nil), true, ""},
		{"our class", ClassFilter{}, svc(func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To(DefaultClassName) }), true, ""},
		{"custom class name", ClassFilter{Name: "example.com/lb"}, svc(func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/lb") }), true, ""},
		{"other class", ClassFilter{}, svc(func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("metallb.io/metallb") }), false, "belongs to another controller"},
		{"class only, none set", ClassFilter{Only: true}, svc(nil), false, "lb_class_only"},
		{"ignored", ClassFilter{}, svc(func(s *corev1.Service) { s.Annotations[AnnotationIgnore] = "true" }), false, AnnotationIgnore},
		{"ClusterIP", ClassFilter{}, svc(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP }), false, "not LoadBalancer"},
	} {
		got, why := tc.filter.Ours(tc.svc)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%s: %v %q", tc.name, got, why)
		}
	}
}

func TestRequested(t *testing.T) {
	ips, err := Requested(svc(func(s *corev1.Service) {
		s.Annotations[AnnotationIPs] = "198.51.100.210, 2001:db8::210"
		s.Spec.LoadBalancerIP = "198.51.100.99" // the annotation wins
	}))
	if err != nil || len(ips) != 2 || ips[0] != netip.MustParseAddr("198.51.100.210") || ips[1] != netip.MustParseAddr("2001:db8::210") {
		t.Fatalf("%v %v", ips, err)
	}
	ips, err = Requested(svc(func(s *corev1.Service) { s.Spec.LoadBalancerIP = "198.51.100.99" }))
	if err != nil || len(ips) != 1 || ips[0] != netip.MustParseAddr("198.51.100.99") {
		t.Fatalf("spec.loadBalancerIP: %v %v", ips, err)
	}
	if ips, err := Requested(svc(nil)); err != nil || ips != nil {
		t.Fatalf("nothing requested: %v %v", ips, err)
	}
	for _, tc := range []struct {
		mod  func(*corev1.Service)
		want string
	}{
		{func(s *corev1.Service) { s.Annotations[AnnotationIPs] = "198.51.100.300" }, `service default/web: annotation kube-vip.io/loadbalancerIPs="198.51.100.300": "198.51.100.300" is not an IP address`},
		{func(s *corev1.Service) { s.Annotations[AnnotationIPs] = "198.51.100.1,198.51.100.2" }, "two addresses of one family"},
		{func(s *corev1.Service) { s.Spec.LoadBalancerIP = "web.example" }, `spec.loadBalancerIP "web.example" is not an IP address`},
	} {
		if _, err := Requested(svc(tc.mod)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
}
