package controlplane

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/metrics"
	"github.com/vipd/vipd/internal/vip/viptest"
)

type sender struct{}

func (sender) Announce(netip.Addr) error { return nil }

func TestSweepsLeftoversThenFollowsTheName(t *testing.T) {
	k := viptest.New(nil)
	k.Put("eth1", "198.51.100.200/32", 2*time.Second, true) // vipd's mark: left by an earlier run
	clk := clocktesting.NewFakeClock(time.Now())
	var mu sync.Mutex
	answer := netip.MustParseAddr("198.51.100.200")
	client := fake.NewClientset()
	v, err := New(Options{
		Client: client, Kernel: k, Sender: sender{},
		Interface: "eth0", Prefix: netip.MustParsePrefix("198.51.100.200/32"),
		Resolve: func() (netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			return answer, nil
		},
		ResolveEvery: 30 * time.Second,
		Namespace:    "kube-system", LeaseName: "plndr-cp-lock", NodeName: "n1",
		// Long timings: the fake clock jumps ahead of the elector's loop, and
		// the fence must not expire between two renewals because of that.
		Timing:         election.Timing{LeaseDuration: 100 * time.Second, RenewDeadline: 60 * time.Second, RetryPeriod: 10 * time.Second},
		AnnouncePeriod: 3 * time.Second,
		Metrics:        metrics.NewVIP(prometheus.NewRegistry(), "l", "v"),
		Clock:          clk, Logger: slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if k.Has("198.51.100.200/32") {
		t.Fatal("leftover on eth1 not swept before the election")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	wait(t, "VIP held", func() bool { return k.Has("198.51.100.200/32") })

	mu.Lock()
	answer = netip.MustParseAddr("198.51.100.201")
	mu.Unlock()
	clk.Step(31 * time.Second) // past ResolveEvery: the name is resolved again
	wait(t, "VIP moved to the new address", func() bool {
		return k.Has("198.51.100.201/32") && !k.Has("198.51.100.200/32")
	})
	// The Lease's informational annotation follows the new address.
	wait(t, "Lease annotation updated", func() bool {
		clk.Step(time.Second) // renewals every 10 s write it
		time.Sleep(20 * time.Millisecond)
		l, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-cp-lock", metav1.GetOptions{})
		return err == nil && l.Annotations[election.VIPAnnotation] == "198.51.100.201/32"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if k.Has("198.51.100.201/32") {
		t.Fatal("VIP left on the interface after shutdown")
	}
}

func wait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tlog sends log lines to the test log (shown when the test fails).
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestRefusesAnAddressItDidNotAdd: a VIP that is already on the node and
// not vipd's (the node's own /24, a permanent /32 such as kube-vip leaves,
// a DHCP /32) is a configuration error; nothing is removed (S7).
func TestRefusesAnAddressItDidNotAdd(t *testing.T) {
	for name, put := range map[string]func(*viptest.Kernel){
		"node address":  func(k *viptest.Kernel) { k.Put("eth0", "198.51.100.200/24", 0, false) },
		"permanent /32": func(k *viptest.Kernel) { k.Put("eth0", "198.51.100.200/32", 0, false) },
		"DHCP /32":      func(k *viptest.Kernel) { k.Put("eth0", "198.51.100.200/32", time.Hour, false) },
	} {
		k := viptest.New(nil)
		put(k)
		_, err := New(Options{
			Client: fake.NewClientset(), Kernel: k, Sender: sender{},
			Interface: "eth0", Prefix: netip.MustParsePrefix("198.51.100.200/32"),
			Namespace: "kube-system", LeaseName: "plndr-cp-lock", NodeName: "n1",
			Timing:  election.Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
			Metrics: metrics.NewVIP(prometheus.NewRegistry(), "l", "v"), Logger: slog.New(slog.DiscardHandler),
		})
		if !errors.Is(err, ErrForeignAddress) || !strings.Contains(err.Error(), "eth0") || !strings.Contains(err.Error(), "ip addr del") {
			t.Errorf("%s: err %v, want ErrForeignAddress naming the interface and the fix", name, err)
		}
		if found, _ := k.Find(netip.MustParseAddr("198.51.100.200")); len(found) != 1 {
			t.Errorf("%s: the address was touched: %v", name, found)
		}
	}
}

// TestColdStartProbes: before the Lease is first created, the VIP is asked
// for on the wire. Another host answering is a conflict (reported, counted,
// no Lease written) with a back-off that doubles; once nobody answers the
// Lease is created. The same answer while another vipd created the Lease
// meanwhile is no conflict.
func TestColdStartProbes(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	client := fake.NewClientset()
	rogue := net.HardwareAddr{2, 0, 0, 0, 0, 0x66}
	answering := true
	var conflicts []netip.Addr
	v, err := New(Options{
		Client: client, Kernel: viptest.New(nil), Sender: sender{},
		Interface: "eth0", Prefix: netip.MustParsePrefix("198.51.100.200/32"),
		Namespace: "kube-system", LeaseName: "plndr-cp-lock", NodeName: "n1",
		Timing:  election.Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Metrics: metrics.NewVIP(prometheus.NewRegistry(), "l", "v"),
		Probe: func(_ context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
			if !answering {
				return nil, nil
			}
			return map[netip.Addr]net.HardwareAddr{addrs[0]: rogue}, nil
		},
		OnConflict: func(a netip.Addr) { conflicts = append(conflicts, a) },
		Clock:      clk, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	err = v.coldStart(ctx)
	if err == nil || !strings.Contains(err.Error(), rogue.String()) || len(conflicts) != 1 {
		t.Fatalf("a rogue answering at a cold start: %v, conflicts %v; want an error naming its MAC, one conflict", err, conflicts)
	}
	if err := v.coldStart(ctx); err == nil || !strings.Contains(err.Error(), "waiting") || len(conflicts) != 1 {
		t.Fatalf("right after: %v (conflicts %d); want it to wait without probing", err, len(conflicts))
	}
	clk.Step(time.Second)
	if err := v.coldStart(ctx); err == nil || len(conflicts) != 2 {
		t.Fatalf("after the first back-off: %v (conflicts %d)", err, len(conflicts))
	}
	clk.Step(time.Second)
	if err := v.coldStart(ctx); err == nil || !strings.Contains(err.Error(), "waiting") {
		t.Fatalf("the back-off did not double: %v", err)
	}
	clk.Step(time.Second)
	answering = false
	if err := v.coldStart(ctx); err != nil {
		t.Fatalf("nobody answering: %v; want the claim to go ahead", err)
	}
	// Another vipd created the Lease (and added the VIP) while this node
	// probed: its answer is no conflict.
	answering = true
	if _, err := client.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n2")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := len(conflicts)
	if err := v.coldStart(ctx); err == nil || len(conflicts) != n {
		t.Fatalf("the Lease held by n2: %v, conflicts %d→%d; want no conflict and no claim", err, n, len(conflicts))
	}
}
