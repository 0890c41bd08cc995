// Package owner is the one decision point for "this node owns this VIP now".
//
// A source of ownership (today the Lease election; later a per-node
// heartbeat with rendezvous hashing for Service VIPs) calls Hold with the
// instant until which the node may own the VIP, and Drop when it may not.
// VIP turns that into the address on the interface, with a kernel lifetime
// that ends at the same instant, and announcements fenced the same way.
package owner

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/vip"
)

// Address is the VIP on the link (vip.Address in production).
type Address interface {
	Hold(until time.Time) error
	Remove() error
	Present() (bool, error)
	Prefix() netip.Prefix
	Interface() string
}

// Announcer advertises the VIP (announce.Announcer in production).
type Announcer interface {
	Start(ip netip.Addr, until time.Time)
	Extend(until time.Time)
	Stop()
}

// Recorder receives what metrics need.
type Recorder interface {
	SetPresent(bool)
}

// VIP applies ownership decisions for one address.
type VIP struct {
	addr     Address
	announce Announcer
	rec      Recorder
	clock    clock.Clock
	log      *slog.Logger

	// mu orders Hold, Drop and Retarget, which call the kernel and the
	// announcer; st guards what they leave, so that Holding, HoldingNow,
	// Check and Prefix never wait for a netlink call in progress.
	mu      sync.Mutex
	st      sync.Mutex
	holding bool
	until   time.Time
}

// New returns a VIP that is not held.
func New(addr Address, ann Announcer, rec Recorder, clk clock.Clock, log *slog.Logger) *VIP {
	return &VIP{addr: addr, announce: ann, rec: rec, clock: clk, log: log.With("vip", addr.Prefix().String(), "interface", addr.Interface())}
}

// Hold makes this node the owner until the given monotonic instant: it puts
// (or refreshes) the address with a lifetime ending then, and announces it;
// the first Hold after a Drop sends the takeover burst.
func (v *VIP) Hold(until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.holdLocked(until)
}

func (v *VIP) holdLocked(until time.Time) {
	err := v.addr.Hold(until)
	if errors.Is(err, vip.ErrFenced) {
		v.stopLocked("fence deadline reached while adding")
		return
	}
	if err != nil {
		// Not fatal for safety: the old lifetime still ends by itself.
		v.log.Error("cannot put VIP on interface", "err", err)
		return
	}
	v.st.Lock()
	first := !v.holding
	v.until, v.holding = until, true
	v.st.Unlock()
	if first {
		v.rec.SetPresent(true)
		v.log.Info("VIP added", "validFor", until.Sub(v.clock.Now()).Truncate(time.Second))
		v.announce.Start(v.addr.Prefix().Addr(), until)
		return
	}
	v.announce.Extend(until)
}

// Drop stops announcing and removes the address, in that order (S3). It
// returns when both are done.
func (v *VIP) Drop(reason string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.stopLocked(reason)
}

func (v *VIP) stopLocked(reason string) {
	v.announce.Stop()
	err := v.addr.Remove()
	if err != nil {
		v.log.Error("cannot remove VIP; the kernel removes it when its lifetime ends", "err", err)
	}
	v.st.Lock()
	was := v.holding
	v.holding = false
	v.st.Unlock()
	if was {
		v.log.Info("VIP removed", "reason", reason)
	}
	v.rec.SetPresent(false)
}

// Check is the health of ownership: an error when this node holds the VIP
// but its fence has passed, or the address is missing from the interface.
func (v *VIP) Check() error {
	v.st.Lock()
	holding, until, addr := v.holding, v.until, v.addr
	v.st.Unlock()
	if !holding {
		return nil
	}
	if late := v.clock.Since(until); late >= 0 {
		return fmt.Errorf("leader, but no successful Lease renewal: fence passed %s ago", late.Round(time.Millisecond))
	}
	ok, err := addr.Present()
	if err != nil {
		return fmt.Errorf("checking %s on %s: %w", addr.Prefix(), addr.Interface(), err)
	}
	if !ok {
		return fmt.Errorf("leader, but %s is missing from %s", addr.Prefix(), addr.Interface())
	}
	return nil
}

// Prefix is the VIP currently managed (it changes with Retarget).
func (v *VIP) Prefix() netip.Prefix {
	v.st.Lock()
	defer v.st.Unlock()
	return v.addr.Prefix()
}

// Holding reports whether this node currently owns the VIP.
func (v *VIP) Holding() bool {
	v.st.Lock()
	defer v.st.Unlock()
	return v.holding
}

// HoldingNow reports whether this node owns the VIP and its fence has not
// passed. Between the fence and the Drop that follows it (a process that
// was stopped runs its timers late) Holding is still true, but the kernel
// has removed the address and another node may own it: what is heard on
// the wire for it then is no conflict with this node.
func (v *VIP) HoldingNow() bool {
	v.st.Lock()
	defer v.st.Unlock()
	return v.holding && v.clock.Now().Before(v.until)
}

// Retarget replaces the address (a DNS name in the configuration now
// resolves elsewhere). If this node holds the VIP, the old address is taken
// off and the new one put on and announced, with the same fence, under one
// lock: no Drop or Hold of the election can come in between.
func (v *VIP) Retarget(a Address) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st.Lock()
	holding, until := v.holding, v.until
	v.st.Unlock()
	if holding {
		v.stopLocked("address changed to " + a.Prefix().String())
	}
	v.st.Lock()
	v.addr = a
	v.st.Unlock()
	v.log = v.log.With("vip", a.Prefix().String())
	if holding {
		v.holdLocked(until)
	}
}
