package services

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Pacing of passes asked for by informer events. Every node plans all of
// its Services in a pass; while 1000 Services converge the informers deliver
// thousands of events, and a pass per event made planning cost grow with
// the square of the Services on nodes whose passes are quick (single-holder
// followers spent twice the holder's CPU). After a pass that took d, the
// next one that only informer events ask for waits until pacing × d has
// passed (at most maxPace), and covers every event of that wait: planning
// takes at most 1/(1+pacing) of the time, so its cost grows with the time
// the Services take to converge, which grows about linearly with their
// number. A pass asked for by ownership (a heartbeat, a Lease, the fence,
// a retry, the control-plane VIP) runs at once.
const (
	pacing  = 4
	maxPace = 200 * time.Millisecond
	// resync: a pass at least this often, whatever happens.
	resync = 30 * time.Second
)

// schedule runs pass at once on asap, after the pace on soon, and every
// resync, until ctx ends.
func schedule(ctx context.Context, clk clock.Clock, asap, soon <-chan struct{}, pass func()) {
	var last time.Duration // how long the last pass took
	var end time.Time      // when it ended
	var paced <-chan time.Time
	var pacer clock.Timer
	every := clk.NewTimer(resync)
	defer every.Stop()
	for {
		select {
		case <-ctx.Done():
			if pacer != nil {
				pacer.Stop()
			}
			return
		case <-asap:
		case <-soon:
			if paced != nil {
				continue // a pass is due when the pace allows: it covers this event
			}
			if wait := min(pacing*last, maxPace) - clk.Since(end); wait > 0 {
				pacer = clk.NewTimer(wait)
				paced = pacer.C()
				continue
			}
		case <-paced:
		case <-every.C():
		}
		if pacer != nil {
			pacer.Stop()
			pacer, paced = nil, nil
		}
		start := clk.Now()
		pass()
		end = clk.Now()
		last = end.Sub(start)
		every.Reset(resync)
	}
}
