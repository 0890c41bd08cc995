// Package datapath is the desired state of this node's Service addresses
// and the one goroutine that applies it.
//
// The ownership layer decides, under its own lock, which addresses this
// node may hold and until when, and which it must let go; it writes those
// decisions into a Table, which costs a map update. The Table's applier
// (Run) makes them true on the wire: for ARP/NDP, the kernel address with
// its lifetime and the announcer (owner.VIP). So a slow netlink call never
// runs under a lock that a decision waits on, and a second datapath (a BGP
// speaker) is a second Target.
//
// S3 stays literal: a drop is applied before any hold, and Barrier/Wait let
// the caller hold back the Lease write that releases an address until its
// drop is done (address gone, announcements stopped).
package datapath

import (
	"context"
	"sync"
	"time"
)

// Target is one address's datapath (owner.VIP for ARP/NDP). The Table
// calls it from one goroutine at a time.
type Target interface {
	// Hold puts the address on the wire, or keeps it there, until until
	// (a monotonic instant); the kernel lifetime ends then.
	Hold(until time.Time)
	// Drop stops announcing the address and removes it; it returns when
	// both are done.
	Drop(reason string)
}

// Table is the desired state of a set of Targets. Its zero value applies
// every change at once, in the caller (before Run and after it ends).
type Table struct {
	mu      sync.Mutex
	applied *sync.Cond // broadcast when a drop is done
	rows    map[Target]*row
	drops   []*row // queued drops: applied before any hold
	holds   []*row // queued holds
	wake    chan struct{}
	running bool
	seq     uint64 // counts the drops asked for
	// pending are the drops asked for and not done, by their number.
	pending map[uint64]bool
	// OnHeld, if set, is called (no lock held) after a round of the
	// applier put addresses on the wire that were not there before.
	OnHeld func()
	// Now and Applied, if both set: after each round of the applier that
	// applied holds, Applied is told how many and the longest any of
	// them waited to be applied (no lock held): a node whose kernel falls
	// behind its renewals can say so before lifetimes run out.
	Now     func() time.Time
	Applied func(holds int, waited time.Duration)
}

// row is one Target's desired state.
type row struct {
	t      Target
	until  time.Time // zero: not held
	drop   uint64    // nonzero: a drop is due (its number), before any hold
	reason string
	queued bool      // in holds
	asked  time.Time // when it was queued (Table.Now)
	fresh  bool      // the next hold puts the address on (none since a drop)
	forget bool      // out of the table once dropped
}

func (tb *Table) init() {
	if tb.rows == nil {
		tb.rows = map[Target]*row{}
		tb.pending = map[uint64]bool{}
		tb.applied = sync.NewCond(&tb.mu)
		tb.wake = make(chan struct{}, 1)
	}
}

func (tb *Table) rowOf(t Target) *row {
	tb.init()
	r := tb.rows[t]
	if r == nil {
		r = &row{t: t, fresh: true}
		tb.rows[t] = r
	}
	return r
}

// Hold asks for t on the wire until until.
func (tb *Table) Hold(t Target, until time.Time) {
	tb.mu.Lock()
	r := tb.rowOf(t)
	r.until, r.forget = until, false
	if !tb.running {
		tb.applyLocked(r)
		tb.mu.Unlock()
		return
	}
	if r.drop == 0 && !r.queued {
		tb.queue(r)
	}
	tb.mu.Unlock()
	tb.signal()
}

// queue adds r to the holds (tb.mu held).
func (tb *Table) queue(r *row) {
	r.queued = true
	if tb.Now != nil {
		r.asked = tb.Now()
	}
	tb.holds = append(tb.holds, r)
}

// Drop asks for t off the wire (S3: before any hold queued with it).
func (tb *Table) Drop(t Target, reason string) { tb.drop(t, reason, false) }

// Forget drops t and then forgets it (its address left this node's
// addresses).
func (tb *Table) Forget(t Target, reason string) { tb.drop(t, reason, true) }

