package services

import (
	"context"
	"net/netip"
	"time"

	"github.com/vipd/vipd/internal/datapath"
)

// outside is what the loop's handlers ask for and may not do on the loop:
// a quorum read, a probe of the wire, a check again after a retry period,
// something else to run after a while. Each answer comes back as an event
// on the loop (checked, probed, retried, f). The Controller's own runs
// goroutines and timers (goroutines); the permutation tests record each
// request and answer it in every order.
type outside interface {
	read(g *group, r *claimRead)
	probe(g *group, r *claimRead, ips []netip.Addr)
	retry(g *group)
	later(ctx context.Context, d time.Duration, f func())
}

// table is where the loop's decisions go (datapath.Table; the permutation
// tests' kernels).
type table interface {
	Hold(t datapath.Target, until time.Time)
	Drop(t datapath.Target, reason string)
	Forget(t datapath.Target, reason string)
	Barrier() uint64
	Wait(n uint64)
}

func (c *Controller) outside() outside {
	if c.out != nil {
		return c.out
	}
	return goroutines{c}
}

func (c *Controller) table() table {
	if c.tb != nil {
		return c.tb
	}
	return &c.dp
}

// goroutines is the Controller's outside: each request on a goroutine of
// its own (counted in Controller.wg), whose answer waits for its event to
// run.
type goroutines struct{ c *Controller }

func (o goroutines) read(g *group, r *claimRead) {
	c := o.c
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		asked := c.o.Clock.Now()
		vs, err := c.readLeases(c.runCtx, g.lease)
		answered := c.o.Clock.Now()
		c.lp.do(func() { c.checked(g, r, vs, err, asked, answered) })
	}()
}

func (o goroutines) probe(g *group, r *claimRead, ips []netip.Addr) {
	c := o.c
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		answered, err := c.o.Datapath.Probe(c.runCtx, ips)
		if err != nil {
			c.log.Warn("cannot probe the wire before a first claim; claiming without", "vips", joinAddrs(ips), "err", err)
		}
		c.lp.do(func() { c.probed(g, r, ips, answered) })
	}()
}

func (o goroutines) retry(g *group) {
	o.later(o.c.runCtx, o.c.o.RetryPeriod, func() { o.c.retried(g) })
}

func (o goroutines) later(ctx context.Context, d time.Duration, f func()) {
	c := o.c
	t := c.o.Clock.NewTimer(d)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		select {
		case <-t.C():
			c.lp.do(f)
		case <-ctx.Done():
			t.Stop()
		}
	}()
}
