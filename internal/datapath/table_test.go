package datapath

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// journal records what every target was asked, in order; a target whose
// gate is set blocks in Hold until it is closed (a slow netlink call).
type journal struct {
	mu  sync.Mutex
	log []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.log = append(j.log, s)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.log...)
}

type target struct {
	name    string
	j       *journal
	gate    chan struct{}
	holding chan struct{} // told when Hold starts (with gate)
}

func (t *target) Hold(until time.Time) {
	if g := t.gate; g != nil { // the first Hold only
		t.gate = nil
		t.holding <- struct{}{}
		<-g
	}
	t.j.add(fmt.Sprintf("%s hold %d", t.name, until.Unix()))
}
func (t *target) Drop(reason string) { t.j.add(t.name + " drop " + reason) }

var at = func(s int64) time.Time { return time.Unix(s, 0) }

// The zero Table applies every change at once, in its caller.
func TestZeroTableAppliesInTheCaller(t *testing.T) {
	var tb Table
	j := &journal{}
	a := &target{name: "a", j: j}
	tb.Hold(a, at(10))
	tb.Drop(a, "x")
	tb.Hold(a, at(11))
	tb.Wait(tb.Barrier())
	want := []string{"a hold 10", "a drop x", "a hold 11"}
	if got := j.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A drop asked for while a slow hold is being applied is done after it,
// before any hold queued meanwhile, and Wait returns only then (S3: the
// Lease write that lets the address go waits for it).
func TestDropWaitsForTheHoldInFlightAndGoesFirst(t *testing.T) {
	tb := &Table{}
	j := &journal{}
	release := make(chan struct{})
	slow := &target{name: "slow", j: j, gate: release, holding: make(chan struct{}, 1)}
	b := &target{name: "b", j: j}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	waitRunning(t, tb)

	tb.Hold(slow, at(10))
	<-slow.holding // the applier is inside slow's Hold
	tb.Hold(b, at(10))
	tb.Drop(slow, "gone")
	n := tb.Barrier()
	waited := make(chan struct{})
	go func() { tb.Wait(n); close(waited) }()
	select {
	case <-waited:
		t.Fatal("Wait returned while the drop waits behind a hold in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-waited
	cancel()
	<-done
	want := []string{"slow hold 10", "slow drop gone", "b hold 10"}
	if got := j.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// A target held again after a drop is dropped, then held, and OnHeld is
// told that an address went on; a renewal (a hold of what is on) is not
// news.
func TestHoldAfterDropIsNewsOnlyOnce(t *testing.T) {
	tb := &Table{}
	j := &journal{}
	var news sync.WaitGroup
	var mu sync.Mutex
	count := 0
	tb.OnHeld = func() { mu.Lock(); count++; mu.Unlock(); news.Done() }
	a := &target{name: "a", j: j}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	waitRunning(t, tb)
	news.Add(1)
	tb.Hold(a, at(10))
	news.Wait()
	tb.Hold(a, at(11)) // a renewal
	tb.Drop(a, "x")
	news.Add(1)
	tb.Hold(a, at(12))
	news.Wait()
	cancel()
	<-done
	want := []string{"a hold 10", "a hold 11", "a drop x", "a hold 12"}
	got := j.get()
	if len(got) == 3 { // the renewal was overtaken by the drop: never applied
		want = []string{"a hold 10", "a drop x", "a hold 12"}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if count != 2 {
		t.Fatalf("OnHeld told %d times, want 2", count)
	}
}

// What is queued when Run ends is applied before it returns, and a drop
// after it is applied in the caller.
func TestRunEndsWithNothingQueued(t *testing.T) {
	tb := &Table{}
	j := &journal{}
	a, b := &target{name: "a", j: j}, &target{name: "b", j: j}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tb.Run(ctx); close(done) }()
	waitRunning(t, tb)
	tb.Hold(a, at(10))
	tb.Forget(b, "stop")
	cancel()
	<-done
	tb.Drop(a, "after")
	got := j.get()
	if len(got) != 3 || got[2] != "a drop after" {
		t.Fatalf("got %v; want a's hold and b's drop, then a drop after Run", got)
	}
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if _, ok := tb.rows[b]; ok || len(tb.pending) != 0 {
		t.Fatalf("rows %v, pending %v: b forgotten and nothing pending expected", tb.rows, tb.pending)
	}
}

func waitRunning(t *testing.T, tb *Table) {
	t.Helper()
	for range 1000 {
		tb.mu.Lock()
		r := tb.running
		tb.mu.Unlock()
		if r {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("Run did not start")
}

// Applied tells how many holds a round applied and the longest any of them
// waited: two holds queued behind a slow one wait as long as it took.
func TestAppliedSaysHowLongHoldsWaited(t *testing.T) {
	var mu sync.Mutex
	now := at(100)
	type round struct {
		holds  int
		waited time.Duration
	}
	var rounds []round
	done := make(chan struct{}, 8)
	tb := &Table{
		Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now },
		Applied: func(n int, w time.Duration) {
			mu.Lock()
			rounds = append(rounds, round{n, w})
			mu.Unlock()
			done <- struct{}{}
		},
	}
	j := &journal{}
	gate := make(chan struct{})
	a := &target{name: "a", j: j, gate: gate, holding: make(chan struct{})}
	b, c := &target{name: "b", j: j}, &target{name: "c", j: j}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tb.Run(ctx)
	waitRunning(t, tb)
	tb.Hold(a, at(110))
	<-a.holding
	tb.Hold(b, at(110))
	tb.Hold(c, at(110))
	mu.Lock()
	now = now.Add(3 * time.Second) // the kernel took 3 s over a
	mu.Unlock()
	close(gate)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Applied was not called")
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []round{{3, 3 * time.Second}}; !reflect.DeepEqual(rounds, want) {
		t.Fatalf("rounds %v, want %v (a at once, b and c after a's 3 s, one round)", rounds, want)
	}
}
