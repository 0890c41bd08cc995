package peerlink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/peerfence"
	"github.com/vipd/vipd/internal/peerwire"
)

// Options configure a Link.
type Options struct {
	// Node and Instance are this node's name and vipd process.
	Node, Instance string
	Key            peerwire.Key
	// Conn carries the datagrams; Addr is where a node listens (false:
	// not known, its messages are not sent).
	Conn   net.PacketConn
	Addr   func(node string) (net.Addr, bool)
	Timing peerfence.Timing
	// Skew, Late and LeaseDuration are what Timing must cover
	// (peerfence.Timing.Valid): the clocks' rate difference, how late the
	// kernel removes an expired address, and the Lease duration.
	Skew          float64
	Late          time.Duration
	LeaseDuration time.Duration
	// Every is how often a holder asks its members and a claimant asks
	// again (a second); less than For - Margin, or each holding lapses
	// between two requests.
	Every  time.Duration
	Clock  clock.WithTicker
	Logger *slog.Logger
	// Refused, if set, counts a refused datagram by reason
	// (peerwire.Reason).
	Refused func(reason string)
}

// Link is one node's side of holding through peers.
type Link struct {
	o       Options
	do      chan func(*state, time.Time) []out
	stopped chan struct{} // Run has returned
}

// New checks o.
func New(o Options) (*Link, error) {
	switch {
	case o.Node == "" || o.Instance == "":
		return nil, errors.New("peerlink: the node's name and process are required")
	case o.Conn == nil || o.Addr == nil:
		return nil, errors.New("peerlink: a connection and the peers' addresses are required")
	case o.Every <= 0 || o.Every >= o.Timing.For-o.Timing.Margin:
		return nil, fmt.Errorf("peerlink: asking every %s does not renew promises of %s less their margin %s in time", o.Every, o.Timing.For, o.Timing.Margin)
	}
	if err := o.Timing.Valid(o.Skew, o.Late, o.LeaseDuration); err != nil {
		return nil, fmt.Errorf("peerlink: %w", err)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Link{o: o, do: make(chan func(*state, time.Time) []out), stopped: make(chan struct{})}, nil
}

type datagram struct {
	b    []byte
	from net.Addr
}

// Run owns the link's state until ctx ends.
func (l *Link) Run(ctx context.Context) error {
	defer close(l.stopped)
	o := l.o
	s := newState(o.Node, o.Instance, o.Key, o.Timing, o.Every, o.Clock.Now(), o.Logger.With("component", "peerlink"), o.Refused)
	in := make(chan datagram, 64)
	go func() {
		buf := make([]byte, peerwire.MaxSize+1)
		for {
			n, from, err := o.Conn.ReadFrom(buf)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("reading peer messages", "err", err)
				}
				close(in)
				return
			}
			select {
			case in <- datagram{b: append([]byte(nil), buf[:n]...), from: from}:
			default: // the loop is behind: a lost message
			}
		}
	}()
	tick := o.Clock.NewTicker(o.Every)
	defer tick.Stop()
	for {
		var outs []out
		select {
		case <-ctx.Done():
			return o.Conn.Close()
		case d, ok := <-in:
			if !ok {
				return errors.New("peerlink: the connection closed")
			}
			outs = s.packet(d.b, o.Clock.Now())
		case <-tick.C():
			outs = s.tick(o.Clock.Now())
		case f := <-l.do:
			outs = f(s, o.Clock.Now())
		}
		for _, m := range outs {
			addr, ok := o.Addr(m.to)
			if !ok {
				continue
			}
			if _, err := o.Conn.WriteTo(m.b, addr); err != nil {
				s.log.Debug("sending a peer message", "to", m.to, "err", err)
			}
		}
	}
}

// post runs f in the loop and waits for it, or for ctx.
func (l *Link) post(ctx context.Context, f func(*state, time.Time) []out) error {
	done := make(chan struct{})
	select {
	case l.do <- func(s *state, now time.Time) []out { defer close(done); return f(s, now) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.stopped:
		return errStopped
	}
	<-done
	return nil
}

var errStopped = errors.New("peerlink: not running")

// Read: the first consistent read after this process started found the
// store at revision rev (peerfence.Granter.Read).
func (l *Link) Read(ctx context.Context, rev uint64) error {
	return l.post(ctx, func(s *state, _ time.Time) []out { s.g.Read(rev); return nil })
}

// Saw: the watch delivered a write of holding t at revision rev.
func (l *Link) Saw(ctx context.Context, t peerfence.Term, rev uint64) error {
	return l.post(ctx, func(s *state, _ time.Time) []out { s.g.Saw(t, rev); return nil })
}

// Know: node runs process instance (its heartbeat says so).
func (l *Link) Know(ctx context.Context, node, instance string) error {
	return l.post(ctx, func(s *state, _ time.Time) []out { s.instances[node] = instance; return nil })
}

// Hold keeps holding t through members, or records that the API
// confirmed it until api.
func (l *Link) Hold(ctx context.Context, t peerfence.Term, members []string, api time.Time) error {
	return l.post(ctx, func(s *state, now time.Time) []out { s.hold(t, members, api, now); return nil })
}

// Ending: this node is about to send the Lease write that begins another
// holding than t; the write must leave only after Ending returns
// (peerfence.Holding.Ending).
func (l *Link) Ending(ctx context.Context, t peerfence.Term) error {
	return l.post(ctx, func(s *state, now time.Time) []out {
		if h := s.holds[t]; h != nil {
			h.h.Ending(now)
		}
		return nil
	})
}

// Drop forgets holding t.
func (l *Link) Drop(ctx context.Context, t peerfence.Term) error {
	return l.post(ctx, func(s *state, _ time.Time) []out { delete(s.holds, t); return nil })
}

// Fence is holding t's fence on this node's clock, and whether it stands
// by the peers' promises alone; zero when t is not held or is over.
func (l *Link) Fence(ctx context.Context, t peerfence.Term) (until time.Time, peers bool, err error) {
	err = l.post(ctx, func(s *state, now time.Time) []out { until, peers = s.fence(t, now); return nil })
	return until, peers, err
}

// Check returns once a majority of members blocked holding t for a claim
// based on revision rev, or with ctx's error.
func (l *Link) Check(ctx context.Context, t peerfence.Term, rev uint64, members []string) error {
	var c *check
	if err := l.post(ctx, func(s *state, now time.Time) []out {
		var outs []out
		c, outs = s.startCheck(t, rev, members, now)
		return outs
	}); err != nil {
		return err
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		_ = l.post(context.Background(), func(s *state, _ time.Time) []out { delete(s.checks, c); return nil })
		return ctx.Err()
	}
}
