// Package lease is vipd's one reading of a Lease: the spec fields the
// election uses and every annotation vipd writes, parsed in one place for
// the electors, the Services strategies, the conflict watch and vipd
// status. What each annotation means, and who writes it, is said where
// it is written (package election, services, conflict); its name is here.
package lease

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
)

// The annotations vipd writes on its Leases.
const (
	Holds     = "vipd.io/holds"     // the Service VIPs its holder has or is about to add
	Seal      = "vipd.io/seal"      // what its holder's own write set (election.SealAnnotation)
	Instance  = "vipd.io/instance"  // the writing process's token
	VIP       = "vipd.io/vip"       // the VIP the control-plane Lease's holder serves
	Handover  = "vipd.io/handover"  // a planned hand-over of the Lease
	Successor = "vipd.io/successor" // the node a hand-over goes to
	Edited    = "vipd.io/edited"    // its holder saw it edited by someone else
	Ready     = "vipd.io/ready"     // a heartbeat's node may be given VIPs
	Stopping  = "vipd.io/stopping"  // a heartbeat's node hands its VIPs over
	Read      = "vipd.io/read"      // every address a heartbeat lists was read
	Node      = "vipd.io/node"      // a heartbeat's node, also once released
	MAC       = "vipd.io/mac"       // the holder's interface hardware address
	Conflicts = "vipd.io/conflicts" // other hosts answering for the holder's addresses
)

// Record is one version of a Lease as vipd reads it.
type Record struct {
	Namespace, Name, RV string
	Holder              string
	// Duration is leaseDurationSeconds (0: unset or not positive).
	Duration          time.Duration
	Acquired, Renewed time.Time // zero: unset
	// Deleting: marked for deletion; Finalizers, what keeps it.
	Deleting   bool
	Finalizers []string
	// HasHolds: the Lease carries Holds (a Lease of vipd's Services);
	// HoldsText is it as written, Listed the addresses it lists.
	HasHolds  bool
	HoldsText string
	Listed    []netip.Addr
	Instance  string
	// Ready, Stopping: those annotations say "true"; Unread: Read says
	// "false" (an older vipd writes no Read).
	Ready, Stopping, Unread bool
	Node, MAC, VIP          string
	Annotations             map[string]string
}

// Key is namespace/name.
func (r Record) Key() string { return r.Namespace + "/" + r.Name }

// DurationOr is Duration, or def when unset.
func (r Record) DurationOr(def time.Duration) time.Duration {
	if r.Duration > 0 {
		return r.Duration
	}
	return def
}

// HeldFor is how long the holder has held it without a break, as its own
// clock says (renew time - acquire time; 0: unknown).
func (r Record) HeldFor() time.Duration {
	if r.Acquired.IsZero() || r.Renewed.IsZero() {
		return 0
	}
	return r.Renewed.Sub(r.Acquired)
}

// HasFinalizer reports whether f keeps the Lease.
func (r Record) HasFinalizer(f string) bool { return slices.Contains(r.Finalizers, f) }

// ReadLease reads l.
func ReadLease(l *coordinationv1.Lease) Record {
	a := l.Annotations
	r := Record{Namespace: l.Namespace, Name: l.Name, RV: l.ResourceVersion, Holder: Holder(l), Deleting: l.DeletionTimestamp != nil, Finalizers: l.Finalizers,
		Instance: a[Instance], Ready: a[Ready] == "true", Stopping: a[Stopping] == "true", Unread: a[Read] == "false",
		Node: a[Node], MAC: a[MAC], VIP: a[VIP], Annotations: a}
	if s := l.Spec.LeaseDurationSeconds; s != nil && *s > 0 {
		r.Duration = time.Duration(*s) * time.Second
	}
	if l.Spec.AcquireTime != nil {
		r.Acquired = l.Spec.AcquireTime.Time
	}
	if l.Spec.RenewTime != nil {
		r.Renewed = l.Spec.RenewTime.Time
	}
	r.HoldsText, r.HasHolds = a[Holds]
	r.Listed = ParseHolds(r.HoldsText)
	return r
}

// Holder is l's holderIdentity ("": none).
func Holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// ParseHolds parses a Holds annotation (addresses separated by commas;
// what does not parse is not an address).
func ParseHolds(holds string) []netip.Addr {
	var out []netip.Addr
	for _, f := range strings.Split(holds, ",") {
		if ip, err := netip.ParseAddr(strings.TrimSpace(f)); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// Marks are what a holder says on its Lease with every write, besides the
// election's own (Instance, Seal, Edited, Handover, Successor). Annotations
// writes them and ReadLease reads them back, so the two cannot drift.
type Marks struct {
	// Services: one of vipd's Services' Leases, which writes Holds, empty
	// or not; Listed are the addresses it lists.
	Services bool
	Listed   []netip.Addr
	VIP      string // the VIP the Lease's holder serves
	MAC      string // "": unknown, not written
	// Watching: the conflict watch runs, so Conflicts is written ("":
	// nothing else answers).
	Watching  bool
	Conflicts string
	Beat      *Beat // a spread-mode heartbeat's own marks (nil: not one)
}

// Beat is what a heartbeat says of its node. Every field is written either
// way: the annotations of a Lease a node took over from an earlier run of
// its own are kept unless overwritten.
type Beat struct {
	Node                  string
	Ready, Stopping, Read bool
}

// Annotations are m as written on the Lease.
func (m Marks) Annotations() map[string]string {
	a := map[string]string{}
	if m.Services {
		a[Holds] = JoinHolds(m.Listed)
	}
	if m.VIP != "" {
		a[VIP] = m.VIP
	}
	if m.MAC != "" {
		a[MAC] = m.MAC
	}
	if m.Watching {
		a[Conflicts] = m.Conflicts
	}
	if b := m.Beat; b != nil {
		a[Node] = b.Node
		a[Ready] = strconv.FormatBool(b.Ready)
		a[Stopping] = strconv.FormatBool(b.Stopping)
		a[Read] = strconv.FormatBool(b.Read)
	}
	return a
}

// JoinHolds writes ips as a Holds annotation, in the order given.
func JoinHolds(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ",")
}
