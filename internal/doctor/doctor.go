// Package doctor finds the set-up mistakes that make a VIP fail in ways that
// are hard to see, and reports each once: in the log, and as a Kubernetes
// Event when RBAC allows (one warning when it does not).
//
// The checks are the traps of the seed document: K3s' ServiceLB (klipper)
// left enabled, which answers ARP for the same addresses; and an API server
// certificate without the VIP, which breaks every client that uses the VIP.
package doctor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/ipam"
)

// Finding is one problem, with what to do about it.
type Finding struct {
	// Reason is a short CamelCase code, used as the Event reason.
	Reason string
	// Message says what is wrong and how to fix it.
	Message string
}

// ServiceLBLabel marks the pods of K3s' ServiceLB (klipper-lb).
const ServiceLBLabel = "svccontroller.k3s.cattle.io/svcname"

// ServiceLB looks for K3s' ServiceLB: its DaemonSets (svclb-*) and pods in
// kube-system. Listing DaemonSets needs a permission the seed's ClusterRole
// lacks; that part is skipped when forbidden, pods are enough.
func ServiceLB(ctx context.Context, c kubernetes.Interface) ([]Finding, error) {
	var names []string
	pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods in kube-system: %w", err)
	}
	for _, p := range pods.Items {
		if _, ok := p.Labels[ServiceLBLabel]; ok || strings.HasPrefix(p.Name, "svclb-") {
			names = append(names, "pod/"+p.Name)
		}
	}
	if ds, err := c.AppsV1().DaemonSets("kube-system").List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range ds.Items {
			if strings.HasPrefix(d.Name, "svclb-") {
				names = append(names, "daemonset/"+d.Name)
			}
		}
	} else if !apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("listing daemonsets in kube-system: %w", err)
	}
	// ServiceLB writes the nodes' own addresses into the status of the
	// LoadBalancer Services it serves.
	more, err := servicesWithNodeAddresses(ctx, c)
	if err != nil {
		return nil, err
	}
	names = append(names, more...)
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	if len(names) > 5 {
		names = append(names[:5], fmt.Sprintf("and %d more", len(names)-5))
	}
	return []Finding{{
		Reason: "ServiceLBEnabled",
		Message: fmt.Sprintf("K3s ServiceLB (klipper) is running in kube-system (%s): it answers ARP for LoadBalancer addresses with other nodes' MACs, so it and vipd will fight over the same addresses and connections will break. Start every K3s server with --disable servicelb (or add 'disable: [servicelb]' to /etc/rancher/k3s/config.yaml) and restart K3s",
			strings.Join(names, ", ")),
	}}, nil
}

// servicesWithNodeAddresses lists LoadBalancer Services whose status holds
// an address of a Node: a sign of ServiceLB, which vipd never does.
func servicesWithNodeAddresses(ctx context.Context, c kubernetes.Interface) ([]string, error) {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	nodeIPs := map[string]string{}
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				nodeIPs[a.Address] = n.Name
			}
		}
	}
	if len(nodeIPs) == 0 {
		return nil, nil
	}
	svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing services: %w", err)
	}
	var out []string
	for _, svc := range svcs.Items {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if node, ok := nodeIPs[in.IP]; ok {
				out = append(out, fmt.Sprintf("service/%s/%s has node %s's address %s in its status", svc.Namespace, svc.Name, node, in.IP))
				break
			}
		}
	}
	return out, nil
}

