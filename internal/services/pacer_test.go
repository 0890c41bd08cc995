package services

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// TestSchedulePacesInformerEvents: after a pass that took 10 ms, a burst of
// informer events gets one pass, 40 ms after the last one ended, not one
// each; an urgent request (ownership) runs a pass at once; the pace is at most maxPace.
func TestSchedulePacesInformerEvents(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1000, 0))
	asap, soon := make(chan struct{}, 1), make(chan struct{}, 1)
	var passes atomic.Int32
	took := atomic.Int64{}
	took.Store(int64(10 * time.Millisecond))
	ran := make(chan struct{}, 1024) // never blocks a pass, even when the test fails
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		schedule(ctx, clk, asap, soon, func() {
			clk.Step(time.Duration(took.Load())) // the pass takes this long
			passes.Add(1)
			ran <- struct{}{}
		})
		close(done)
	}()
	defer func() {
		cancel()
		<-done
	}()
	waitPass := func(want int32) {
		t.Helper()
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("no pass %d", want)
		}
		if got := passes.Load(); got != want {
			t.Fatalf("%d passes, want %d", got, want)
		}
	}
	noPass := func(what string) {
		t.Helper()
		select {
		case <-ran:
			t.Fatalf("%s: a pass ran (%d)", what, passes.Load())
		case <-time.After(100 * time.Millisecond):
		}
	}
	asap <- struct{}{}
	waitPass(1)
	// A burst of informer events right after a 10 ms pass: paced.
	for range 20 {
		select {
		case soon <- struct{}{}:
		default:
		}
		time.Sleep(time.Millisecond)
	}
	noPass("events within the pace")
	// 2 timers wait: the resync and the pace.
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(39 * time.Millisecond)
	noPass("39 ms after the pass")
	clk.Step(time.Millisecond)
	waitPass(2) // one pass for the whole burst
	noPass("after the paced pass")
	// An urgent request does not wait for the pace.
	soon <- struct{}{}
	time.Sleep(10 * time.Millisecond)
	asap <- struct{}{}
	waitPass(3)
	noPass("the urgent pass covered the event")
	// A slow pass: the pace is at most maxPace.
	took.Store(int64(time.Second))
	asap <- struct{}{}
	waitPass(4)
	soon <- struct{}{}
	noPass("within maxPace")
	clk.Step(maxPace - time.Millisecond)
	noPass("just before maxPace")
	clk.Step(time.Millisecond)
	waitPass(5)
	// And events long after the last pass run at once.
	clk.Step(time.Second)
	soon <- struct{}{}
	waitPass(6)
}
