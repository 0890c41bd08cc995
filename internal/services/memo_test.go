package services

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vipd/vipd/internal/vip/viptest"
)

// TestPlanMemoKeepsOnlyTheSameInput: the plan is kept while the informers
// saw nothing (gen) and every other input is the same value; anything else
// plans again.
func TestPlanMemoKeepsOnlyTheSameInput(t *testing.T) {
	svcs := []*corev1.Service{lb("default", "a", 0, annotate(AnnotationIPs, "198.51.100.10")), lb("default", "b", 1, nil)}
	p := pools(t, map[string]string{"cidr-global": "198.51.100.32/28"})
	base := func() Input {
		return Input{Services: svcs, Pools: p, Reserved: netip.MustParseAddr("198.51.100.1"), Allocate: true,
			Others: map[netip.Addr]string{netip.MustParseAddr("198.51.100.2"): "node n1"}, Subnets: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	}
	var m planMemo
	first := m.get(7, base())
	if again := m.get(7, base()); &again[0] != &first[0] || m.plans.Load() != 1 {
		t.Fatalf("the same input planned again (%d plans)", m.plans.Load())
	}
	for _, tc := range []struct {
		name string
		gen  uint64
		mod  func(*Input)
	}{
		{"an informer event", 8, func(*Input) {}},
		{"another Service count", 7, func(in *Input) { in.Services = svcs[:1] }},
		{"other pools", 7, func(in *Input) { in.Pools = pools(t, map[string]string{"cidr-global": "198.51.100.64/28"}) }},
		{"another reserved address", 7, func(in *Input) { in.Reserved = netip.MustParseAddr("198.51.100.3") }},
		{"not the allocator", 7, func(in *Input) { in.Allocate = false }},
		{"peeking", 7, func(in *Input) { in.Peek = true }},
		{"another node address", 7, func(in *Input) { in.Others = map[netip.Addr]string{netip.MustParseAddr("198.51.100.4"): "node n2"} }},
		{"another subnet", 7, func(in *Input) { in.Subnets = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")} }},
		{"an allocation the cache does not show yet", 7, func(in *Input) {
			in.Unconfirmed = map[string][]netip.Addr{"default/b": {netip.MustParseAddr("198.51.100.33")}}
		}},
	} {
		var m planMemo
		m.get(7, base())
		in := base()
		tc.mod(&in)
		m.get(tc.gen, in)
		if m.plans.Load() != 2 {
			t.Errorf("%s: the plan was kept", tc.name)
		}
	}
	// An allocation waiting for the cache plans every time: it comes and
	// goes with writes, not with informer events.
	in := base()
	in.Unconfirmed = map[string][]netip.Addr{"default/b": {netip.MustParseAddr("198.51.100.33")}}
	m = planMemo{}
	m.get(7, in)
	m.get(7, in)
	if m.plans.Load() != 2 {
		t.Error("a plan with unconfirmed allocations was kept")
	}
	// The units are the caller's to change (Place sets holders).
	m = planMemo{}
	m.get(7, base())
	us, _ := m.grouped(func(string) []string { return nil })
	for i := range us {
		us[i].Holder = "n9"
	}
	if again, _ := m.grouped(func(string) []string { return nil }); len(again) == 0 || again[0].Holder != "" {
		t.Errorf("grouped returned the kept units, changed by their last caller: %+v", again)
	}
}

// TestHeartbeatsAloneMakeNoPlan: in spread mode a change of another node's
// heartbeat makes a pass (placement and claims depend on it) but no plan;
// a new Service makes one.
func TestHeartbeatsAloneMakeNoPlan(t *testing.T) {
	var objs []runtime.Object
	for i := range 3 {
		objs = append(objs, lb("default", fmt.Sprintf("s%d", i), i, annotate(AnnotationIPs, fmt.Sprintf("198.51.100.%d", 120+i))))
	}
	api, client := newCluster(objs...)
	var passes atomic.Int64
	c, _ := run(t, Options{Client: api.client(0), NodeName: "n1", Mode: Mode{Spread: true, Settle: time.Millisecond},
		Logger: slog.New(passEnds(func() { passes.Add(1) })), Datapath: Datapath{Kernel: viptest.New(nil)}})
	for i := range 3 {
		waitFor(t, "announced", announced(client, "default", fmt.Sprintf("s%d", i), fmt.Sprintf("198.51.100.%d", 120+i), "n1"))
	}
	quiet := func() {
		t.Helper()
		n := c.memo.plans.Load()
		for range 50 {
			time.Sleep(200 * time.Millisecond)
			if m := c.memo.plans.Load(); m == n {
				return
			} else {
				n = m
			}
		}
		t.Fatal("never quiet")
	}
	quiet()
	plans, before := c.memo.plans.Load(), passes.Load()
	// A node that is not ready (so that it is given nothing), listing
	// addresses no Service has, again and again.
	leases := client.CoordinationV1().Leases("kube-system")
	now := metav1.NewMicroTime(time.Now())
	l, err := leases.Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: HeartbeatName("n9"), Namespace: "kube-system", Annotations: map[string]string{ReadyAnnotation: "false", HoldsAnnotation: ""}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptrTo("n9"), LeaseDurationSeconds: ptrTo(int32(4)), AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		time.Sleep(300 * time.Millisecond)
		l.Annotations[HoldsAnnotation] = fmt.Sprintf("198.51.100.%d", 200+i)
		if l, err = leases.Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "passes on the heartbeat changes", func() error {
		if n := passes.Load() - before; n < 3 {
			return fmt.Errorf("%d passes", n)
		}
		return nil
	})
	if n := c.memo.plans.Load() - plans; n != 0 {
		t.Errorf("%d plans made on heartbeat changes alone (%d passes)", n, passes.Load()-before)
	}
	if _, err := client.CoreV1().Services("default").Create(context.Background(), lb("default", "new", 9, annotate(AnnotationIPs, "198.51.100.130")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new Service announced", announced(client, "default", "new", "198.51.100.130", "n1"))
}
