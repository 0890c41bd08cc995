package services

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/vip/viptest"
)

// BenchmarkPlanAndPlace: what every node computes on each pass in spread
// mode, for 1000 Services on 10 nodes.
func BenchmarkPlanAndPlace(b *testing.B) {
	var svcs []*corev1.Service
	for i := range 1000 {
		ip := fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250)
		svcs = append(svcs, lb("default", fmt.Sprintf("s%d", i), i, annotate(AnnotationIPs, ip)))
	}
	nodes := []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"}
	b.Run("Plan", func(b *testing.B) {
		for b.Loop() {
			Plan(Input{Services: svcs})
		}
	})
	plan := Plan(Input{Services: svcs})
	var units []Unit
	for _, e := range plan {
		units = append(units, Unit{Addrs: append([]netip.Addr(nil), e.Addrs...), Holder: nodes[len(units)%10]})
	}
	b.Run("Place", func(b *testing.B) {
		for b.Loop() {
			Place(units, nodes)
		}
	})
}

// BenchmarkSpreadPass: one pass of a spread-mode node with 1000 Services
// (every node runs one on each change of the heartbeats it plans on).
func BenchmarkSpreadPass(b *testing.B) {
	objs, _ := spreadServicesN(1000)
	api, _ := newCluster(objs...)
	o := Options{Client: api.client(0), NodeName: "n1", Mode: Mode{Spread: true, Settle: time.Millisecond},
		LeaseNamespace: "kube-system", LeaseName: "plndr-svcs-lock",
		Timing: election.Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond},
		Logger: slog.New(slog.DiscardHandler), Datapath: Datapath{Kernel: viptest.New(nil), Sender: sender{}, Interface: "eth0", AnnouncePeriod: time.Second}}
	c, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for c.Holding() < 1000 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	b.Logf("holding %d", c.Holding())
	for b.Loop() {
		c.pass(ctx)
	}
}

func spreadServicesN(n int) ([]runtime.Object, []string) {
	var objs []runtime.Object
	var addrs []string
	for i := range n {
		ip := fmt.Sprintf("198.18.%d.%d", 64+i/250, 1+i%250)
		objs = append(objs, lb("default", fmt.Sprintf("s%d", i), i, annotate(AnnotationIPs, ip)))
		addrs = append(addrs, ip)
	}
	return objs, addrs
}
