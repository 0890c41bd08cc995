package gate

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// signalled reports whether c holds a change (and takes it).
func signalled(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Every subscriber hears each change of Open once, and nothing when Set
// changes nothing.
func TestSetSignalsEverySubscriberOnAChange(t *testing.T) {
	g := New(true, "closed for a reason", nil)
	other := g.Subscribe()
	if !g.Open() || g.Why() != "closed for a reason" {
		t.Fatalf("new gate: open %t why %q", g.Open(), g.Why())
	}
	if g.Set(true, "") || signalled(g.Changed()) || signalled(other) {
		t.Fatal("opening an open gate signalled a change")
	}
	if !g.Set(false, "the Node is labelled") || g.Open() || g.Why() != "the Node is labelled" {
		t.Fatalf("closing: open %t why %q", g.Open(), g.Why())
	}
	if !signalled(g.Changed()) || !signalled(other) {
		t.Fatal("a subscriber did not hear the gate close")
	}
	if g.Set(false, "") || g.Why() != "the Node is labelled" {
		t.Fatalf("closing again: changed, or the reason lost (%q)", g.Why())
	}
}

// OpenUntil keeps a closed gate open until a time on the clock, closes it
// by itself then (one signal), and is extended by a later call.
func TestOpenUntilClosesByItself(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	g := New(false, "idle", clk)
	g.OpenUntil(clk.Now().Add(4 * time.Second))
	if !g.Open() || !signalled(g.Changed()) {
		t.Fatal("OpenUntil did not open the gate with a signal")
	}
	clk.Step(3 * time.Second)
	g.OpenUntil(clk.Now().Add(4 * time.Second)) // extended to 1007
	clk.Step(2 * time.Second)                   // 1005: the first deadline passed
	settle()
	if !g.Open() || signalled(g.Changed()) {
		t.Fatal("closed, or signalled, at the first deadline although extended")
	}
	clk.Step(2 * time.Second) // 1007
	if g.Open() {
		t.Fatal("still open at the extended deadline")
	}
	select {
	case <-g.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("closed at the extended deadline without a signal")
	}
	// Set open meanwhile, it stays open past the deadline.
	g.OpenUntil(clk.Now().Add(time.Second))
	signalled(g.Changed())
	g.Set(true, "")
	clk.Step(2 * time.Second)
	settle()
	if !g.Open() || signalled(g.Changed()) {
		t.Fatal("a gate Set open closed at its OpenUntil deadline")
	}
}

// settle gives the gate's timer goroutine the time to run after the fake
// clock fired (before a check that nothing changed).
func settle() { time.Sleep(50 * time.Millisecond) }
