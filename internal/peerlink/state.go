// Package peerlink runs holding through peers (package peerfence,
// docs/safety.md) on one node: this node's Granter, the holdings it keeps
// as a holder and the checks it makes as a claimant, over sealed messages
// (package peerwire) sent node to node. One goroutine owns all of it
// (Link.Run); everything else posts to it. The decisions are peerfence's;
// this package only numbers, seals, routes and counts.
package peerlink

import (
	"errors"
	"log/slog"
	"time"

	"github.com/vipd/vipd/internal/peerfence"
	"github.com/vipd/vipd/internal/peerwire"
)

// out is a sealed message for a node.
type out struct {
	to string
	b  []byte
}

// hold is a holding this node keeps: when each request went out, and to
// whom (a promise counts from the moment it was asked for).
type hold struct {
	h    *peerfence.Holding
	sent map[uint64]asked
}

type asked struct {
	to string
	at time.Time
}

// check is a claimant's check in progress.
type check struct {
	c     *peerfence.Check
	sent  map[uint64]string // request number → member
	retry time.Time         // the next round, at the earliest
	done  chan struct{}     // closed once claimable
}

// state is everything the link decides, stepped by its goroutine (and by
// the tests, with their own network and clock).
type state struct {
	node, instance string
	key            peerwire.Key
	log            *slog.Logger
	refused        func(reason string)
	g              *peerfence.Granter
	win            peerwire.Window
	seq            uint64
	// instances: the process each node ran when last heard from (its
	// heartbeat, or its own sealed messages).
	instances map[string]string
	holds     map[peerfence.Term]*hold
	checks    map[*check]bool
	timing    peerfence.Timing
	every     time.Duration // a holder's requests, a claimant's rounds
}

func newState(node, instance string, key peerwire.Key, t peerfence.Timing, every time.Duration, now time.Time, log *slog.Logger, refused func(string)) *state {
	if refused == nil {
		refused = func(string) {}
	}
	return &state{node: node, instance: instance, key: key, log: log, refused: refused, timing: t, every: every,
		g: peerfence.NewGranter(t, now), instances: map[string]string{}, holds: map[peerfence.Term]*hold{}, checks: map[*check]bool{}}
}

// next numbers a message of this process.
func (s *state) next() uint64 {
	s.seq++
	return s.seq
}

// send seals m for node to, or answers it here when it is for this node;
// m is numbered here unless the caller numbered it (next) to match the
// answer to it.
func (s *state) send(m peerwire.Message, now time.Time) []out {
	if m.Seq == 0 {
		m.Seq = s.next()
	}
	m.From, m.FromInstance = s.node, s.instance
	if m.ToInstance == "" {
		m.ToInstance = s.instances[m.To]
	}
	if m.To == s.node {
		m.ToInstance = s.instance
		return s.handle(m, now)
	}
	return []out{{to: m.To, b: s.key.Seal(m)}}
}

// packet is a datagram that arrived at now.
func (s *state) packet(b []byte, now time.Time) []out {
	m, err := s.key.Open(b, s.node, s.instance)
	if err == nil {
		err = s.win.Accept(m)
	}
	if err != nil {
		s.refused(peerwire.Reason(err))
		s.log.Warn("refused a peer message", "reason", peerwire.Reason(err), "err", err)
		if errors.Is(err, peerwire.ErrNotMe) && m.To == s.node && (m.Kind == peerwire.Ask || m.Kind == peerwire.Check) {
			// Sealed for an earlier process of this node: say which runs
			// now, to the process that asked. It may be a recording
			// replayed, so nothing here is learnt from it: the sender's
			// window and process stay as they were.
			return s.send(peerwire.Message{Kind: peerwire.Restarted, To: m.From, ToInstance: m.FromInstance, Re: m.Seq}, now)
		}
		return nil
	}
	s.instances[m.From] = m.FromInstance
	return s.handle(m, now)
}

