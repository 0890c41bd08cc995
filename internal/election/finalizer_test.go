package election

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"
)

const testFinalizer = "vipd.io/test"

// withFinalizers makes the fake API server treat finalizers as a real one
// does: a delete of a Lease that has some only marks it (deletionTimestamp),
// and the update that takes the last one off deletes it.
func (f *fakeAPI) withFinalizers() {
	f.PrependReactor("delete", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		d := a.(k8stesting.DeleteAction)
		obj, err := f.Tracker().Get(leaseGVR, d.GetNamespace(), d.GetName())
		if err != nil {
			return true, nil, err
		}
		l := obj.(*coordinationv1.Lease).DeepCopy()
		if len(l.Finalizers) == 0 {
			return false, nil, nil
		}
		l.DeletionTimestamp = ptr.To(metav1.Now())
		f.rv++
		l.ResourceVersion = strconv.Itoa(f.rv)
		f.journal.add("api delete: marked")
		return true, l, f.Tracker().Update(leaseGVR, l, d.GetNamespace())
	})
	f.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if l.DeletionTimestamp == nil || len(l.Finalizers) > 0 {
			return false, nil, nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		cur, err := f.Tracker().Get(leaseGVR, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(leaseGVR.GroupResource(), l.Name, fmt.Errorf("stale"))
		}
		f.journal.add("api deleted: last finalizer off, holder=%q", ptr.Deref(l.Spec.HolderIdentity, ""))
		return true, l, f.Tracker().Delete(leaseGVR, l.Namespace, l.Name)
	})
}

func (h *harness) startWithFinalizer(identity string) (*guard, *Elector) {
	g := &guard{name: identity, j: h.j}
	e, err := New(Options{
		Client: h.api, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: identity,
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Guard:  g, Clock: h.clock, Finalizer: testFinalizer,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
	return g, e
}

func (f *fakeAPI) lease(t *testing.T) *coordinationv1.Lease {
	t.Helper()
	l, err := f.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-cp-lock", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// kubectl delete lease while a node holds it: the Lease stays, marked,
// until the holder has dropped its VIP and let it go; nobody holds it
// meanwhile; then it is created anew and held again.
func TestDeletedLeaseStaysUntilTheHolderLetsGo(t *testing.T) {
	h := newHarness(t)
	h.api.withFinalizers()
	g1, _ := h.startWithFinalizer("n1")
	eventually(t, "n1 holds", func() bool { held, _ := g1.state(); return held })
	if l := h.api.lease(t); !slices.Contains(l.Finalizers, testFinalizer) {
		t.Fatalf("the Lease has finalizers %v; want %s", l.Finalizers, testFinalizer)
	}
	g2, _ := h.startWithFinalizer("n2")
	settle()
	if err := h.api.CoordinationV1().Leases("kube-system").Delete(context.Background(), "plndr-cp-lock", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted and created again", func() bool {
		l := h.api.lease(t)
		return l != nil && l.DeletionTimestamp == nil && holder(l) != ""
	})
	eventually(t, "held again", func() bool {
		a, _ := g1.state()
		b, _ := g2.state()
		return a || b
	})
	ev := h.j.list()
	marked, dropped, gone := slices.Index(ev, "api delete: marked"), slices.Index(ev, "n1 drop"), slices.Index(ev, `api deleted: last finalizer off, holder=""`)
	if marked < 0 || dropped < marked || gone < dropped {
		t.Fatalf("want the deletion marked, then n1's drop, then the finalizer off by n1 (released); journal: %q", ev)
	}
	for _, e := range ev[marked:gone] {
		if e == "n2 hold" || e == "n1 hold" {
			t.Fatalf("held while the Lease was being deleted; journal: %q", ev)
		}
	}
}

// A Lease marked for deletion whose holder is gone (its process or node):
// a follower takes the finalizer off only a lease duration after it saw
// the marked version, then creates the Lease and holds it.
func TestDeletedLeaseOfADeadHolder(t *testing.T) {
	h := newHarness(t)
	h.api.withFinalizers()
	now := metav1.NewMicroTime(time.Now())
	if _, err := h.api.CoordinationV1().Leases("kube-system").Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", Finalizers: []string{testFinalizer}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("dead"), LeaseDurationSeconds: ptr.To(int32(5)), RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.api.CoordinationV1().Leases("kube-system").Delete(context.Background(), "plndr-cp-lock", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	g, e := h.startWithFinalizer("n1")
	eventually(t, "lease observed", func() bool { return e.Ready() == nil })
	h.clock.Step(4900 * time.Millisecond)
	settle()
	if l := h.api.lease(t); l == nil || l.DeletionTimestamp == nil {
		t.Fatalf("the finalizer came off before the dead holder's lease duration passed: %v", l)
	}
	if held, _ := g.state(); held {
		t.Fatal("held while the dead holder's Lease was being deleted")
	}
	h.clock.Step(100 * time.Millisecond)
	eventually(t, "created anew and held", func() bool {
		held, _ := g.state()
		l := h.api.lease(t)
		return held && l != nil && l.DeletionTimestamp == nil && holder(l) == "n1"
	})
}