func (tb *Table) drop(t Target, reason string, forget bool) {
	tb.mu.Lock()
	r := tb.rowOf(t)
	r.until, r.reason, r.forget = time.Time{}, reason, forget
	if r.drop == 0 {
		tb.seq++
		r.drop = tb.seq
		tb.pending[r.drop] = true
		if tb.running {
			tb.drops = append(tb.drops, r)
		}
	}
	if !tb.running {
		tb.applyLocked(r)
		tb.mu.Unlock()
		return
	}
	tb.mu.Unlock()
	tb.signal()
}

// Barrier numbers the drops asked for so far: Wait(Barrier()) returns once
// all of them are done.
func (tb *Table) Barrier() uint64 {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.seq
}

// Wait returns once every drop numbered up to n (Barrier) is done.
func (tb *Table) Wait(n uint64) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	tb.init()
	for tb.pendingUpTo(n) {
		tb.applied.Wait()
	}
}

func (tb *Table) pendingUpTo(n uint64) bool {
	for d := range tb.pending {
		if d <= n {
			return true
		}
	}
	return false
}

func (tb *Table) signal() {
	select {
	case tb.wake <- struct{}{}:
	default:
	}
}

// Run applies the table until ctx ends; what is queued then is applied
// before Run returns, and every later change at once in its caller.
func (tb *Table) Run(ctx context.Context) {
	tb.mu.Lock()
	tb.init()
	tb.running = true
	tb.mu.Unlock()
	for {
		tb.flush()
		select {
		case <-tb.wake:
		case <-ctx.Done():
			for {
				tb.flush()
				tb.mu.Lock()
				if len(tb.drops) == 0 && len(tb.holds) == 0 {
					tb.running = false
					tb.mu.Unlock()
					return
				}
				tb.mu.Unlock()
			}
		}
	}
}

// flush applies what is queued, one Target at a time, every queued drop
// before the next hold.
func (tb *Table) flush() {
	held := false
	holds, waited := 0, time.Duration(0)
	tb.mu.Lock()
	for {
		var r *row
		switch {
		case len(tb.drops) > 0:
			r, tb.drops = tb.drops[0], tb.drops[1:]
			if r.drop == 0 {
				continue // done already
			}
		case len(tb.holds) > 0:
			r, tb.holds = tb.holds[0], tb.holds[1:]
			r.queued = false
			if r.drop != 0 || r.until.IsZero() {
				continue // dropped since: the drop queue has it
			}
		}
		if r == nil {
			break
		}
		fresh := r.drop == 0 && r.fresh
		if r.drop == 0 && tb.Now != nil {
			holds++
			waited = max(waited, tb.Now().Sub(r.asked))
		}
		tb.applyUnlocked(r)
		held = held || fresh
	}
	tb.mu.Unlock()
	if held && tb.OnHeld != nil {
		tb.OnHeld()
	}
	if holds > 0 && tb.Applied != nil {
		tb.Applied(holds, waited)
	}
}

// applyUnlocked applies r's state with tb.mu released for the Target's
// call (tb.mu held on entry and on return).
func (tb *Table) applyUnlocked(r *row) {
	if d := r.drop; d != 0 {
		reason := r.reason
		tb.mu.Unlock()
		r.t.Drop(reason)
		tb.mu.Lock()
		tb.dropped(r, d)
		if !r.until.IsZero() && !r.queued {
			tb.queue(r) // held again meanwhile
		}
		return
	}
	until := r.until
	r.fresh = false
	tb.mu.Unlock()
	r.t.Hold(until)
	tb.mu.Lock()
}

// applyLocked applies r's state in the caller (not running), tb.mu held.
func (tb *Table) applyLocked(r *row) {
	if d := r.drop; d != 0 {
		r.t.Drop(r.reason)
		tb.dropped(r, d)
		if r.until.IsZero() {
			return
		}
	}
	r.fresh = false
	r.t.Hold(r.until)
}

// dropped: drop number d of r is done (tb.mu held).
func (tb *Table) dropped(r *row, d uint64) {
	delete(tb.pending, d)
	if r.drop == d {
		r.drop, r.fresh = 0, true
		if r.forget && r.until.IsZero() {
			delete(tb.rows, r.t)
		}
	}
	tb.applied.Broadcast()
}
