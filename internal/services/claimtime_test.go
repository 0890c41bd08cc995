package services

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/events"
	"github.com/vipd/vipd/internal/vip/viptest"
)

// readX is the address node b claims in the read tests, and readT0 when
// b's watch first saw node a's Lease (of 4 s) list it.
var (
	readX  = netip.MustParseAddr("198.51.100.140")
	readT0 = time.Unix(1000, 0)
)

// readWorld is node b's controller for the read tests, on clk, whose API
// (client) holds a's Lease listing readX: b's watch saw that version at
// readT0, and b holds its heartbeat (fence to readT0+5 s) with a write
// that listed readX.
func readWorld(t *testing.T, clk *clocktesting.FakeClock, client *fake.Clientset) (*Controller, *group, netip.Addr) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	c := &Controller{
		o: Options{Clock: clk, Client: client, NodeName: "b", Instance: "tb", Timing: election.Timing{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
			Datapath: Datapath{Kernel: viptest.New(nil), Sender: sender{}, Interface: "eth0", AnnouncePeriod: time.Second}},
		log: log, vips: map[netip.Addr]*serviceVIP{}, seen: leaseView{}, runCtx: context.Background(),
		poster: &events.Poster{Node: "b", Log: log},
	}
	g := c.newGroup("kube-system/" + HeartbeatName("b"))
	l, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), HeartbeatName("a"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.seen.saw(versionOf(l, 4*time.Second), readT0)
	g.vips[readX] = c.newServiceVIP(readX, "").ov
	g.k.addrs[readX] = true
	g.k.leading, g.k.until = true, readT0.Add(5*time.Second)
	g.k.published = map[netip.Addr]bool{readX: true}
	return c, g, readX
}

// A quorum read that showed another node's Lease live (seen 3.5 s of its
// 4 s duration) must block, however long its answer waits for the loop:
// its holder may renew right after the read. (Judged when the loop got to
// it, a loop busy for 1 s made the Lease look expired, and the address
// was claimed while its owner still held it: found by review.)
func TestReadJudgedWhenItReturned(t *testing.T) {
	clk := clocktesting.NewFakeClock(readT0)
	c, g, x := readWorld(t, clk, fake.NewClientset(sealedLease("a", "ta", 1, "10", readX.String(), readT0)))
	t0 := readT0
	clk.SetTime(t0.Add(3500 * time.Millisecond)) // a's v1 still live: 3.5 s < 4 s
	busy, release := make(chan struct{}), make(chan struct{})
	c.lp.post(func() { c.check(g) })             // the read starts
	c.lp.post(func() { close(busy); <-release }) // then the loop is busy (a big pass event)
	<-busy
	// Wait until the read has answered and posted its answer.
	for deadline := time.Now().Add(5 * time.Second); ; {
		c.lp.mu.Lock()
		n := len(c.lp.queue)
		c.lp.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read did not answer")
		}
		time.Sleep(time.Millisecond)
	}
	// The loop gets to the answer 1 s later; b's own fence is still fine.
	clk.SetTime(t0.Add(4500 * time.Millisecond))
	close(release)
	var held bool
	c.lp.do(func() { held = g.k.cleared[x] })
	if held {
		t.Fatalf("%s claimed: a read that found a's Lease live was judged %s after it answered, when it looked expired", x, time.Second)
	}
}

// As TestReadJudgedWhenItReturned, but the loop is idle: the API server
// reads the store at t0+3.5 s (a's version live) and its answer reaches
// vipd 1 s later (a slow response). a may renew right after the store
// read, so the read is judged when it was asked for. (Judged when its
// answer came, the address was claimed: found by a second review.)
func TestReadJudgedWhenAskedFor(t *testing.T) {
	clk := clocktesting.NewFakeClock(readT0)
	client := fake.NewClientset(sealedLease("a", "ta", 1, "10", readX.String(), readT0))
	client.PrependReactor("list", "leases", func(act clienttesting.Action) (bool, runtime.Object, error) {
		obj, err := client.Tracker().List(coordinationv1.SchemeGroupVersion.WithResource("leases"), coordinationv1.SchemeGroupVersion.WithKind("Lease"), act.GetNamespace())
		clk.Step(time.Second) // the answer travels for 1 s after the store was read
		return true, obj, err
	})
	c, g, x := readWorld(t, clk, client)
	t0 := readT0
	clk.SetTime(t0.Add(3500 * time.Millisecond))
	c.lp.do(func() { c.check(g) })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		var running bool
		c.lp.do(func() { running = g.k.checking })
		if !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the read did not answer")
		}
	}
	var held bool
	c.lp.do(func() { held = g.k.cleared[x] })
	if held {
		t.Fatalf("%s claimed at %s: the read saw a's Lease live at 3.5 s of 4 s, but was judged when its answer arrived", x, clk.Now().Sub(t0))
	}
}