// handle acts on an accepted message.
func (s *state) handle(m peerwire.Message, now time.Time) []out {
	switch m.Kind {
	case peerwire.Ask:
		return s.send(peerwire.Message{Kind: peerwire.Grant, To: m.From, Re: m.Seq, Term: m.Term, Answer: s.g.Promise(m.Term, now)}, now)
	case peerwire.Check:
		return s.send(peerwire.Message{Kind: peerwire.Checked, To: m.From, Re: m.Seq, Term: m.Term, Rev: m.Rev, Answer: s.g.Check(m.Term, m.Rev, now)}, now)
	case peerwire.Grant:
		if h := s.holds[m.Term]; h != nil {
			if a, ok := h.sent[m.Re]; ok && a.to == m.From {
				delete(h.sent, m.Re)
				if m.Answer.Granted {
					h.h.Granted(m.From, a.at, now)
				}
			}
		}
	case peerwire.Checked:
		for c := range s.checks {
			if member, ok := c.sent[m.Re]; ok && member == m.From {
				delete(c.sent, m.Re)
				c.c.Answered(m.From, m.Rev, m.Answer, now)
				if c.c.Claimable() {
					close(c.done)
					delete(s.checks, c)
				}
			}
		}
	case peerwire.Restarted:
		// s.instances has the new process: the next round reaches it.
	}
	return nil
}

// tick sends what is due at now: each holding's requests, each check's
// next round.
func (s *state) tick(now time.Time) []out {
	var outs []out
	for t, h := range s.holds {
		for seq, a := range h.sent {
			// A grant for a request this old runs out by now: it
			// counts for nothing.
			if !now.Before(a.at.Add(s.timing.For - s.timing.Margin)) {
				delete(h.sent, seq)
			}
		}
		if h.h.Over(now) {
			continue
		}
		for _, n := range h.h.Members() {
			seq := s.next()
			h.sent[seq] = asked{to: n, at: now}
			outs = append(outs, s.send(peerwire.Message{Kind: peerwire.Ask, To: n, Seq: seq, Term: t}, now)...)
		}
	}
	for c := range s.checks {
		if now.Before(c.retry) {
			continue
		}
		c.retry = now.Add(s.every)
		if r := c.c.RetryAt(); r.After(c.retry) {
			c.retry = r
		}
		outs = append(outs, s.round(c, now)...)
	}
	return outs
}

// round asks the members of c that have not blocked.
func (s *state) round(c *check, now time.Time) []out {
	var outs []out
	for _, n := range c.c.Members() {
		if c.c.Blocked(n) {
			continue
		}
		seq := s.next()
		c.sent[seq] = n
		outs = append(outs, s.send(peerwire.Message{Kind: peerwire.Check, To: n, Seq: seq, Term: c.c.Term(), Rev: c.c.Rev()}, now)...)
		if !s.checks[c] { // claimable on this node's own answer
			break
		}
	}
	return outs
}

// hold starts keeping holding t, or records that the API confirmed it
// until api.
func (s *state) hold(t peerfence.Term, members []string, api, now time.Time) {
	if h := s.holds[t]; h != nil {
		h.h.Renewed(api, now)
		return
	}
	s.holds[t] = &hold{h: peerfence.NewHolding(t, members, s.timing, api), sent: map[uint64]asked{}}
}

// fence is holding t's fence now, and whether it stands by the peers'
// promises alone; zero if t is not held or over.
func (s *state) fence(t peerfence.Term, now time.Time) (time.Time, bool) {
	h := s.holds[t]
	if h == nil || h.h.Over(now) {
		return time.Time{}, false
	}
	return h.h.Until(), h.h.ThroughPeers(now)
}

// startCheck begins a check of t for a claim based on revision rev.
func (s *state) startCheck(t peerfence.Term, rev uint64, members []string, now time.Time) (*check, []out) {
	c := &check{c: peerfence.NewCheck(t, rev, members, s.timing), sent: map[uint64]string{}, retry: now.Add(s.every), done: make(chan struct{})}
	s.checks[c] = true
	return c, s.round(c, now)
}
