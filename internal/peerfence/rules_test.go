package peerfence

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// Directed orders for rules the permutation worlds do not vary (their
// holder keeps one term and one member list): each runs with the rule in
// place and with it switched off, which must give two owners.

func at(rate, real float64) time.Time {
	return epoch0.Add(time.Duration(real * rate * float64(time.Second)))
}

func granters(term Term, broken string, names ...string) map[string]*Granter {
	g := map[string]*Granter{}
	for _, n := range names {
		g[n] = NewGranter(testTiming, epoch0.Add(-time.Hour))
		g[n].Read(0)
		g[n].Saw(term, 1)
		g[n].broken = broken
	}
	return g
}

// twoOwners runs order with the rule and without it.
func twoOwners(t *testing.T, broken string, order func(broken string) string) {
	t.Helper()
	if fail := order(""); fail != "" {
		t.Error(fail)
	}
	if fail := order(broken); fail == "" {
		t.Errorf("with %s switched off: one owner in this order; the test shows nothing", broken)
	} else {
		t.Logf("%s: %s", broken, fail)
	}
}

// The holder sends a write that begins epoch 8 with five members while it
// holds epoch 7 with three, and the write commits late without an answer.
// A claimant that sees it checks epoch 8 with its five members: c, d and e
// block (three of five) while a and b, two of the old three, keep
// promising epoch 7. The holder stops counting requests sent after the
// write (Holding.Ending).
func TestMembersChangeWithAnEpoch(t *testing.T) {
	twoOwners(t, "members-switch", func(broken string) string {
		e1 := Term{Holder: "a", Instance: "i1", Epoch: 7}
		e2 := Term{Holder: "a", Instance: "i1", Epoch: 8}
		m1 := []string{"a", "b", "c"}
		m2 := []string{"a", "b", "c", "d", "e"}
		g := granters(e1, "", "a", "b", "c", "d", "e")
		clock := func(real float64) time.Time { return at(1, real) }
		h := NewHolding(e1, m1, testTiming, clock(0).Add(renew))
		h.broken = broken
		h.Ending(clock(0)) // the write of epoch 8 is sent
		for _, n := range []string{"c", "d", "e"} {
			g[n].Saw(e2, 2)
		}
		var claimed bool
		for s := 1.0; s <= 12; s += 0.5 {
			now := clock(s)
			if s == math.Trunc(s) && !h.Over(now) {
				for _, n := range []string{"a", "b"} { // the requests to c are lost
					if g[n].Promise(e1, now).Granted {
						h.Granted(n, now, now)
					}
				}
			}
			if s == 5 { // the claimant saw revision 2 expire
				c := NewCheck(e2, 2, m2, testTiming)
				for _, n := range []string{"c", "d", "e"} {
					c.Answered(n, 2, g[n].Check(e2, 2, now), now)
				}
				claimed = c.Claimable()
			}
			if claimed && now.Before(h.Until().Add(late)) {
				return "two owners at " + (time.Duration(s * float64(time.Second))).String() + ": epoch 8's claim while epoch 7's fence runs to " + h.Until().Sub(epoch0).String()
			}
		}
		if !claimed {
			return "the claimant never claimed"
		}
		return ""
	})
}

// An old copy of the holder's Lease, written back by a tool, names an
// earlier process of the holder; a claimant that knows only the copy
// checks that term while the holder's current process holds through a
// and b. A promise to any process of the holder holds the check up, and a
// block ends them all (Granter.Check).
func TestCheckOfAnotherRun(t *testing.T) {
	twoOwners(t, "one-run", func(broken string) string {
		cur := Term{Holder: "a", Instance: "i1", Epoch: 7}
		old := Term{Holder: "a", Instance: "i0", Epoch: 3}
		m := []string{"a", "b", "c"}
		g := granters(cur, broken, m...)
		h := NewHolding(cur, m, testTiming, at(1, 0).Add(renew))
		var k *Check
		for s := 1.0; s <= 16; s += 0.5 {
			now := at(1, s)
			if s == math.Trunc(s) && s < 8 && !h.Over(now) {
				for _, n := range []string{"a", "b"} {
					if g[n].Promise(cur, now).Granted {
						h.Granted(n, now, now)
					}
				}
			}
			if s >= 6.5 && math.Mod(s, 1) == 0.5 && (k == nil || !k.Claimable()) {
				if k == nil {
					k = NewCheck(old, 2, m, testTiming)
				}
				for _, n := range m {
					if !k.Blocked(n) {
						k.Answered(n, 2, g[n].Check(old, 2, now), now)
					}
				}
			}
			if k != nil && k.Claimable() && now.Before(h.Until().Add(late)) {
				return "two owners at " + time.Duration(s*float64(time.Second)).String() + ": a majority blocked " + old.String() + " while " + cur.String() + "'s fence runs to " + h.Until().Sub(epoch0).String()
			}
		}
		if k == nil || !k.Claimable() {
			return "the claimant never claimed"
		}
		return ""
	})
}

