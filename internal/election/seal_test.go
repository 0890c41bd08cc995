package election

import (
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func sealer(t *testing.T) *Elector {
	t.Helper()
	e, err := New(Options{Client: fake.NewClientset(), Namespace: "kube-system", Name: "vipd-node-n1", Identity: "n1",
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}, Guard: &pguard{},
		Annotations: func() map[string]string { return map[string]string{HoldsAnnotation: "198.51.100.10"} }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// Every field a seal covers, changed by someone else, is named; a field it
// does not cover (a follower's offer) leaves it valid.
func TestSealNamesWhatSomeoneElseChanged(t *testing.T) {
	e := sealer(t)
	l := e.written(nil, true, time.Unix(1000, 123456789))
	if s := ReadSeal(l); !s.OK || s.Changed != "" {
		t.Fatalf("vipd's own write: changed %q ok %v", s.Changed, s.OK)
	}
	for _, c := range []struct {
		name string
		edit func(*coordinationv1.Lease)
		want string
	}{
		{"holder cleared", func(l *coordinationv1.Lease) { l.Spec.HolderIdentity = nil }, "spec.holderIdentity"},
		{"duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr.To(int32(1)) }, "spec.leaseDurationSeconds (1, written 5)"},
		{"renew time", func(l *coordinationv1.Lease) { l.Spec.RenewTime = &metav1.MicroTime{Time: time.Unix(2000, 0)} }, "spec.renewTime"},
		{"holds", func(l *coordinationv1.Lease) { l.Annotations[HoldsAnnotation] = "198.51.100.11" }, "annotation " + HoldsAnnotation},
		{"holds removed", func(l *coordinationv1.Lease) { delete(l.Annotations, HoldsAnnotation) }, "annotation " + HoldsAnnotation},
		{"offer", func(l *coordinationv1.Lease) { l.Annotations[SuccessorAnnotation] = "n2" }, ""},
	} {
		m := l.DeepCopy()
		c.edit(m)
		var tr Trust
		tr.Check(l)
		got := tr.Check(m)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: Check says %q, want %q", c.name, got, c.want)
		}
	}
}

// A copy written back after a later write of its process is a replay; a
// Lease that never had a seal (kube-vip's) is trusted, one whose seal was
// removed is not.
func TestTrustReplayAndLegacy(t *testing.T) {
	e := sealer(t)
	first := e.written(nil, true, time.Unix(1000, 0))
	second := e.written(first, false, time.Unix(1001, 0))
	var tr Trust
	if tr.Check(first) != "" || tr.Check(second) != "" {
		t.Fatal("vipd's own writes are not trusted")
	}
	if got := tr.Check(first); !strings.Contains(got, "re-applied") {
		t.Fatalf("an old copy written back: %q", got)
	}
	var legacy Trust
	kv := &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n2")}}
	if got := legacy.Check(kv); got != "" {
		t.Fatalf("kube-vip's Lease: %q", got)
	}
	unsealed := second.DeepCopy()
	delete(unsealed.Annotations, SealAnnotation)
	if got := tr.Check(unsealed); !strings.Contains(got, "removed") {
		t.Fatalf("seal removed: %q", got)
	}
}

// The seal survives the API server's microsecond renew times.
func TestSealAfterMicroseconds(t *testing.T) {
	e := sealer(t)
	l := e.written(nil, true, time.Unix(1000, 123456789))
	l.Spec.RenewTime = &metav1.MicroTime{Time: l.Spec.RenewTime.Truncate(time.Microsecond)}
	if s := ReadSeal(l); s.Changed != "" {
		t.Fatalf("round trip: %q", s.Changed)
	}
}
