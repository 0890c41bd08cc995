// Package gate is a condition an elector consults before it competes for a
// Lease (election.Gate) or leaves it to others (election.Standby): the
// local API server's health, this Node cordoned, this Node labelled out of
// Service VIPs, the spread-mode allocator's work. It is open or closed,
// says why when closed, and tells every subscriber of a change. It may be
// held open until a time on its clock (OpenUntil), and closes by itself
// then.
package gate

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Gate is safe for concurrent use.
type Gate struct {
	clk     clock.Clock
	changed <-chan struct{} // the first subscriber's (Changed)

	mu    sync.Mutex
	open  bool
	why   string    // why it is closed (Set)
	until time.Time // open until then, whatever Set says (OpenUntil)
	timer bool      // a wake-up at until is pending
	subs  []chan struct{}
}

// New returns a gate, open or closed with why (the reason it is closed);
// clk (nil: the real clock) times OpenUntil.
func New(open bool, why string, clk clock.Clock) *Gate {
	if clk == nil {
		clk = clock.RealClock{}
	}
	g := &Gate{clk: clk, open: open, why: why}
	g.changed = g.Subscribe()
	return g
}

// Open reports whether the gate is open.
func (g *Gate) Open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.openLocked()
}

func (g *Gate) openLocked() bool { return g.open || g.clk.Now().Before(g.until) }

// Why says why the gate is closed (or would be, without OpenUntil).
func (g *Gate) Why() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.why
}

// Changed receives a value after every change of Open (one subscriber;
// Subscribe gives each further one its own).
func (g *Gate) Changed() <-chan struct{} { return g.changed }

// Subscribe returns a channel that receives a value after every change of
// Open (buffered: changes in a row are one value).
func (g *Gate) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	g.mu.Lock()
	g.subs = append(g.subs, c)
	g.mu.Unlock()
	return c
}

// Set opens or closes the gate (why, if not empty: the reason it is
// closed); it reports whether Open changed.
func (g *Gate) Set(open bool, why string) bool {
	g.mu.Lock()
	was := g.openLocked()
	g.open = open
	if why != "" {
		g.why = why
	}
	changed := g.openLocked() != was
	g.mu.Unlock()
	if changed {
		g.signal()
	}
	return changed
}

// OpenUntil keeps the gate open until t at least (a later call may extend
// it); it closes by itself then, unless Set opened it.
func (g *Gate) OpenUntil(t time.Time) {
	g.mu.Lock()
	was := g.openLocked()
	if t.After(g.until) {
		g.until = t
	}
	open := g.openLocked()
	wake := open && !g.timer
	if wake {
		g.timer = true
	}
	g.mu.Unlock()
	if wake {
		g.wakeAt()
	}
	if open != was {
		g.signal()
	}
}

// wakeAt signals the change when until passes (and waits again if it was
// extended meanwhile).
func (g *Gate) wakeAt() {
	g.mu.Lock()
	t := g.clk.NewTimer(g.until.Sub(g.clk.Now()))
	g.mu.Unlock()
	go func() {
		<-t.C()
		g.mu.Lock()
		if g.clk.Now().Before(g.until) {
			g.mu.Unlock()
			g.wakeAt() // extended meanwhile
			return
		}
		g.timer = false
		closed := !g.open
		g.mu.Unlock()
		if closed {
			g.signal()
		}
	}()
}

func (g *Gate) signal() {
	g.mu.Lock()
	subs := g.subs
	g.mu.Unlock()
	for _, c := range subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
}