// The margin covers the kernel's late removal as well as the clock rates:
// with the holder's clock slow and the members' fast by 5 %, a claim at
// the earliest moment the members allow finds the holder's kernel done
// with the address. The first version's timing (a promise of 4 s, a margin
// of 1 s) covered only the rates, and Valid refuses it now.
func TestMarginCoversLateRemoval(t *testing.T) {
	rate := map[string]float64{"a": 1 - skew, "b": 1 + skew, "c": 1 + skew}
	for _, tm := range []Timing{testTiming, {For: 4 * time.Second, Margin: time.Second}} {
		err := tm.Valid(skew, late, lease)
		term := Term{Holder: "a", Instance: "i1", Epoch: 7}
		m := []string{"a", "b", "c"}
		g := map[string]*Granter{}
		for _, n := range m {
			g[n] = NewGranter(tm, epoch0.Add(-time.Hour))
			g[n].Read(0)
			g[n].Saw(term, 1)
		}
		h := NewHolding(term, m, tm, at(rate["a"], 0).Add(time.Second))
		sent := at(rate["a"], 0)
		for _, n := range []string{"a", "b"} {
			if g[n].Promise(term, at(rate[n], 0)).Granted {
				h.Granted(n, sent, sent)
			}
		}
		kernel := h.Until().Add(late)
		// The earliest moment b's promise has run out on its clock.
		real := (tm.For.Seconds() + 0.01) / rate["b"]
		k := NewCheck(term, 1, m, tm)
		for _, n := range []string{"b", "c"} {
			k.Answered(n, 1, g[n].Check(term, 1, at(rate[n], real)), at(rate["c"], real))
		}
		two := k.Claimable() && at(rate["a"], real).Before(kernel)
		if err == nil && two {
			t.Errorf("%+v passes Valid, but the claim at real %.2fs finds the holder's kernel keeping the address until %s", tm, real, kernel.Sub(epoch0))
		}
		if err == nil != (tm == testTiming) {
			t.Errorf("%+v: Valid says %v", tm, err)
		}
		if tm != testTiming && (!two || !strings.Contains(err.Error(), "late removal")) {
			t.Errorf("%+v: two owners %v, Valid %v; want both", tm, two, err)
		}
	}
}

// play runs holder a (term cur, members a, b, c, its API fence until the
// renew deadline) asking every second the members reach says it reaches,
// and claimant c checking term chk at revision rev every half second from
// checkFrom, asking the members that have not blocked; before(s) runs
// first at each step (watch deliveries). It returns the two owners found.
func play(g map[string]*Granter, cur, chk Term, rev uint64, checkFrom float64,
	reach func(s float64, n string) bool, before func(s float64)) string {
	m := []string{"a", "b", "c"}
	h := NewHolding(cur, m, testTiming, at(1, 0).Add(renew))
	var k *Check
	for s := 0.5; s <= 20; s += 0.5 {
		now := at(1, s)
		if before != nil {
			before(s)
		}
		if s == math.Trunc(s) && !h.Over(now) {
			for _, n := range m {
				if reach(s, n) && g[n].Promise(cur, now).Granted {
					h.Granted(n, now, now)
				}
			}
		}
		if s >= checkFrom && (k == nil || !k.Claimable()) {
			if k == nil {
				k = NewCheck(chk, rev, m, testTiming)
			}
			for _, n := range m {
				if !k.Blocked(n) {
					k.Answered(n, rev, g[n].Check(chk, rev, now), now)
				}
			}
		}
		if k != nil && k.Claimable() {
			if kernel := h.Until().Add(late); now.Before(kernel) {
				return fmt.Sprintf("two owners at %.1fs: a majority blocked %s (revision %d) while %s's kernel keeps the address until %s",
					s, chk, rev, cur, kernel.Sub(epoch0))
			}
			return ""
		}
	}
	return "the claimant never claimed"
}

