package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vipd/vipd/internal/conflict"
	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/lease"
	"github.com/vipd/vipd/internal/services"
)

// Status is what `vipd status` reports.
type Status struct {
	Lease       string    `json:"lease"`
	VIP         string    `json:"vip,omitempty"`
	Holder      string    `json:"holder"`
	RenewedAgo  string    `json:"renewedAgo,omitempty"`
	Duration    int32     `json:"leaseDurationSeconds"`
	AcquiredAt  time.Time `json:"acquiredAt,omitzero"`
	Transitions int32     `json:"transitions"`
	Expired     bool      `json:"expired"`
	MAC         string    `json:"mac,omitempty"`
	// Conflicts are the other hosts vipd nodes see answering for their
	// addresses, from every Lease (conflict.Annotation).
	Conflicts []string `json:"conflicts,omitempty"`
	// Edits are the Leases whose holder saw them changed by someone
	// other than vipd (election.EditedAnnotation).
	Edits        []string `json:"edits,omitempty"`
	RecentEvents []string `json:"recentEvents,omitempty"`
	// ServicesLease is the Services Lease (svc_leasename), when it exists.
	ServicesLease *Status `json:"servicesLease,omitempty"`
	// Services are the LoadBalancer Services vipd serves or refused.
	Services []ServiceStatus `json:"services,omitempty"`
	// Nodes are the heartbeats of spread mode (svc_spread / svc_election).
	Nodes []NodeStatus `json:"nodes,omitempty"`
}

// NodeStatus is one node's heartbeat in spread mode.
type NodeStatus struct {
	Node string `json:"node"`
	// Heartbeat is live, expired (no renewal for a lease duration) or
	// released (the node stopped and let go of its VIPs).
	Heartbeat  string   `json:"heartbeat"`
	RenewedAgo string   `json:"renewedAgo,omitempty"`
	Ready      bool     `json:"ready"`
	Stopping   bool     `json:"stopping,omitempty"` // handing its VIPs over (SIGTERM)
	VIPs       []string `json:"vips,omitempty"`
}

// ServiceStatus is one LoadBalancer Service as vipd left it.
type ServiceStatus struct {
	Service string   `json:"service"`
	VIPs    []string `json:"vips,omitempty"`
	Owner   string   `json:"owner,omitempty"`
	// State is "announced", "waiting", or the reason of vipd's last warning.
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
}

func statusCmd() *cobra.Command {
	var kubeconfig, namespace, lease, svcLease, output string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show who holds what: the control-plane Lease holder, every LoadBalancer Service's VIP and owner, and vipd's recent Events",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return exitError{2, fmt.Errorf("-o %q: use text or json", output)}
			}
			rules := clientcmd.NewDefaultClientConfigLoadingRules()
			rules.ExplicitPath = kubeconfig
			rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
			if err != nil {
				return exitError{2, fmt.Errorf("no usable kubeconfig (%w): pass --kubeconfig or set KUBECONFIG", err)}
			}
			rc.Timeout = 10 * time.Second
			client, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			st, err := readStatus(cmd.Context(), client, namespace, lease, svcLease)
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), st, output)
		},
	}
	c.Flags().StringVar(&kubeconfig, "kubeconfig", "", "Kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
	c.Flags().StringVarP(&namespace, "namespace", "n", "kube-system", "Namespace of the Lease (cp_namespace)")
	c.Flags().StringVar(&lease, "lease", "plndr-cp-lock", "Name of the Lease (vip_leasename)")
	c.Flags().StringVar(&svcLease, "services-lease", "plndr-svcs-lock", "Name of the Services Lease (svc_leasename)")
	c.Flags().StringVarP(&output, "output", "o", "text", "Output: text or json")
	return c
}

