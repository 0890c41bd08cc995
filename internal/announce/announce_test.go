package announce

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

type recorder struct {
	mu    sync.Mutex
	clock *clocktesting.FakeClock
	start time.Time
	at    []time.Duration
}

func (r *recorder) Announce(netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, r.clock.Since(r.start))
	return nil
}

func (r *recorder) sent() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.at...)
}

var ip = netip.MustParseAddr("198.51.100.200")

// step advances the fake clock in small steps, giving the announcer's
// goroutine time to arm its next timer.
func step(c *clocktesting.FakeClock, total time.Duration) {
	for d := time.Duration(0); d < total; d += 50 * time.Millisecond {
		waitTimer(c)
		c.Step(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond)
}

func waitTimer(c *clocktesting.FakeClock) {
	for i := 0; i < 20 && !c.HasWaiters(); i++ {
		time.Sleep(time.Millisecond)
	}
}

func newTest(t *testing.T) (*Announcer, *recorder, *clocktesting.FakeClock) {
	c := clocktesting.NewFakeClock(time.Unix(1000, 0))
	r := &recorder{clock: c, start: c.Now()}
	a := New(r, Options{Period: 3 * time.Second}, c, slog.New(slog.DiscardHandler), nil)
	t.Cleanup(a.Stop)
	return a, r, c
}

func TestBurstThenPeriodic(t *testing.T) {
	a, r, c := newTest(t)
	a.Start(ip, c.Now().Add(time.Hour))
	step(c, 7*time.Second)
	want := []time.Duration{0, 300 * time.Millisecond, 900 * time.Millisecond, 3900 * time.Millisecond, 6900 * time.Millisecond}
	got := r.sent()
	if len(got) != len(want) {
		t.Fatalf("sent at %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sent at %v, want %v", got, want)
		}
	}
}

func TestNothingSentPastTheFence(t *testing.T) {
	a, r, c := newTest(t)
	a.Start(ip, c.Now().Add(500*time.Millisecond))
	step(c, 5*time.Second)
	if got := r.sent(); len(got) != 2 {
		t.Fatalf("sent at %v: want only the two burst packets before the fence at 500ms", got)
	}
	// A renewal extends the fence: periodic announcements resume.
	a.Extend(c.Now().Add(time.Hour))
	step(c, 3*time.Second)
	if got := r.sent(); len(got) != 3 {
		t.Fatalf("sent at %v: want one more after Extend", got)
	}
}

func TestStopEndsAnnouncing(t *testing.T) {
	a, r, c := newTest(t)
	a.Start(ip, c.Now().Add(time.Hour))
	step(c, 100*time.Millisecond)
	a.Stop()
	n := len(r.sent())
	step(c, 10*time.Second)
	if got := r.sent(); len(got) != n || a.Active() {
		t.Fatalf("sent %v after Stop (had %d)", got, n)
	}
	// Start again: a new takeover, a new burst.
	r.start = c.Now()
	a.Start(ip, c.Now().Add(time.Hour))
	step(c, time.Second)
	if got := r.sent(); len(got) != n+3 {
		t.Fatalf("after restart sent %v", got)
	}
}
