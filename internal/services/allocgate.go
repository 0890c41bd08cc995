package services

import (
	"time"

	"github.com/vipd/vipd/internal/gate"
)

// newAllocGate is the Services Lease's gate in spread mode, where the
// Lease holds no VIP: it only names the node that writes pool allocations
// and clears what vipd no longer serves. A node competes for it only while
// it sees such a write to make (and for an idle time after the last one,
// so that a burst of new Services is one term); then the holder releases
// it. In steady state nobody holds it, and spread mode writes only the
// heartbeats (one per node per retry period) and the control-plane Lease.
func (s *spread) newAllocGate(idle time.Duration) *gate.Gate {
	return gate.New(false, "spread mode: no pool address to allocate and nothing to clear for "+idle.String()+" (the Services Lease is held only while there is)", s.c.o.Clock)
}

// allocating records whether the last pass found work for the allocator.
func (s *spread) allocating(work bool) {
	s.alloc.Set(work, "")
	if work {
		s.alloc.OpenUntil(s.c.o.Clock.Now().Add(s.c.o.LeaseDuration))
	}
}
