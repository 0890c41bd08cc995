package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/services"
)

// bothOrders samples every node's addresses every 20 ms, once in each
// order of the nodes, and records an address on two nodes in both sweeps
// (one sweep alone reports a fast hand-over as two owners). owners is the
// last forward sweep.
type bothOrders struct {
	stop, done chan struct{}
	mu         sync.Mutex
	bad        []string
	last       map[netip.Addr][]string
	lastAt     time.Time // when the sweep behind last began
}

func sampleBothOrders(l *lab.Lab) *bothOrders {
	s := &bothOrders{stop: make(chan struct{}), done: make(chan struct{})}
	fwd := slices.Clone(l.Nodes)
	rev := slices.Clone(l.Nodes)
	slices.Reverse(rev)
	go func() {
		defer close(s.done)
		for {
			at := time.Now()
			a, err1 := lab.OwnersIn(fwd)
			b, err2 := lab.OwnersIn(rev)
			if err1 == nil && err2 == nil {
				s.mu.Lock()
				s.last, s.lastAt = a, at
				for ip, on := range a {
					if len(on) > 1 && len(b[ip]) > 1 {
						s.bad = append(s.bad, fmt.Sprintf("%s on %v at %s", ip, on, time.Now().Format("15:04:05.000")))
					}
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return s
}

// owners is where each of ips is now (one node each), or an error.
func (s *bothOrders) owners(ips []netip.Addr) (map[netip.Addr]string, error) {
	return s.ownersSince(ips, time.Time{})
}

// ownersSince is owners as read by a sweep that began after t.
func (s *bothOrders) ownersSince(ips []netip.Addr, t time.Time) (map[netip.Addr]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastAt.After(t) {
		return nil, fmt.Errorf("no sweep since %s yet", t.Format("15:04:05.000"))
	}
	out := map[netip.Addr]string{}
	for _, ip := range ips {
		if len(s.last[ip]) != 1 {
			return nil, fmt.Errorf("%s on %v", ip, s.last[ip])
		}
		out[ip] = s.last[ip][0]
	}
	return out, nil
}

func (s *bothOrders) check(t *testing.T, when string) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.bad[:min(5, len(s.bad))] {
		t.Errorf("%s: an address on two nodes: %s", when, b)
	}
	s.bad = nil
}

func (s *bothOrders) end(t *testing.T) {
	close(s.stop)
	<-s.done
	s.check(t, "at the end")
}

// TestLeaseEditedBySomeoneElse (S9): spread mode, 30 Services, the
// control-plane VIP; one node's API answers 500 ms late. An operator
// clears a heartbeat's holder, rewrites its holds list, shortens its
// duration to 1 s, and clears the holder of plndr-cp-lock (kubectl patch).
// Never an address on two nodes (every node's addresses read every 20 ms
// in both orders); every VIP held again within lease duration + 3 s; then
// no VIP moves for 10 s. Then a Service deleted and created again 50
// times: never on two nodes, and held once at the end.
func TestLeaseEditedBySomeoneElse(t *testing.T) {
	l, sc := servicesLab(t)
	sc = withEnv(sc, "svc_election=true")
	ctx := context.Background()
	c := l.Admin
	createNodes(t, l)
	var keys []string
	var ips []netip.Addr
	for i := range 30 {
		ip := fmt.Sprintf("198.51.100.%d", 60+i)
		create(t, c, lbService("default", fmt.Sprintf("e-%d", i), port, withIPs(ip)))
		keys = append(keys, fmt.Sprintf("default/e-%d", i))
		ips = append(ips, netip.MustParseAddr(ip))
	}
	lagged := l.Nodes[1]
	stopLag, err := l.LagAPI(lagged, 16443, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopLag)
	runOnEveryNode(t, l, sc, func(n *lab.Host) []string {
		if n == lagged {
			return lab.APIEnv(16443)
		}
		return nil
	})
	names := []string{l.Nodes[0].Name, l.Nodes[1].Name, l.Nodes[2].Name}
	balanced(t, l, keys, names, 60*time.Second)
	all := append(slices.Clone(ips), l.VIP)
	s := sampleBothOrders(l)
	var before map[netip.Addr]string
	eventually(t, 10*time.Second, "every address on one node", func() (err error) {
		before, err = s.owners(all)
		return err
	})

	holderOf := func(ip netip.Addr) string { return before[ip] }
	edits := []struct{ name, lease, patch string }{
		{"heartbeat holder cleared", services.HeartbeatName(holderOf(ips[0])), `{"spec":{"holderIdentity":null}}`},
		{"heartbeat holds rewritten", services.HeartbeatName(holderOf(ips[1])), `{"metadata":{"annotations":{"vipd.io/holds":""}}}`},
		{"heartbeat duration shortened", services.HeartbeatName(lagged.Name), `{"spec":{"leaseDurationSeconds":1}}`},
		{"control-plane holder cleared", leaseName, `{"spec":{"holderIdentity":null}}`},
	}
	for _, e := range edits {
		at := time.Now()
		if _, err := c.CoordinationV1().Leases(leaseNS).Patch(ctx, e.lease, types.MergePatchType, []byte(e.patch), metav1.PatchOptions{}); err != nil {
			t.Fatalf("%s: %v", e.name, err)
		}
		// Its holder steps down and writes it again itself (sealed), and
		// every address is back where it was, within lease duration + 3 s.
		var dark, settled time.Duration
		var darkSince time.Time
		// Every address where it was, read by a sweep that began after
		// the Lease was seen rewritten (the holder steps down and takes
		// it back within milliseconds: an earlier sweep can predate that).
		var rewritten time.Time
		poll(t, 20*time.Millisecond, leaseDuration+3*time.Second, e.name+": rewritten by its holder, every address held again", func() error {
			now, err := s.ownersSince(all, rewritten)
			if err == nil {
				err = sameOwners(now, before)
			}
			if err != nil {
				if darkSince.IsZero() {
					darkSince = time.Now()
				}
				return err
			}
			if !darkSince.IsZero() {
				dark, darkSince = max(dark, time.Since(darkSince)), time.Time{}
			}
			le, err := c.CoordinationV1().Leases(leaseNS).Get(ctx, e.lease, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if seal := election.ReadSeal(le); !seal.OK || seal.Changed != "" || le.Annotations[election.EditedAnnotation] == "" {
				return fmt.Errorf("not rewritten by its holder yet: seal %+v, %s %q", seal, election.EditedAnnotation, le.Annotations[election.EditedAnnotation])
			}
			if rewritten.IsZero() {
				rewritten = time.Now()
				return errors.New("rewritten: waiting for a sweep after it")
			}
			settled = time.Since(at)
			return nil
		})
		// No VIP moves in the 10 s after it settled.
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			now, err := s.owners(all)
			if err == nil {
				err = sameOwners(now, before)
			}
			if err != nil {
				t.Errorf("%s: after it settled: %v", e.name, err)
				break
			}
		}
		t.Logf("%s (%s): rewritten by its holder and every address where it was after %s (an address on no node for at most %s, sampled every 20 ms)", e.name, e.lease, settled.Round(10*time.Millisecond), dark.Round(10*time.Millisecond))
		s.check(t, e.name)
	}
	out, err := vipdStatus(t, l)
	if err != nil || !containsAll(string(out), "LEASES EDITED", "plndr-cp-lock", "spec.holderIdentity") {
		t.Errorf("vipd status does not show the edits: %v\n%s", err, out)
	}

	// A Service deleted and created again 50 times, the heartbeats slowed
	// on one node.
	churn := lbService("default", "churn", port, withIPs("198.51.100.95"))
	for range 50 {
		create(t, c, churn)
		time.Sleep(time.Duration(50+time.Now().UnixNano()%200) * time.Millisecond)
		if err := c.CoreV1().Services("default").Delete(ctx, "churn", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(time.Now().UnixNano()%100) * time.Millisecond)
	}
	create(t, c, churn)
	eventually(t, leaseDuration+3*time.Second, "the churned Service's VIP on one node", func() error {
		_, err := s.owners([]netip.Addr{netip.MustParseAddr("198.51.100.95")})
		return err
	})
	s.end(t)
}

// poll is eventually, trying every period.
func poll(t testing.TB, period, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(period)
	}
}

// sameOwners says how now differs from before.
func sameOwners(now, before map[netip.Addr]string) error {
	var moved []string
	for ip, n := range before {
		if now[ip] != n {
			moved = append(moved, fmt.Sprintf("%s %s->%s", ip, n, now[ip]))
		}
	}
	sort.Strings(moved)
	if len(moved) > 0 {
		return fmt.Errorf("moved: %v", moved)
	}
	return nil
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// runOnEveryNode starts vipd on every node with sc's container and the
// extra environment env gives the node; it is killed when the test ends,
// and its log shown if the test failed.
func runOnEveryNode(t *testing.T, l *lab.Lab, sc lab.ScenarioOptions, env func(*lab.Host) []string) map[string]*lab.Proc {
	t.Helper()
	procs := map[string]*lab.Proc{}
	dumpOnFailure(t, procs)
	t.Cleanup(func() { lab.KillAll(procs) })
	for _, n := range l.Nodes {
		ct, err := sc.Container(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		ct.Env = append(ct.Env, env(n)...)
		if procs[n.Name], err = l.RunVipd(context.Background(), n, ct, sc.Token); err != nil {
			t.Fatal(err)
		}
	}
	return procs
}
