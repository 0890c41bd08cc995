package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/election"
)

func TestStatusText(t *testing.T) {
	now := time.Date(2026, 11, 28, 7, 0, 0, 0, time.UTC)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", Annotations: map[string]string{election.VIPAnnotation: "198.51.100.200/32"}},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr.To("n2"), LeaseDurationSeconds: ptr.To(int32(5)), LeaseTransitions: ptr.To(int32(3)),
			AcquireTime: &metav1.MicroTime{Time: now.Add(-time.Minute)}, RenewTime: &metav1.MicroTime{Time: now.Add(-400 * time.Millisecond)},
		},
	}
	var b bytes.Buffer
	if err := printStatus(&b, leaseStatus(l, now), "text"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Holder:       n2\n", "VIP:          198.51.100.200/32", "Renewed:      400ms ago (lease 5s)", "(3 transitions)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("lacks %q:\n%s", want, b.String())
		}
	}
	st := leaseStatus(l, now.Add(10*time.Second))
	b.Reset()
	printStatus(&b, st, "text")
	if !st.Expired || !strings.Contains(b.String(), "EXPIRED") {
		t.Errorf("an old renewal is not reported as expired:\n%s", b.String())
	}
}
