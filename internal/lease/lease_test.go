package lease

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Every field vipd reads of a Lease comes out of ReadLease, and a Lease
// without them reads as empty, not as an error.
func TestReadLease(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "vipd-node-n1", ResourceVersion: "42", DeletionTimestamp: &metav1.Time{Time: t0}, Finalizers: []string{"vipd.io/heartbeat"},
			Annotations: map[string]string{Holds: "198.51.100.1, bogus,2001:db8::1", Instance: "tok", Ready: "true", Stopping: "false", Read: "false", Node: "N1", MAC: "02:00:00:00:00:01", VIP: "198.51.100.200"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n1"), LeaseDurationSeconds: ptr.To[int32](4),
			AcquireTime: &metav1.MicroTime{Time: t0}, RenewTime: &metav1.MicroTime{Time: t0.Add(90 * time.Second)}},
	}
	r := ReadLease(l)
	want := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("2001:db8::1")}
	switch {
	case r.Key() != "kube-system/vipd-node-n1" || r.RV != "42" || r.Holder != "n1":
		t.Errorf("identity: %s %s %s", r.Key(), r.RV, r.Holder)
	case r.Duration != 4*time.Second || r.HeldFor() != 90*time.Second:
		t.Errorf("duration %s, held for %s", r.Duration, r.HeldFor())
	case !r.HasHolds || !slices.Equal(r.Listed, want):
		t.Errorf("holds %v (has %t), want %v", r.Listed, r.HasHolds, want)
	case !r.Deleting || !r.HasFinalizer("vipd.io/heartbeat") || r.HasFinalizer("other"):
		t.Errorf("deleting %t, finalizers %v", r.Deleting, r.Finalizers)
	case !r.Ready || r.Stopping || !r.Unread || r.Instance != "tok" || r.Node != "N1" || r.MAC != "02:00:00:00:00:01" || r.VIP != "198.51.100.200":
		t.Errorf("annotations: %+v", r)
	}
	e := ReadLease(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: ptr.To[int32](0)}})
	if e.Holder != "" || e.Duration != 0 || e.DurationOr(time.Second) != time.Second || e.HasHolds || e.Listed != nil || e.HeldFor() != 0 || e.Unread || e.Deleting {
		t.Errorf("an empty Lease reads as %+v", e)
	}
}

// What a holder writes (Marks.Annotations) reads back as it was meant
// (ReadLease), and a mark it does not have is not written at all.
func TestMarksReadBack(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("2001:db8::7")}
	for _, m := range []Marks{
		{Services: true, Listed: ips, MAC: "02:00:00:00:00:07", Watching: true, Conflicts: "198.51.100.7=02:00:00:00:00:99"},
		{Services: true, Beat: &Beat{Node: "n1", Ready: true, Stopping: false, Read: false}},
		{Services: true, Listed: ips[:1], VIP: "198.51.100.7", Beat: &Beat{Node: "n2", Stopping: true, Read: true}},
		{VIP: "198.51.100.200/32"},
	} {
		a := m.Annotations()
		r := ReadLease(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Annotations: a}})
		_, hasConflicts := a[Conflicts]
		_, hasMAC := a[MAC]
		switch {
		case r.HasHolds != m.Services || !slices.Equal(r.Listed, m.Listed):
			t.Errorf("%+v: holds %v (has %t)", m, r.Listed, r.HasHolds)
		case r.VIP != m.VIP || r.MAC != m.MAC || hasMAC != (m.MAC != ""):
			t.Errorf("%+v: vip %q mac %q (written %t)", m, r.VIP, r.MAC, hasMAC)
		case hasConflicts != m.Watching || a[Conflicts] != m.Conflicts:
			t.Errorf("%+v: conflicts %q (written %t)", m, a[Conflicts], hasConflicts)
		case m.Beat == nil && (has(a, Node) || has(a, Ready) || has(a, Stopping) || has(a, Read)):
			t.Errorf("%+v: heartbeat marks written: %v", m, a)
		case m.Beat != nil && (r.Node != m.Beat.Node || r.Ready != m.Beat.Ready || r.Stopping != m.Beat.Stopping || r.Unread == m.Beat.Read || a[Read] == "" || a[Stopping] == ""):
			t.Errorf("%+v: heartbeat reads back as %+v from %v", m.Beat, r, a)
		}
	}
}

func has(a map[string]string, k string) bool { _, ok := a[k]; return ok }
