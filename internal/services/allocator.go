package services

import (
	"sync"
	"time"
)

// allocGate is the Services Lease's gate in spread mode, where the Lease
// holds no VIP: it only names the node that writes pool allocations and
// clears what vipd no longer serves. A node competes for it only while
// it sees such a write to make (and for an idle time after the last one,
// so that a burst of new Services is one term); then the holder releases
// it. In steady state nobody holds it, and spread mode writes only the
// heartbeats (one per node per retry period) and the control-plane Lease.
type allocGate struct {
	c    *Controller
	idle time.Duration

	mu      sync.Mutex
	want    bool
	until   time.Time // open until then after the last work seen
	timer   bool      // a wake-up at until is pending
	changed chan struct{}
}

func newAllocGate(c *Controller, idle time.Duration) *allocGate {
	return &allocGate{c: c, idle: idle, changed: make(chan struct{}, 1)}
}

func (g *allocGate) Open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.openLocked()
}

func (g *allocGate) openLocked() bool {
	return g.want || g.c.o.Clock.Now().Before(g.until)
}

func (g *allocGate) Changed() <-chan struct{} { return g.changed }

// Why is the reason the allocator gives up the Services Lease.
func (g *allocGate) Why() string {
	return "spread mode: no pool address to allocate and nothing to clear for " + g.idle.String() + " (the Services Lease is held only while there is)"
}

// update records whether the last pass found work for the allocator.
func (g *allocGate) update(work bool) {
	g.mu.Lock()
	was := g.openLocked()
	now := g.c.o.Clock.Now()
	g.want = work
	if work {
		g.until = now.Add(g.idle)
	}
	open := g.openLocked()
	wake := !work && open && !g.timer
	if wake {
		g.timer = true
	}
	g.mu.Unlock()
	if wake {
		t := g.c.o.Clock.NewTimer(g.until.Sub(now))
		go func() {
			<-t.C()
			g.mu.Lock()
			g.timer = false
			closed := !g.openLocked()
			again := !closed && !g.want // extended meanwhile
			g.mu.Unlock()
			if closed {
				g.signal()
			} else if again {
				g.update(false)
			}
		}()
	}
	if was != open {
		g.signal()
	}
}

func (g *allocGate) signal() {
	select {
	case g.changed <- struct{}{}:
	default:
	}
}