// Until 6 s the holder reaches a and c (its requests to b are lost), from
// then on a and b.
func bLateThenCLost(s float64, n string) bool {
	if s < 6 {
		return n != "b"
	}
	return n != "c"
}

// An old copy of the holder's Lease, written back at revision 2, names an
// older epoch (5) of the holder's current process, which holds epoch 7: b
// blocks epoch 5 while nothing is outstanding there, and must not promise
// epoch 7 afterwards (found by the second review).
func TestCheckOfAnOlderEpoch(t *testing.T) {
	twoOwners(t, "older-epoch", func(broken string) string {
		cur := Term{Holder: "a", Instance: "i1", Epoch: 7}
		old := Term{Holder: "a", Instance: "i1", Epoch: 5}
		return play(granters(cur, broken, "a", "b", "c"), cur, old, 2, 5.5, bLateThenCLost, nil)
	})
}

// The same write-back names another process of the holder, and b's watch
// delivers the current process's write (revision 1, before the write-back)
// only after b blocked the check at revision 2: that write proves nothing
// about the claim, and b must not promise on it (found by the second
// review).
func TestWriteSeenAfterTheBlock(t *testing.T) {
	twoOwners(t, "seen-after-block", func(broken string) string {
		cur := Term{Holder: "a", Instance: "i1", Epoch: 7}
		old := Term{Holder: "a", Instance: "i0", Epoch: 3}
		g := granters(cur, broken, "a", "c")
		g["b"] = NewGranter(testTiming, epoch0.Add(-time.Hour))
		g["b"].Read(0)
		g["b"].broken = broken
		return play(g, cur, old, 2, 5.5, bLateThenCLost, func(s float64) {
			if s == 6 {
				g["b"].Saw(cur, 1)
			}
		})
	})
}

// Found by the third review, before a Term named its Lease. Holder a's
// process i1 writes two Leases, each through its own Elector
// (services/controller.go, strategy.go, spread.go, controlplane.go): each
// numbers its writes from 1, so the epochs of the two are unrelated and
// a Term does not say which Lease it is of. L1's holding is (a,i1,7);
// the claimant saw L1 expire at revision 2 and checks it. b blocks at
// 5.5 s (a's requests to b are lost), restarts at 6 s, reads the store at
// revision 3, and its watch delivers a write of a's *other* Lease L2
// (seal 9) at revision 4. That write is after b's read, so Saw counts it:
// b now grants (a,i1,7) (7 <= 9), but a write of L2 proves nothing about a
// claim conditional on L1's revision 2, which goes through once c blocks.
func TestRestartThenAWriteOfAnotherLease(t *testing.T) {
	l1 := Term{Holder: "a", Instance: "i1", Epoch: 7}
	l2 := Term{Lease: "L2", Holder: "a", Instance: "i1", Epoch: 9}
	g := granters(l1, "", "a", "b", "c")
	if fail := play(g, l1, l1, 2, 5.5, bLateThenCLost, func(s float64) {
		if s == 6 {
			g["b"] = NewGranter(testTiming, at(1, 6))
			g["b"].Read(3)
			g["b"].Saw(l2, 4)
		}
	}); fail != "" {
		t.Error(fail)
	}
}

// No restart: an old copy of L1 written back at revision 2 names an older
// epoch (5) of the process that holds L1 at epoch 7 (b's watch has not
// delivered epoch 7's write, revision 1, yet). b blocks epoch 5 (stops up
// to 5, the newest seen). Then b sees a write of a's other Lease L2 with
// seal 9 at revision 3, after the block: it counts, and (a,i1,7) is now
// "seen" and above the stop, so b grants it; the claim on L1 at revision 2
// still goes through. TestWriteSeenAfterTheBlock with the write of the
// same Lease is caught by `checked`; one of another Lease is not.
func TestWriteBackThenAWriteOfAnotherLease(t *testing.T) {
	cur := Term{Holder: "a", Instance: "i1", Epoch: 7}
	old := Term{Holder: "a", Instance: "i1", Epoch: 5}
	l2 := Term{Lease: "L2", Holder: "a", Instance: "i1", Epoch: 9}
	g := granters(cur, "", "a", "c")
	g["b"] = NewGranter(testTiming, epoch0.Add(-time.Hour))
	g["b"].Read(0)
	if fail := play(g, cur, old, 2, 5.5, bLateThenCLost, func(s float64) {
		if s == 6 {
			g["b"].Saw(l2, 3)
		}
	}); fail != "" {
		t.Error(fail)
	}
}
