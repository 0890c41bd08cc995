// Package services will run LoadBalancer Service VIPs. For now it holds the
// pure decisions the controller is built on: which Services are vipd's, and
// which addresses a Service asks for. No Kubernetes client, no I/O.
package services

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotations understood, with kube-vip's names so existing Services keep
// working.
const (
	// AnnotationIgnore makes vipd leave a Service alone ("true").
	AnnotationIgnore = "kube-vip.io/ignore"
	// AnnotationIPs lists the addresses a Service asks for, comma-separated,
	// IPv4 and/or IPv6; it wins over spec.loadBalancerIP.
	AnnotationIPs = "kube-vip.io/loadbalancerIPs"
)

// DefaultClassName is the spec.loadBalancerClass vipd answers to: kube-vip's,
// so Services written for kube-vip keep working.
const DefaultClassName = "kube-vip.io/kube-vip-class"

// ClassFilter says which loadBalancerClass values are vipd's.
type ClassFilter struct {
	// Name is the class vipd serves (DefaultClassName when empty).
	Name string
	// Only makes vipd serve only Services of class Name; otherwise Services
	// without a class are vipd's too (kube-vip's legacy behaviour).
	Only bool
}

// Ours reports whether vipd should serve svc, and if not, why (for logs).
func (f ClassFilter) Ours(svc *corev1.Service) (bool, string) {
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return false, fmt.Sprintf("type %s, not LoadBalancer", svc.Spec.Type)
	}
	if strings.EqualFold(svc.Annotations[AnnotationIgnore], "true") {
		return false, "annotation " + AnnotationIgnore + "=true"
	}
	name := f.Name
	if name == "" {
		name = DefaultClassName
	}
	class := svc.Spec.LoadBalancerClass
	switch {
	case class == nil && f.Only:
		return false, fmt.Sprintf("no loadBalancerClass, and only class %s is served (lb_class_only)", name)
	case class == nil:
		return true, ""
	case *class != name:
		return false, fmt.Sprintf("loadBalancerClass %s belongs to another controller", *class)
	}
	return true, ""
}

// Requested returns the addresses svc asks for explicitly: the annotation,
// else spec.loadBalancerIP. None means: allocate from the pools. An error
// names the Service, the field and the bad value.
func Requested(svc *corev1.Service) ([]netip.Addr, error) {
	key := svc.Namespace + "/" + svc.Name
	if v, ok := svc.Annotations[AnnotationIPs]; ok && strings.TrimSpace(v) != "" {
		var out []netip.Addr
		seen := map[int]bool{}
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			ip, err := netip.ParseAddr(item)
			if err != nil {
				return nil, fmt.Errorf("service %s: annotation %s=%q: %q is not an IP address; write e.g. 198.51.100.210,2001:db8::210", key, AnnotationIPs, v, item)
			}
			ip = ip.Unmap()
			if seen[ip.BitLen()] {
				return nil, fmt.Errorf("service %s: annotation %s=%q asks for two addresses of one family; give at most one IPv4 and one IPv6", key, AnnotationIPs, v)
			}
			seen[ip.BitLen()] = true
			out = append(out, ip)
		}
		return out, nil
	}
	if v := strings.TrimSpace(svc.Spec.LoadBalancerIP); v != "" {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("service %s: spec.loadBalancerIP %q is not an IP address", key, v)
		}
		return []netip.Addr{ip.Unmap()}, nil
	}
	return nil, nil
}