func readStatus(ctx context.Context, c kubernetes.Interface, namespace, name, svcName string) (*Status, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	sl, err := c.CoordinationV1().Leases(namespace).Get(ctx, svcName, metav1.GetOptions{})
	var svcLease *Status
	if err == nil {
		svcLease = leaseStatus(sl, time.Now())
	}
	l, err := c.CoordinationV1().Leases(namespace).Get(ctx, name, metav1.GetOptions{})
	var st *Status
	switch {
	case apierrors.IsNotFound(err) && svcLease != nil:
		st = &Status{Lease: namespace + "/" + name, Holder: "(no control-plane Lease: cp_enable is false)"}
	case apierrors.IsNotFound(err):
		return nil, exitError{1, fmt.Errorf("the Lease %s/%s does not exist: no vipd has been elected (is vipd running, with cp_enable=true?)", namespace, name)}
	case err != nil:
		return nil, fmt.Errorf("reading Lease %s/%s: %w", namespace, name, err)
	default:
		st = leaseStatus(l, time.Now())
	}
	st.ServicesLease = svcLease
	if all, err := c.CoordinationV1().Leases("").List(ctx, metav1.ListOptions{}); err == nil {
		st.Conflicts = conflict.Describe(all.Items)
		st.Edits = election.DescribeEdits(all.Items)
	}
	if hbs, err := services.Heartbeats(ctx, c.CoordinationV1().Leases(namespace)); err == nil {
		st.Nodes = nodeStatuses(hbs, time.Now())
	}
	evs, err := c.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err == nil {
		st.RecentEvents = vipdEvents(evs.Items, 5)
	}
	if svcs, err := c.CoreV1().Services("").List(ctx, metav1.ListOptions{}); err == nil {
		var items []corev1.Event
		if evs != nil {
			items = evs.Items
		}
		st.Services = serviceStatuses(svcs.Items, items)
	}
	return st, nil
}