// Certificate connects to addr with TLS and reports a finding when the
// certificate it serves does not name vip. A connection failure is an
// error, not a finding (the server may simply not be there).
func Certificate(ctx context.Context, dial func(ctx context.Context, network, addr string) (net.Conn, error), addr string, vip netip.Addr) ([]Finding, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	raw, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer raw.Close()
	if dl, ok := ctx.Deadline(); ok {
		raw.SetDeadline(dl)
	}
	// Only the certificate is read; nothing is trusted or sent.
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, errors.New("no certificate served")
	}
	leaf := certs[0]
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok && a.Unmap() == vip {
			return nil, nil
		}
	}
	var sans []string
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, leaf.DNSNames...)
	return []Finding{{
		Reason: "VIPNotInCertificate",
		Message: fmt.Sprintf("the API server certificate served at %s does not include the VIP %s (its names: %s): kubectl and nodes joining through https://%s:6443 will fail TLS verification. K3s and RKE2 need --tls-san %s on every server (kubeadm: apiServer.certSANs), then a restart so the certificate is reissued",
			addr, vip, strings.Join(sans, ", "), vip, vip),
	}}, nil
}

// ServiceAddresses reports who may claim which addresses through a
// LoadBalancer Service when Services are enabled: with neither address
// pools nor svc_pools_only, anyone who can create a Service in any
// namespace can claim any free address on the segment; with svc_pools_only
// and no pools, every Service that asks for an address is refused.
func ServiceAddresses(ctx context.Context, c kubernetes.Interface, poolsOnly bool) ([]Finding, error) {
	where := ipam.ConfigMapNamespace + "/" + ipam.ConfigMapName
	var pools *ipam.Pools
	cm, err := c.CoreV1().ConfigMaps(ipam.ConfigMapNamespace).Get(ctx, ipam.ConfigMapName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case apierrors.IsForbidden(err):
		// vipd cannot read the pools either (the seed's ClusterRole): it
		// serves explicit addresses only.
		where += " (which vipd may not read: allow configmaps get, list and watch, as 'vipd manifest rbac' does)"
	case err != nil:
		return nil, fmt.Errorf("reading ConfigMap %s: %w", where, err)
	default:
		if pools, err = ipam.ParsePools(cm.Data); err != nil {
			return []Finding{{Reason: "InvalidPools", Message: fmt.Sprintf("ConfigMap %s is malformed: %v", where, err)}}, nil
		}
	}
	has := pools != nil && (pools.Global != nil || len(pools.Namespaces) > 0)
	switch {
	case poolsOnly && !has:
		return []Finding{{Reason: "NoAddressPool", Message: fmt.Sprintf("svc_pools_only=true but there are no address pools in ConfigMap %s, so every LoadBalancer Service is refused: add cidr-global or range-global (or cidr-<namespace>/range-<namespace>) to it", where)}}, nil
	case !poolsOnly && !has:
		return []Finding{{Reason: "ServiceAddressesOpen", Message: fmt.Sprintf("svc_enable=true with neither address pools (no cidr-*/range-* key in ConfigMap %s) nor svc_pools_only=true: anyone allowed to create a LoadBalancer Service in any namespace can make vipd announce any free address on the nodes' segment (only nodes', the API server's, the gateway's and the subnet's network and broadcast addresses are refused). If people you do not fully trust can create Services, add pools to ConfigMap %s/%s (cidr-global, or cidr-<namespace> per tenant) and set svc_pools_only=true", where, ipam.ConfigMapNamespace, ipam.ConfigMapName)}}, nil
	}
	return nil, nil
}

// Reporter logs each distinct finding once and posts it as a Warning Event
// on the Lease; when Events are forbidden it says so once and keeps logging.
type Reporter struct {
	Client    kubernetes.Interface
	Namespace string
	Lease     string
	Node      string
	Log       *slog.Logger

	once   sync.Once
	poster *events.Poster
}

// Report logs and posts f, unless the same finding was reported before.
func (r *Reporter) Report(ctx context.Context, f Finding) {
	r.once.Do(func() { r.poster = &events.Poster{Client: r.Client, Node: r.Node, Log: r.Log} })
	r.poster.Post(ctx, corev1.ObjectReference{
		APIVersion: "coordination.k8s.io/v1", Kind: "Lease", Namespace: r.Namespace, Name: r.Lease,
	}, corev1.EventTypeWarning, f.Reason, f.Message)
}
