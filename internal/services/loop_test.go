package services

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Events run one at a time, in the order they were posted, and do returns
// only once its event has run.
func TestLoopRunsEventsInOrderOneAtATime(t *testing.T) {
	var l loop
	var got []int
	running := 0
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		l.post(func() {
			defer wg.Done()
			running++
			if running != 1 {
				t.Errorf("event %d ran beside another", i)
			}
			got = append(got, i)
			running--
		})
	}
	wg.Wait()
	var n int
	l.do(func() { n = len(got) })
	if n != 200 || !slices.IsSorted(got) {
		t.Fatalf("events ran out of order or not all: %d of 200, sorted %v", n, slices.IsSorted(got))
	}
}

// An event that calls do (a Guard called by something the loop runs) runs
// it at once instead of waiting for itself.
func TestLoopDoOnTheLoopRunsAtOnce(t *testing.T) {
	var l loop
	done := make(chan bool, 1)
	l.post(func() {
		inner := false
		l.do(func() { inner = true })
		done <- inner
	})
	select {
	case inner := <-done:
		if !inner {
			t.Fatal("do on the loop did not run its function")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("do on the loop waited for itself")
	}
}

// do from another goroutine waits for the events posted before it.
func TestLoopDoWaitsForEarlierEvents(t *testing.T) {
	var l loop
	release := make(chan struct{})
	first := false
	l.post(func() { <-release; first = true })
	go func() { time.Sleep(50 * time.Millisecond); close(release) }()
	seen := false
	l.do(func() { seen = first })
	if !seen {
		t.Fatal("do ran before an event posted earlier")
	}
}
