// Package announce tells the local network which host owns a VIP: gratuitous
// ARP for IPv4 and unsolicited neighbor advertisements for IPv6.
//
// An Announcer sends a short burst when it starts (takeover), then one
// announcement every period. Every send is fenced: nothing is sent past the
// instant given to Start or Extend, so a holder that stopped renewing (or
// woke up from a freeze) never advertises an address it may no longer own.
package announce

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Sender sends one announcement for ip.
type Sender interface {
	Announce(ip netip.Addr) error
}

// Options configure an Announcer.
type Options struct {
	// Burst are the offsets from Start of the takeover announcements.
	Burst []time.Duration
	// Period is the interval of announcements after the burst (kube-vip's vip_arpRate).
	Period time.Duration
}

// DefaultBurst sends three announcements within the first second: one at
// once, then two more in case the first was lost, or was ignored by a
// neighbour that updated its entry for the VIP less than its ARP locktime
// (1 s on Linux) before.
var DefaultBurst = []time.Duration{0, 300 * time.Millisecond, 900 * time.Millisecond}

// Announcer announces one address while its owner holds it.
type Announcer struct {
	send   Sender
	opts   Options
	clock  clock.Clock
	log    *slog.Logger
	onSent func(err error)

	mu     sync.Mutex
	ip     netip.Addr
	until  time.Time
	active bool
	cancel context.CancelFunc
}

// New returns a stopped Announcer. onSent, if not nil, is called after each
// send attempt (for metrics).
func New(send Sender, opts Options, clk clock.Clock, log *slog.Logger, onSent func(error)) *Announcer {
	if opts.Period <= 0 {
		opts.Period = 3 * time.Second
	}
	if opts.Burst == nil {
		opts.Burst = DefaultBurst
	}
	if onSent == nil {
		onSent = func(error) {}
	}
	return &Announcer{send: send, opts: opts, clock: clk, log: log, onSent: onSent}
}

// Start begins announcing ip until the instant until, with a burst first. If
// already announcing the same address, it only extends the fence.
func (a *Announcer) Start(ip netip.Addr, until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active && a.ip == ip {
		a.until = until
		return
	}
	a.stopLocked()
	ctx, cancel := context.WithCancel(context.Background())
	a.ip, a.until, a.active, a.cancel = ip, until, true, cancel
	go a.run(ctx, ip)
}

// Extend moves the fence of the running announcer to until.
func (a *Announcer) Extend(until time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.active {
		a.until = until
	}
}

// Stop ends announcing. When it returns no announcement is in flight and
// none will be sent (step-down order, invariant S3).
func (a *Announcer) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stopLocked()
}

func (a *Announcer) stopLocked() {
	if !a.active {
		return
	}
	// The goroutine sends only while holding a.mu and seeing active, so
	// once active is false under the lock nothing more is sent.
	a.active = false
	a.cancel()
}

// Active reports whether the announcer is running.
func (a *Announcer) Active() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.active
}

func (a *Announcer) run(ctx context.Context, ip netip.Addr) {
	start := a.clock.Now()
	offsets := a.opts.Burst
	next := start
	for i := 0; ; i++ {
		if i < len(offsets) {
			next = start.Add(offsets[i])
		} else {
			next = next.Add(a.opts.Period)
		}
		if d := next.Sub(a.clock.Now()); d > 0 {
			t := a.clock.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
		if !a.sendOnce(ip) {
			return
		}
	}
}

// sendOnce sends if the announcer is still active and its fence has not
// passed; it reports whether the loop should go on.
func (a *Announcer) sendOnce(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.active || a.ip != ip {
		return false
	}
	if !a.clock.Now().Before(a.until) {
		// Fenced: skip this one; the owner either extends or stops us.
		return true
	}
	err := a.send.Announce(ip)
	if err != nil {
		a.log.Warn("announcement failed", "vip", ip, "err", err)
	}
	a.onSent(err)
	return true
}
