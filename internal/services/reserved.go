package services

import (
	"fmt"
	"net/netip"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vipd/vipd/internal/kubeapi"
)

// Link is what the interface that carries Service VIPs says about its
// neighbourhood: its own addresses (not vipd's) with their prefixes, and
// the gateways of its routes.
type Link struct {
	Prefixes []netip.Prefix
	Gateways []netip.Addr
}

// linkTTL bounds how often the interface is read for the plan (every pass
// during a burst would be a netlink dump each).
const linkTTL = 5 * time.Second

// startOthers makes the informers that say whose addresses are not for
// Services: Nodes, and the API server's endpoints (the EndpointSlices of
// Service default/kubernetes). Without permission to read them, vipd says
// so once and goes on without them.
func (c *Controller) startOthers(onChange cache.ResourceEventHandler) {
	nodes := kubeapi.New("Nodes", c.o.Client.CoreV1().Nodes().List, c.o.Client.CoreV1().Nodes().Watch, nil)
	nodes.Forbidden = "cannot list Nodes (forbidden by RBAC), so a Service could ask for a node's address: add {apiGroups: [\"\"], resources: [\"nodes\"], verbs: [\"list\", \"watch\"]} to ClusterRole system:kube-vip-role"
	ni := c.inform(nodes, &corev1.Node{}, nil, onChange, cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.st.nodesChanged() },
		UpdateFunc: func(any, any) { c.st.nodesChanged() },
		DeleteFunc: func(any) { c.st.nodesChanged() },
	})
	c.nodeLister = listerscorev1.NewNodeLister(ni.GetIndexer())
	sel := discoveryv1.LabelServiceName + "=kubernetes"
	api := c.o.Client.DiscoveryV1().EndpointSlices("default")
	eps := kubeapi.New("EndpointSlices of Service default/kubernetes", api.List, api.Watch, func(lo *metav1.ListOptions) { lo.LabelSelector = sel })
	eps.Forbidden = "cannot list EndpointSlices in namespace default (forbidden by RBAC), so a Service could ask for the API server's address: allow endpointslices list and watch in ClusterRole system:kube-vip-role"
	ai := c.inform(eps, &discoveryv1.EndpointSlice{}, nil, onChange)
	c.apiLister = listersdiscoveryv1.NewEndpointSliceLister(ai.GetIndexer())
}

// others returns the addresses that belong to someone else, with whose they
// are, and the subnets of the Services' interface.
func (c *Controller) others() (map[netip.Addr]string, []netip.Prefix) {
	out := map[netip.Addr]string{}
	add := func(ip netip.Addr, who string) {
		if ip = ip.Unmap(); ip.IsValid() && out[ip] == "" {
			out[ip] = who
		}
	}
	if c.nodeLister != nil {
		nodes, _ := c.nodeLister.List(labels.Everything())
		for _, n := range nodes {
			for _, a := range n.Status.Addresses {
				if ip, err := netip.ParseAddr(a.Address); err == nil {
					add(ip, fmt.Sprintf("node %s's address (%s)", n.Name, a.Type))
				}
			}
		}
	}
	if c.apiLister != nil {
		slices, _ := c.apiLister.List(labels.Everything())
		for _, s := range slices {
			for _, ep := range s.Endpoints {
				for _, a := range ep.Addresses {
					if ip, err := netip.ParseAddr(a); err == nil {
						add(ip, "the API server's address (an endpoint of Service default/kubernetes)")
					}
				}
			}
		}
	}
	link := c.link()
	var subnets []netip.Prefix
	for _, p := range link.Prefixes {
		add(p.Addr(), fmt.Sprintf("an address of interface %s on node %s (%s)", c.o.Datapath.Interface, c.o.NodeName, p))
		if p.Bits() >= p.Addr().BitLen()-1 {
			continue // a /32, /31, /128 or /127 has no network or broadcast address to protect
		}
		m := p.Masked()
		if p.Addr().Is4() {
			add(m.Addr(), "the network address of "+m.String())
			add(lastAddr(m), "the broadcast address of "+m.String())
		} else {
			add(m.Addr(), "the subnet-router anycast address of "+m.String())
		}
		subnets = append(subnets, m)
	}
	for _, gw := range link.Gateways {
		add(gw, fmt.Sprintf("the gateway of interface %s on node %s", c.o.Datapath.Interface, c.o.NodeName))
	}
	sort.Slice(subnets, func(i, j int) bool { return subnets[i].String() < subnets[j].String() })
	return out, subnets
}

// link reads the interface at most every linkTTL.
func (c *Controller) link() Link {
	if c.o.Datapath.Link == nil {
		return Link{}
	}
	c.linkMu.Lock()
	defer c.linkMu.Unlock()
	if now := c.o.Clock.Now(); c.linkAt.IsZero() || now.Sub(c.linkAt) >= linkTTL {
		l, err := c.o.Datapath.Link()
		if err != nil {
			c.log.Warn("cannot read the interface's addresses and routes; keeping what was read before", "interface", c.o.Datapath.Interface, "err", err)
		} else {
			c.linkLast = l
		}
		c.linkAt = now
	}
	return c.linkLast
}

// lastAddr is the last address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		host := p.Bits() - i*8
		switch {
		case host <= 0:
			b[i] = 0xff
		case host < 8:
			b[i] |= 0xff >> host
		}
	}
	ip, _ := netip.AddrFromSlice(b)
	return ip
}
