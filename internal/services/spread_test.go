package services

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vipd/vipd/internal/lease"
	"github.com/vipd/vipd/internal/vip/viptest"
)

// spreadNode starts a node in spread mode with a short settling time.
func spreadNode(t *testing.T, api *apiServer, name string, lag time.Duration) (*viptest.Kernel, func()) {
	t.Helper()
	return spreadNodeOn(t, api.client(lag), name)
}

// spreadNodeOn is spreadNode with a client of the test's.
func spreadNodeOn(t *testing.T, cs *fake.Clientset, name string) (*viptest.Kernel, func()) {
	t.Helper()
	k := viptest.New(nil)
	c, stop := run(t, Options{Client: cs, NodeName: name, Mode: Mode{Spread: true, Settle: 500 * time.Millisecond}, Datapath: Datapath{Kernel: k}})
	// Started for real (caches synced), so a short test does not end it
	// while it still waits for its caches.
	waitFor(t, name+" ready", c.Ready)
	return k, stop
}

// watchOverlap samples the kernels every 2 ms and records any address on
// two of them at once; stop returns what it saw.
func watchOverlap(ks map[string]*viptest.Kernel, addrs []string) (stop func() []string) {
	var mu sync.Mutex
	var bad []string
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			for _, a := range addrs {
				var on []string
				for n, k := range ks {
					if k.Has(a + "/32") {
						on = append(on, n)
					}
				}
				if len(on) > 1 {
					sort.Strings(on)
					mu.Lock()
					bad = append(bad, a+" on "+strings.Join(on, ","))
					mu.Unlock()
				}
			}
		}
	}()
	return func() []string {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return bad
	}
}

func spreadServices(n int) ([]runtime.Object, []string) {
	var objs []runtime.Object
	var addrs []string
	for i := range n {
		ip := fmt.Sprintf("198.51.100.%d", 120+i)
		objs = append(objs, lb("default", fmt.Sprintf("s%d", i), i, annotate(AnnotationIPs, ip)))
		addrs = append(addrs, ip)
	}
	return objs, addrs
}

// held lists which node has each address; an error when one is on none.
func heldBy(ks map[string]*viptest.Kernel, addrs []string) (map[string]int, error) {
	count := map[string]int{}
	for _, a := range addrs {
		on := ""
		for n, k := range ks {
			if k.Has(a + "/32") {
				on = n
			}
		}
		if on == "" {
			return nil, fmt.Errorf("%s on no node", a)
		}
		count[on]++
	}
	return count, nil
}

