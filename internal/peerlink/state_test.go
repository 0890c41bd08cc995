package peerlink

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/peerfence"
	"github.com/vipd/vipd/internal/peerwire"
)

var (
	timing = peerfence.Timing{For: 3200 * time.Millisecond, Margin: 1500 * time.Millisecond}
	t0     = time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	term   = peerfence.Term{Holder: "a", Instance: "ia", Epoch: 7}
	all    = []string{"a", "b", "c"}
)

func testKey(t *testing.T, fill byte) peerwire.Key {
	k, err := peerwire.NewKey(bytes.Repeat([]byte{fill}, peerwire.MinKey), "test")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sim is three nodes' states on one clock, and a network that delivers
// every datagram at once unless cut says it is lost.
type sim struct {
	t       *testing.T
	now     time.Time
	n       map[string]*state
	refused map[string][]string
	cut     func(from, to string) bool
	sent    []out // every datagram sent, by receiver
}

func newSim(t *testing.T) *sim {
	s := &sim{t: t, now: t0, n: map[string]*state{}, refused: map[string][]string{}, cut: func(string, string) bool { return false }}
	for _, n := range all {
		s.start(n, "i"+n, 0)
		s.n[n].g.Saw(term, 1)
	}
	return s
}

// start runs node n's process inst, which reads the store at revision rev
// (the write that began the term is revision 1).
func (s *sim) start(n, inst string, rev uint64) {
	st := newState(n, inst, testKey(s.t, 1), timing, time.Second, s.now, slog.New(slog.DiscardHandler), func(r string) { s.refused[n] = append(s.refused[n], r) })
	st.g.Read(rev)
	for _, m := range all {
		st.instances[m] = "i" + m
	}
	s.n[n] = st
}

// deliver sends outs from node from, and every answer they cause.
func (s *sim) deliver(from string, outs []out) {
	for _, o := range outs {
		s.sent = append(s.sent, o)
		if s.cut(from, o.to) {
			continue
		}
		s.deliver(o.to, s.n[o.to].packet(o.b, s.now))
	}
}

// second lets a second pass and runs every node's timers.
func (s *sim) second() {
	s.now = s.now.Add(time.Second)
	for _, n := range all {
		s.deliver(n, s.n[n].tick(s.now))
	}
}

// The holder keeps its holding through b and c while the API is gone; cut
// off from them, it loses it, and the claimant's check completes only
// after the holder's fence has passed.
func TestHoldThroughPeersThenCheck(t *testing.T) {
	s := newSim(t)
	a := s.n["a"]
	a.hold(term, all, s.now.Add(3*time.Second), s.now)
	for range 20 {
		s.second()
	}
	until, peers := a.fence(term, s.now)
	if !peers || !until.After(s.now) {
		t.Fatalf("after 20 s without the API: fence %s (%s from now), through peers %v; want held by the peers", until, until.Sub(s.now), peers)
	}
	s.cut = func(from, to string) bool { return from == "a" || to == "a" }
	c, outs := s.n["c"].startCheck(term, 1, all, s.now)
	s.deliver("c", outs)
	for i := 0; ; i++ {
		select {
		case <-c.done:
			if u, _ := a.fence(term, s.now); !u.IsZero() {
				t.Fatalf("claimable at %s while the holder's fence runs until %s", s.now.Sub(t0), u.Sub(t0))
			}
			if i == 0 {
				t.Fatal("claimable at once, though promises were outstanding")
			}
			t.Logf("claimable %d s after the cut", i)
			return
		default:
		}
		if i > 20 {
			t.Fatal("the check never completed")
		}
		s.second()
	}
}

// A datagram from a host without the key, or one replayed, is refused,
// counted, and answered with nothing.
func TestForgedAndReplayedRefused(t *testing.T) {
	s := newSim(t)
	a, b := s.n["a"], s.n["b"]
	a.hold(term, all, s.now.Add(3*time.Second), s.now)
	s.second()
	var ask []byte
	for _, o := range s.sent {
		if o.to == "b" {
			ask = o.b
		}
	}
	if ask == nil {
		t.Fatal("no request to b was sent")
	}
	if outs := b.packet(ask, s.now); outs != nil {
		t.Errorf("a replayed request was answered: %d datagrams", len(outs))
	}
	forged := testKey(t, 2).Seal(peerwire.Message{Kind: peerwire.Check, From: "c", FromInstance: "ic", To: "b", ToInstance: "ib", Seq: 99, Term: term, Rev: 1})
	if outs := b.packet(forged, s.now); outs != nil {
		t.Errorf("a forged check was answered: %d datagrams", len(outs))
	}
	if outs := b.packet([]byte("garbage"), s.now); outs != nil {
		t.Errorf("garbage was answered")
	}
	if got := s.refused["b"]; len(got) != 3 || got[0] != "replay" || got[1] != "mac" || got[2] != "format" {
		t.Errorf("refused at b: %v; want replay, mac, format", got)
	}
	// The forged check blocked nothing: b still promises.
	s.second()
	if until, _ := a.fence(term, s.now); !until.After(s.now.Add(time.Second)) {
		t.Errorf("fence %s from now after the forged check; want b's and c's promises", until.Sub(s.now))
	}
}

// A member that restarted answers requests sealed for its old process with
// its new one; the holder's next requests reach it, and it promises again
// only once it watched a write after its restart.
func TestRestartedMember(t *testing.T) {
	for _, saw := range []bool{false, true} {
		s := newSim(t)
		a := s.n["a"]
		a.hold(term, all, s.now.Add(3*time.Second), s.now)
		s.second()
		s.start("b", "ib2", 1)
		s.refused = map[string][]string{}
		s.second()
		if got := s.refused["b"]; len(got) != 1 || got[0] != "recipient" {
			t.Fatalf("refused at b: %v; want one request for its old process", got)
		}
		if a.instances["b"] != "ib2" {
			t.Fatalf("a thinks b runs %q; want ib2", a.instances["b"])
		}
		if saw {
			s.n["b"].g.Saw(term, 2) // a renewal through the API
		}
		s.refused = map[string][]string{}
		s.cut = func(from, to string) bool { return from == "c" || to == "c" }
		for range 6 {
			s.second()
		}
		if len(s.refused["b"]) != 0 {
			t.Errorf("refused at b after the restart was told: %v", s.refused["b"])
		}
		// Only a and b answer: a holds on b's promises or not at all.
		if until, _ := a.fence(term, s.now); until.IsZero() == saw {
			t.Errorf("b saw a write after its restart: %v; a's fence: %s from now", saw, until.Sub(s.now))
		}
	}
}

// A recording of a request to an earlier process of the receiver, replayed
// after both ends restarted, gets a Restarted answer and changes nothing:
// the receiver still takes the sender's current process for current
// (found by the second review: the replay retired it).
func TestReplayForAnEarlierProcessChangesNothing(t *testing.T) {
	s := newSim(t)
	s.n["a"].hold(term, all, s.now.Add(3*time.Second), s.now)
	s.second()
	var old []byte
	for _, o := range s.sent {
		if o.to == "b" {
			old = o.b // sealed for process ib
		}
	}
	s.start("a", "ia2", 1)
	s.start("b", "ib2", 1)
	s.n["a"].instances["b"], s.n["b"].instances["a"] = "ib2", "ia2"
	term2 := peerfence.Term{Holder: "a", Instance: "ia2", Epoch: 9}
	s.n["b"].g.Saw(term2, 2)
	s.n["a"].hold(term2, all, s.now.Add(3*time.Second), s.now)
	s.second()
	s.refused = map[string][]string{}
	if outs := s.n["b"].packet(old, s.now); len(outs) != 1 {
		t.Fatalf("the replay got %d answers; want one Restarted", len(outs))
	}
	if got := s.n["b"].instances["a"]; got != "ia2" {
		t.Fatalf("after the replay b takes a for process %q; want ia2", got)
	}
	s.second()
	if got := s.refused["b"]; len(got) != 1 || got[0] != "recipient" {
		t.Errorf("refused at b: %v; want only the replay (a's current process still heard)", got)
	}
	if until, _ := s.n["a"].fence(term2, s.now); !until.After(s.now) {
		t.Error("a's new process lost b's promises after the replay")
	}
}

// A Link refuses a timing that does not cover the clocks and the kernel
// (peerfence.Timing.Valid), and a request period the promises outlast.
func TestNewRefusesUnsafeTiming(t *testing.T) {
	base := Options{Node: "a", Instance: "ia", Key: testKey(t, 1), Conn: &memConn{}, Addr: func(string) (net.Addr, bool) { return nil, false },
		Timing: timing, Skew: 0.05, Late: time.Second, LeaseDuration: 5 * time.Second, Every: time.Second}
	if _, err := New(base); err != nil {
		t.Fatalf("the tests' timing: %v", err)
	}
	for name, f := range map[string]func(*Options){
		"no margin for the kernel": func(o *Options) { o.Timing = peerfence.Timing{For: 4 * time.Second, Margin: time.Second} },
		"asking too seldom":        func(o *Options) { o.Every = 2 * time.Second },
	} {
		o := base
		f(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Found by the third review, before a Term named its Lease. Node a's
// process writes two Leases through two Electors, each sealing
// its writes from 1: the holdings that begin with their first writes are
// both a/ia@1, and state.holds is keyed by the Term. a's L1 writes
// succeed every second, its L2 writes stopped at 0 s; a is cut off from b
// and c. L2 expires at 5 s; c checks a/ia@1 for L2 and b, c block (no
// promise of theirs outstanding). a's fence for L2's addresses is
// fence(a/ia@1): L1's, renewed by the API.
func TestTwoLeasesOneEpoch(t *testing.T) {
	s := newSim(t)
	a := s.n["a"]
	one := term
	one.Epoch = 1
	for _, n := range all {
		s.n[n].g.Saw(one, 1)
	}
	s.cut = func(from, to string) bool { return from == "a" || to == "a" }
	two := one
	two.Lease = "L2"
	one.Lease = "L1"
	a.hold(one, all, s.now.Add(3*time.Second), s.now) // L1
	a.hold(two, all, s.now.Add(3*time.Second), s.now) // L2
	c, outs := (*check)(nil), []out(nil)
	for i := 1; i <= 12; i++ {
		s.second()
		a.hold(one, all, s.now.Add(3*time.Second), s.now) // L1 renewed
		if i == 5 {
			c, outs = s.n["c"].startCheck(two, 2, all, s.now) // L2 at its revision
			s.deliver("c", outs)
		}
		if c == nil {
			continue
		}
		select {
		case <-c.done:
			if u, _ := a.fence(two, s.now); !u.IsZero() {
				t.Fatalf("L2 claimable at %s while a's fence for L2's term runs until %s", s.now.Sub(t0), u.Sub(t0))
			}
			return
		default:
		}
	}
	t.Fatal("never claimable")
}

// A member that does not answer (down, or the path lost) leaves one entry
// in hold.sent per request: one a second for as long as the holding
// lasts.
func TestRequestsOfALostMemberAreForgotten(t *testing.T) {
	s := newSim(t)
	a := s.n["a"]
	a.hold(term, all, s.now.Add(3*time.Second), s.now)
	s.cut = func(from, to string) bool { return to == "c" }
	for range 600 {
		s.second()
		a.hold(term, all, s.now.Add(3*time.Second), s.now)
	}
	if n := len(a.holds[term].sent); n > 10 {
		t.Errorf("after 600 s with c lost: %d requests remembered; only those younger than For can still count", n)
	}
}