// serviceStatuses describes the LoadBalancer Services: VIPs and owner when
// announced, else vipd's last warning about them.
func serviceStatuses(svcs []corev1.Service, evs []corev1.Event) []ServiceStatus {
	warn := map[string]corev1.Event{}
	for _, e := range evs {
		if e.ReportingController != "vipd" || e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "Service" {
			continue
		}
		k := e.InvolvedObject.Namespace + "/" + e.InvolvedObject.Name
		if w, ok := warn[k]; !ok || e.LastTimestamp.After(w.LastTimestamp.Time) {
			warn[k] = e
		}
	}
	var out []ServiceStatus
	for _, s := range svcs {
		if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		st := ServiceStatus{Service: s.Namespace + "/" + s.Name, Owner: s.Annotations[services.AnnotationHost], State: "waiting"}
		for _, in := range s.Status.LoadBalancer.Ingress {
			st.VIPs = append(st.VIPs, in.IP)
		}
		switch w, ok := warn[st.Service]; {
		case len(st.VIPs) > 0 && st.Owner != "":
			st.State = "announced"
		case ok:
			st.State, st.Message = w.Reason, w.Message
		case s.Spec.LoadBalancerClass != nil:
			st.State = "class " + *s.Spec.LoadBalancerClass
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// nodeStatuses describes the heartbeats: live while the holder is set and
// the last renewal is younger than the lease (as this host's clock sees it).
func nodeStatuses(hbs []services.Heartbeat, now time.Time) []NodeStatus {
	var out []NodeStatus
	for _, h := range hbs {
		n := NodeStatus{Node: h.Node, Ready: h.Ready, Stopping: h.Stopping && h.Holder != "", VIPs: h.Holds, Heartbeat: "released"}
		if !h.Renewed.IsZero() {
			ago := now.Sub(h.Renewed)
			n.RenewedAgo = ago.Round(100 * time.Millisecond).String()
		}
		switch {
		case h.Holder == "":
		case h.Renewed.IsZero() || now.Sub(h.Renewed) > h.Duration:
			n.Heartbeat = "expired"
		default:
			n.Heartbeat = "live"
		}
		out = append(out, n)
	}
	return out
}

func leaseStatus(l *coordinationv1.Lease, now time.Time) *Status {
	r := lease.ReadLease(l)
	st := &Status{Lease: r.Key(), VIP: r.VIP, MAC: r.MAC, Holder: r.Holder, Duration: int32(r.Duration / time.Second)}
	if l.Spec.LeaseTransitions != nil {
		st.Transitions = *l.Spec.LeaseTransitions
	}
	if !r.Acquired.IsZero() {
		st.AcquiredAt = r.Acquired.UTC()
	}
	if !r.Renewed.IsZero() {
		ago := now.Sub(r.Renewed)
		st.RenewedAgo = ago.Round(100 * time.Millisecond).String()
		st.Expired = ago > r.Duration
	}
	return st
}

func vipdEvents(evs []corev1.Event, n int) []string {
	var mine []corev1.Event
	for _, e := range evs {
		if e.Source.Component == "vipd" || e.ReportingController == "vipd" {
			mine = append(mine, e)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].LastTimestamp.After(mine[j].LastTimestamp.Time) })
	var out []string
	for i, e := range mine {
		if i == n {
			break
		}
		out = append(out, fmt.Sprintf("%s %s %s (node %s): %s", e.LastTimestamp.UTC().Format(time.RFC3339), e.Type, e.Reason, e.Source.Host, e.Message))
	}
	return out
}

func printStatus(w io.Writer, st *Status, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	holder := st.Holder
	switch {
	case holder == "":
		holder = "(none: released, a follower takes over at once)"
	case st.Expired:
		holder += " (EXPIRED: no renewal for longer than the lease; a follower should take over)"
	}
	fmt.Fprintf(w, "Lease:        %s\n", st.Lease)
	if st.VIP != "" {
		fmt.Fprintf(w, "VIP:          %s\n", st.VIP)
	}
	fmt.Fprintf(w, "Holder:       %s\n", holder)
	if st.MAC != "" && st.Holder != "" {
		fmt.Fprintf(w, "Holder's MAC: %s\n", st.MAC)
	}
	if st.RenewedAgo != "" {
		fmt.Fprintf(w, "Renewed:      %s ago (lease %ds)\n", st.RenewedAgo, st.Duration)
	}
	if !st.AcquiredAt.IsZero() {
		fmt.Fprintf(w, "Acquired:     %s (%d transitions)\n", st.AcquiredAt.Format(time.RFC3339), st.Transitions)
	}
	printServicesLease(w, st)
	printNodes(w, st.Nodes)
	printServices(w, st.Services)
	if len(st.Conflicts) > 0 {
		fmt.Fprintf(w, "ADDRESS CONFLICTS on the wire:\n  %s\n", strings.Join(st.Conflicts, "\n  "))
	}
	if len(st.Edits) > 0 {
		fmt.Fprintf(w, "LEASES EDITED by someone other than vipd (only vipd should write them: see vipd doctor):\n  %s\n", strings.Join(st.Edits, "\n  "))
	}
	if len(st.RecentEvents) > 0 {
		fmt.Fprintf(w, "Recent vipd events:\n  %s\n", strings.Join(st.RecentEvents, "\n  "))
	}
	return nil
}

func printServicesLease(w io.Writer, st *Status) {
	if sl := st.ServicesLease; sl != nil {
		h := sl.Holder
		if h == "" {
			h = "(none)"
		} else if sl.Expired {
			h += " (EXPIRED)"
		}
		role := "owns every externalTrafficPolicy: Cluster VIP"
		if len(st.Nodes) > 0 {
			if sl.Holder == "" {
				h = "nobody"
			}
			role = "spread mode: it allocates pool addresses, and is held only while there are some to write"
		}
		fmt.Fprintf(w, "Services:     Lease %s held by %s (%s)\n", sl.Lease, h, role)
	}
}

func printNodes(w io.Writer, nodes []NodeStatus) {
	if len(nodes) > 0 {
		fmt.Fprintf(w, "Spread mode:  %d nodes with a heartbeat (Lease %s<node>)\n", len(nodes), services.HeartbeatPrefix)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tHEARTBEAT\tREADY\tVIPS")
		for _, n := range nodes {
			hb := n.Heartbeat
			switch n.Heartbeat {
			case "live":
				hb = n.RenewedAgo + " ago"
			case "expired":
				hb = "EXPIRED (" + n.RenewedAgo + " ago)"
			}
			ready := "no (settling)"
			switch {
			case n.Stopping:
				ready = "no (stopping: handing its VIPs over)"
			case n.Ready:
				ready = "yes"
			}
			vips := fmt.Sprintf("%d", len(n.VIPs))
			if len(n.VIPs) > 0 {
				shown := n.VIPs
				if len(shown) > 4 {
					shown = append(append([]string{}, shown[:4]...), "...")
				}
				vips += " (" + strings.Join(shown, ", ") + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", n.Node, hb, ready, vips)
		}
		tw.Flush()
	}
}

func printServices(w io.Writer, svcs []ServiceStatus) {
	if len(svcs) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SERVICE\tVIP\tOWNER\tSTATE")
		for _, s := range svcs {
			vips, owner := strings.Join(s.VIPs, ","), s.Owner
			if vips == "" {
				vips = "-"
			}
			if owner == "" {
				owner = "-"
			}
			state := s.State
			if s.Message != "" {
				state += ": " + s.Message
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", s.Service, vips, owner, state)
		}
		tw.Flush()
	}
}