// TestSpreadBalancesAndMoves: 9 Services on 3 nodes in spread mode: 3 on
// each, every status names the node that has the address. One node stops
// (SIGTERM: it lets go): its VIPs move to the other two at once. It comes
// back: after settling, the split is even again. Never an address on two
// nodes (sampled every 2 ms).
func TestSpreadBalancesAndMoves(t *testing.T) {
	objs, addrs := spreadServices(9)
	api, client := newCluster(objs...)
	ks := map[string]*viptest.Kernel{}
	stops := map[string]func(){}
	for _, n := range []string{"n1", "n2", "n3"} {
		ks[n], stops[n] = spreadNode(t, api, n, 0)
	}
	overlap := watchOverlap(ks, addrs)
	even := func() error {
		c, err := heldBy(ks, addrs)
		if err != nil {
			return err
		}
		for _, n := range []string{"n1", "n2", "n3"} {
			if c[n] != 3 {
				return fmt.Errorf("split %v, want 3 each", c)
			}
		}
		for i, a := range addrs {
			s, err := client.CoreV1().Services("default").Get(context.Background(), fmt.Sprintf("s%d", i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !ks[s.Annotations[AnnotationHost]].Has(a+"/32") || len(s.Status.LoadBalancer.Ingress) != 1 {
				return fmt.Errorf("s%d: owner %q, status %v", i, s.Annotations[AnnotationHost], s.Status.LoadBalancer.Ingress)
			}
		}
		return nil
	}
	waitFor(t, "3 VIPs on each node", even)

	stops["n2"]()
	start := time.Now()
	waitFor(t, "n2's VIPs on n1 and n3", func() error {
		c, err := heldBy(map[string]*viptest.Kernel{"n1": ks["n1"], "n3": ks["n3"]}, addrs)
		if err == nil && c["n1"]+c["n3"] != 9 {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
	t.Logf("planned stop of n2: its VIPs moved in %s", time.Since(start).Round(time.Millisecond))
	// n2 comes back on the same host (a rolling update).
	run(t, Options{Client: api.client(0), NodeName: "n2", Mode: Mode{Spread: true, Settle: 500 * time.Millisecond}, Datapath: Datapath{Kernel: ks["n2"]}})
	waitFor(t, "even again after n2 settled", even)
	if bad := overlap(); len(bad) > 0 {
		t.Fatalf("an address on two nodes: %v", bad[:min(5, len(bad))])
	}
}

// TestSpreadStopHandsOver: a node that stops (SIGTERM) says so first and
// keeps its VIPs until the nodes they move to list them in their
// heartbeats, and say that their reads found them blocked
// (ReadAnnotation); only then does its own heartbeat stop listing them. The
// order is read from one watch of the Leases (the API's commit order),
// not from timing. (Without the hand-over each new owner lists an
// address only after the stopping node let go of it, and the address is
// on no node for that placement and heartbeat write; without waiting for
// the reads, a new owner whose read was slow claimed when it answered,
// not on the watch.) Every read of the Leases takes 300 ms here.
func TestSpreadStopHandsOver(t *testing.T) {
	objs, addrs := spreadServices(9)
	api, client := newCluster(objs...)
	ks := map[string]*viptest.Kernel{}
	stops := map[string]func(){}
	for _, n := range []string{"n1", "n2", "n3"} {
		cs := api.client(5 * time.Millisecond)
		cs.PrependReactor("list", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
			time.Sleep(300 * time.Millisecond)
			return false, nil, nil
		})
		ks[n], stops[n] = spreadNodeOn(t, cs, n)
	}
	waitFor(t, "3 VIPs on each node", func() error {
		c, err := heldBy(ks, addrs)
		if err == nil && (c["n1"] != 3 || c["n2"] != 3 || c["n3"] != 3) {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
	var mine []string
	for _, a := range addrs {
		if ks["n2"].Has(a + "/32") {
			mine = append(mine, a)
		}
	}
	w, err := client.CoordinationV1().Leases("").Watch(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	stopped := make(chan struct{})
	go func() {
		stops["n2"]()
		close(stopped)
	}()
	// For each of n2's addresses: listed by n1 or n3 before n2 stopped
	// listing it?
	before := map[string]bool{}
	unlisted := map[string]bool{}
	stoppingSaid := false
	timeout := time.After(10 * time.Second)
	for len(unlisted) < len(mine) {
		var ev watch.Event
		select {
		case ev = <-w.ResultChan():
		case <-timeout:
			t.Fatalf("n2 still lists %d of %v after 10 s", len(mine)-len(unlisted), mine)
		}
		l, ok := ev.Object.(*coordinationv1.Lease)
		if !ok || !strings.HasPrefix(l.Name, HeartbeatPrefix) {
			continue
		}
		holds := "," + strings.ReplaceAll(l.Annotations[HoldsAnnotation], " ", "") + ","
		for _, a := range mine {
			listed := strings.Contains(holds, ","+a+",") && lease.Holder(l) != ""
			switch {
			case l.Name == HeartbeatName("n2") && !listed:
				unlisted[a] = true
			case l.Name == HeartbeatName("n2"):
				stoppingSaid = stoppingSaid || l.Annotations[StoppingAnnotation] == "true"
			case listed && !unlisted[a] && l.Annotations[ReadAnnotation] == "true":
				before[a] = true
			}
		}
	}
	<-stopped
	if !stoppingSaid {
		t.Errorf("n2's heartbeat never said %s while it listed its VIPs", StoppingAnnotation)
	}
	for _, a := range mine {
		if !before[a] {
			t.Errorf("%s: no other heartbeat listed it, read, before n2 let go of it", a)
		}
	}
	waitFor(t, "n2's VIPs on n1 and n3", func() error {
		c, err := heldBy(map[string]*viptest.Kernel{"n1": ks["n1"], "n3": ks["n3"]}, addrs)
		if err == nil && c["n1"]+c["n3"] != 9 {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
}

// Nodes that start together (within the settling time) do not settle: the
// split is even at once, not after 2 × lease duration (seen in the e2e
// test: 11.8 s once, when one node started a moment after the others).
func TestSpreadNodesStartingTogetherDoNotSettle(t *testing.T) {
	objs, addrs := spreadServices(6)
	api, _ := newCluster(objs...)
	ks := map[string]*viptest.Kernel{}
	for _, n := range []string{"n1", "n2", "n3"} {
		ks[n] = viptest.New(nil)
		c, _ := run(t, Options{Client: api.client(0), NodeName: n, Mode: Mode{Spread: true, Settle: time.Minute}, Datapath: Datapath{Kernel: ks[n]}})
		waitFor(t, n+" ready", c.Ready)
		time.Sleep(300 * time.Millisecond) // each a moment after the one before
	}
	// Within 10 s (waitFor), while a node that settled would wait a minute.
	waitFor(t, "2 VIPs on each node", func() error {
		c, err := heldBy(ks, addrs)
		if err == nil && (c["n1"] != 2 || c["n2"] != 2 || c["n3"] != 2) {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
}

// TestSpreadExcludedNode: a Node labelled ExcludeLabel, or cordoned
// (kubectl drain), gets no VIP; its VIPs leave when the label is set or
// the node cordoned.
func TestSpreadExcludedNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		mark func(*corev1.Node)
	}{
		{"labelled", func(n *corev1.Node) { n.Labels = map[string]string{ExcludeLabel: ""} }},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }},
	} {
		t.Run(tc.name, func(t *testing.T) { testSpreadExcluded(t, tc.mark) })
	}
}

func testSpreadExcluded(t *testing.T, mark func(*corev1.Node)) {
	objs, addrs := spreadServices(6)
	for _, n := range []string{"n1", "n2", "n3"} {
		objs = append(objs, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}})
	}
	api, client := newCluster(objs...)
	ks := map[string]*viptest.Kernel{}
	for _, n := range []string{"n1", "n2", "n3"} {
		ks[n], _ = spreadNode(t, api, n, 0)
	}
	overlap := watchOverlap(ks, addrs)
	waitFor(t, "2 VIPs on each node", func() error {
		c, err := heldBy(ks, addrs)
		if err == nil && (c["n1"] != 2 || c["n2"] != 2 || c["n3"] != 2) {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
	n3, _ := client.CoreV1().Nodes().Get(context.Background(), "n3", metav1.GetOptions{})
	mark(n3)
	if _, err := client.CoreV1().Nodes().Update(context.Background(), n3, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no VIP on n3", func() error {
		c, err := heldBy(ks, addrs)
		if err == nil && (c["n3"] != 0 || c["n1"] != 3 || c["n2"] != 3) {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
	if bad := overlap(); len(bad) > 0 {
		t.Fatalf("an address on two nodes: %v", bad[:min(5, len(bad))])
	}
}

// TestSpreadLocalFollowsEndpoints: an externalTrafficPolicy: Local Service
// is placed only on a node with a ready endpoint, through the heartbeats
// (no Lease of its own).
func TestSpreadLocalFollowsEndpoints(t *testing.T) {
	svc, slice := localOn("web", "198.51.100.120", "n2")
	api, client := newCluster(svc, slice)
	ks := map[string]*viptest.Kernel{}
	for _, n := range []string{"n1", "n2", "n3"} {
		ks[n], _ = spreadNode(t, api, n, 0)
	}
	overlap := watchOverlap(ks, []string{"198.51.100.120"})
	waitFor(t, "on n2, the endpoint's node", announced(client, "default", "web", "198.51.100.120", "n2"))
	cur, _ := client.DiscoveryV1().EndpointSlices("default").Get(context.Background(), "web-1", metav1.GetOptions{})
	cur.Endpoints[0].NodeName = ptrTo("n3")
	if _, err := client.DiscoveryV1().EndpointSlices("default").Update(context.Background(), cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "moved to n3 with the endpoint", announced(client, "default", "web", "198.51.100.120", "n3"))
	if ks["n2"].Has("198.51.100.120/32") {
		t.Error("still on n2")
	}
	if _, err := client.CoordinationV1().Leases("default").Get(context.Background(), LocalLeasePrefix+"web", metav1.GetOptions{}); err == nil {
		t.Error("spread mode created a Lease for the Service")
	}
	if bad := overlap(); len(bad) > 0 {
		t.Fatalf("an address on two nodes: %v", bad[:min(5, len(bad))])
	}
}

func ptrTo[T any](v T) *T { return &v }

var _ = netip.Addr{}

// TestSpreadNoEligibleNode: a Local Service without a ready endpoint on any
// node: no node holds its VIP, and the allocator says why.
func TestSpreadNoEligibleNode(t *testing.T) {
	svc, slice := localOn("web", "198.51.100.120", "n7") // n7 runs no vipd
	api, client := newCluster(svc, slice)
	ks := map[string]*viptest.Kernel{}
	for _, n := range []string{"n1", "n2"} {
		ks[n], _ = spreadNode(t, api, n, 0)
	}
	waitFor(t, "NoEligibleNode Event", func() error {
		msg, err := eventMessage(client, "web", "NoEligibleNode")
		if err == nil && !strings.Contains(msg, "no live, eligible node has a ready endpoint") {
			err = fmt.Errorf("message %q", msg)
		}
		return err
	})
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		for n, k := range ks {
			if k.Has("198.51.100.120/32") {
				t.Fatalf("%s holds the VIP of a Service with no endpoint on it", n)
			}
		}
	}
}

// TestSpreadHeartbeatDeleted: kubectl delete lease of a node's heartbeat.
// The node cannot prove what it holds any more: it drops its VIPs and
// re-creates its Lease; the others take them over only once the deleted
// heartbeat's duration has passed. Never on two nodes.
func TestSpreadHeartbeatDeleted(t *testing.T) {
	objs, addrs := spreadServices(6)
	api, client := newCluster(objs...)
	ks := map[string]*viptest.Kernel{}
	for _, n := range []string{"n1", "n2"} {
		ks[n], _ = spreadNode(t, api, n, 0)
	}
	overlap := watchOverlap(ks, addrs)
	waitFor(t, "3 VIPs on each node", func() error {
		c, err := heldBy(ks, addrs)
		if err == nil && (c["n1"] != 3 || c["n2"] != 3) {
			err = fmt.Errorf("split %v", c)
		}
		return err
	})
	if err := client.CoordinationV1().Leases("kube-system").Delete(context.Background(), HeartbeatName("n1"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every VIP held again", func() error {
		_, err := heldBy(ks, addrs)
		return err
	})
	waitFor(t, "n1's heartbeat re-created", func() error {
		if h := holderOf(client, "kube-system", HeartbeatName("n1")); h != "n1" {
			return fmt.Errorf("holder %q", h)
		}
		return nil
	})
	if bad := overlap(); len(bad) > 0 {
		t.Fatalf("an address on two nodes: %v", bad[:min(5, len(bad))])
	}
}

// TestEligibleTiers: cordoned nodes get VIPs only when every ready node is
// cordoned; excluded nodes never.
func TestEligibleTiers(t *testing.T) {
	set := func(names ...string) func(string) bool {
		return func(n string) bool { return strings.Contains(strings.Join(names, ","), n) }
	}
	live := []candidate{{"n1", true}, {"n2", true}, {"n3", false}}
	for _, tc := range []struct {
		excluded, cordoned func(string) bool
		want               string
	}{
		{set(), set(), "n1,n2"},
		{set(), set("n1"), "n2"},
		{set("n2"), set("n1"), "n1"},
		{set(), set("n1", "n2"), "n1,n2"},
		{set("n1", "n2"), set(), "n3"},
		{set("n1", "n2", "n3"), set(), ""},
	} {
		if got := strings.Join(eligible(live, tc.excluded, tc.cordoned), ","); got != tc.want {
			t.Errorf("eligible = %q, want %q", got, tc.want)
		}
	}
}

// TestObserveHoldsOnly: only a change of the addresses a live node lists
// (same holder, readiness, duration) is "holds only", which paces the
// pass; anything that may change who is live plans at once.
func TestObserveHoldsOnly(t *testing.T) {
	v := beatView{}
	now := time.Unix(1000, 0)
	b := beat{rv: "1", holder: "n1", ready: true, dur: 5 * time.Second, holds: "198.51.100.10"}
	for _, tc := range []struct {
		name            string
		mod             func(*beat)
		after           time.Duration
		changed, holdsO bool
	}{
		{"first seen", func(*beat) {}, 0, true, false},
		{"renewal, nothing new", func(b *beat) { b.rv = "2" }, time.Second, false, false},
		{"another address listed", func(b *beat) { b.rv, b.holds = "3", "198.51.100.10,198.51.100.11" }, time.Second, true, true},
		{"readiness", func(b *beat) { b.rv, b.ready = "4", false }, time.Second, true, false},
		{"holder", func(b *beat) { b.rv, b.holder = "5", "" }, time.Second, true, false},
		{"back", func(b *beat) { b.rv, b.holder = "6", "n1" }, time.Second, true, false},
		{"renewed after it expired, other addresses", func(b *beat) { b.rv, b.holds = "7", "" }, 6 * time.Second, true, false},
	} {
		tc.mod(&b)
		now = now.Add(tc.after)
		changed, holdsOnly := v.observe("vipd-node-n1", b, false, now)
		if changed != tc.changed || holdsOnly != tc.holdsO {
			t.Errorf("%s: changed %v holdsOnly %v, want %v %v", tc.name, changed, holdsOnly, tc.changed, tc.holdsO)
		}
	}
	if changed, holdsOnly := v.observe("vipd-node-n1", b, true, now); !changed || holdsOnly {
		t.Errorf("deleted: changed %v holdsOnly %v, want true false", changed, holdsOnly)
	}
}

// TestSpreadAllocatorOnDemand: in spread mode the Services Lease is held
// only while there is a pool address to write: the Services get theirs,
// then the holder releases it and nobody writes it in steady state (the
// heartbeats are the only writes); a new Service gets an address again.
// Bad input is reported by one node, not by each.
func TestSpreadAllocatorOnDemand(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: PoolsNamespace, Name: PoolsName},
		Data: map[string]string{"range-global": "198.51.100.130-198.51.100.149"}}
	objs := []runtime.Object{cm}
	for i := range 6 {
		objs = append(objs, lb("default", fmt.Sprintf("p%d", i), i, nil))
	}
	api, client := newCluster(objs...)
	for _, n := range []string{"n1", "n2", "n3"} {
		spreadNode(t, api, n, 0)
	}
	ctx := context.Background()
	allocated := func(names ...string) func() error {
		return func() error {
			for _, name := range names {
				s, err := client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if s.Annotations[AnnotationIPs] == "" || len(s.Status.LoadBalancer.Ingress) != 1 {
					return fmt.Errorf("%s: address %q, status %v", name, s.Annotations[AnnotationIPs], s.Status.LoadBalancer.Ingress)
				}
			}
			return nil
		}
	}
	waitFor(t, "every pool Service has an address and a status", allocated("p0", "p1", "p2", "p3", "p4", "p5"))
	lease := func() (holder, rv string) {
		l, err := client.CoordinationV1().Leases("kube-system").Get(ctx, "plndr-svcs-lock", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return lease.Holder(l), l.ResourceVersion
	}
	waitFor(t, "the Services Lease released once there is nothing to allocate", func() error {
		if h, _ := lease(); h != "" {
			return fmt.Errorf("held by %s", h)
		}
		return nil
	})
	_, rv := lease()
	time.Sleep(2 * time.Second) // 4 retry periods
	if h, rv2 := lease(); rv2 != rv {
		t.Fatalf("the Services Lease was written in steady state (holder %q)", h)
	}

	_, err := client.CoreV1().Services("default").Create(ctx, lb("default", "late", 10, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.CoreV1().Services("default").Create(ctx, lb("default", "bad", 11, annotate(AnnotationIPs, "not-an-address")), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new Service allocated", allocated("late"))
	var bad int
	waitFor(t, "the bad Service reported", func() error {
		evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		bad = 0
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "bad" && e.Reason == "InvalidAddress" {
				bad++
			}
		}
		if bad == 0 {
			return fmt.Errorf("no InvalidAddress Event")
		}
		return nil
	})
	time.Sleep(time.Second) // the other nodes' passes
	evs, _ := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
	bad = 0
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == "bad" && e.Reason == "InvalidAddress" {
			bad++
		}
	}
	if bad != 1 {
		t.Errorf("%d InvalidAddress Events for the bad Service, want 1 (one node reports)", bad)
	}
}
