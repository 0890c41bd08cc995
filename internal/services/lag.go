package services

import (
	"sync"
	"time"
)

// lagging is how far the datapath's applier lags the decisions: each
// renewal asks for every held address's lifetime to be refreshed, and a
// kernel that cannot keep up lets lifetimes run out under a healthy holder
// (issue 34's flapping at 10,000 Services). It is said before that
// happens: a metric, and a warning at most once a minute.
type lagging struct {
	mu     sync.Mutex
	waited time.Duration // the longest wait of the last round
	late   uint64        // rounds whose longest wait passed the retry period
	warned time.Time
}

// warnEvery spaces the warnings about a datapath that falls behind.
const warnEvery = time.Minute

// applied is datapath.Table.Applied: a round applied holds, the longest of
// which waited that long.
func (c *Controller) applied(holds int, waited time.Duration) {
	b, limit := &c.lag, c.o.Timing.RetryPeriod
	b.mu.Lock()
	b.waited = waited
	warn := false
	if waited > limit {
		b.late++
		if now := c.o.Clock.Now(); now.Sub(b.warned) >= warnEvery {
			b.warned, warn = now, true
		}
	}
	b.mu.Unlock()
	if warn {
		c.log.Warn("the kernel falls behind this node's Lease renewals: addresses waited longer than the retry period to have their lifetimes refreshed, which may run out before the next refresh and take Service VIPs off a healthy holder: hold fewer VIPs per node (spread mode, svc_election), or give vipd more CPU",
			"addresses", holds, "waited", waited, "retryPeriod", limit)
	}
}

// DatapathLag is the longest an address waited for the datapath in its
// last round, and the rounds so far in which that passed the retry period.
func (c *Controller) DatapathLag() (waited time.Duration, late uint64) {
	c.lag.mu.Lock()
	defer c.lag.mu.Unlock()
	return c.lag.waited, c.lag.late
}
