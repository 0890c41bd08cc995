// Package conflict watches the wire for other hosts that answer for the
// addresses this node holds: K3s' ServiceLB left on, a forgotten kube-vip,
// a server configured by hand, another cluster on the segment. vipd keeps
// two vipd nodes from holding one address; it cannot keep anything else
// from answering for it, but it can see it and say so.
//
// A Monitor probes the held addresses in rounds, a batch each, with the
// same ARP probe / neighbor solicitation as before a first claim (sender
// 0.0.0.0 or ::, so no neighbour cache learns anything from it): another
// host that has the address answers, from its MAC. Between probes it
// listens (Options.Listen): a host that only announces the address
// (gratuitous ARP, unsolicited neighbor advertisement) and ignores probes
// is seen whenever it announces. vipd's own announcements are unchanged
// (no GARP war). A conflict is reported once per address and MAC, and
// resolved after that MAC missed two probes of the address and, if it was
// heard announcing, has been quiet for Quiet.
package conflict

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/utils/clock"

	"github.com/vipd/vipd/internal/lease"
)

// Report is the message for f: another host answers for what (the
// address as people read it) while node, with interface MAC nodeMAC,
// holds it.
func (f Finding) Report(what, node, nodeMAC string) string {
	return fmt.Sprintf("since %s another host answers for %s on the wire (MAC %s) while node %s (MAC %s) holds it: clients may reach either; %s. vipd keeps holding it and announcing at its normal rate",
		f.Since.UTC().Format(time.RFC3339), what, f.MAC, node, MAC(nodeMAC), Causes)
}

// Resolved is the message for f once that host no longer answers.
func (f Finding) Resolved(what, node string) string {
	return fmt.Sprintf("the host with MAC %s no longer answers for %s (it did since %s); node %s holds it alone",
		f.MAC, what, f.Since.UTC().Format(time.RFC3339), node)
}

// Annotation on a Lease lists, as address=MAC, every other host its
// holder sees answering for one of its addresses ("" for none); MACAnnotation
// is the holder's own interface MAC, so anyone can tell the owner from
// another host.
const (
	Annotation    = lease.Conflicts
	MACAnnotation = lease.MAC
)

// Causes names what usually answers for a vipd address, with the fixes
// (for Events and logs).
const Causes = "likely K3s ServiceLB (start K3s with --disable servicelb), a kube-vip or MetalLB still announcing it, another cluster on this segment, or a host configured with this address by hand; find the host with that MAC (ip neigh on a router or node) and remove the address there, or choose another address"

// Prober asks the wire which of addrs another host answers for, by MAC.
type Prober func(ctx context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error)

// Finding is one conflict: another host answers for Addr from MAC.
type Finding struct {
	Addr  netip.Addr
	MAC   string
	Since time.Time
}

// Options configure a Monitor.
type Options struct {
	Probe Prober
	// Held returns the addresses this node holds now.
	Held func() []netip.Addr
	// Every is the time between rounds (default 1 s); Batch the most
	// addresses probed per round (default 32).
	Every time.Duration
	Batch int
	// Listen, if set, reports until ctx ends every address another host
	// claims on the wire by itself, with its MAC (announce.Listen).
	Listen func(ctx context.Context, seen func(netip.Addr, net.HardwareAddr)) error
	// Quiet is how long a MAC heard announcing an address must stay quiet
	// before its conflict is over (default 10 s).
	Quiet time.Duration
	// Report is called for a new conflict, Resolve when it is over; both
	// from the Monitor's goroutine.
	Report, Resolve func(Finding)
	Clock           clock.Clock
	Logger          *slog.Logger
}

// Misses is how many probes of an address in a row a MAC must not answer
// before its conflict counts as over.
const Misses = 2

// Monitor runs the rounds.
type Monitor struct {
	o     Options
	next  int // round-robin position in the sorted held addresses
	heard chan Finding

	mu     sync.Mutex
	active map[key]*entry
	held   map[netip.Addr]bool // as of the last round
	warned bool
}

type key struct {
	addr netip.Addr
	mac  string
}

type entry struct {
	f      Finding
	misses int
	heard  time.Time // when the MAC was last heard announcing it (zero: never)
}

// New returns a Monitor; Run starts it.
func New(o Options) *Monitor {
	if o.Every <= 0 {
		o.Every = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Quiet <= 0 {
		o.Quiet = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Monitor{o: o, active: map[key]*entry{}, held: map[netip.Addr]bool{}, heard: make(chan Finding, 64)}
}

// Run probes a round every Every until ctx ends, and takes what the
// listener hears in between.
func (m *Monitor) Run(ctx context.Context) {
	if m.o.Listen != nil {
		go func() {
			if err := m.o.Listen(ctx, m.hear); err != nil {
				m.o.Logger.Warn("cannot listen on the wire for address conflicts (probes still find hosts that answer)", "err", err)
			}
		}()
	}
	next := m.o.Clock.After(m.o.Every)
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-m.heard:
			m.Heard(f.Addr, f.MAC)
		case <-next:
			m.Round(ctx)
			next = m.o.Clock.After(m.o.Every)
		}
	}
}

// hear is the listener's: a claim on an address this node holds as it
// hears it goes to Run. Others are dropped here: the other vipd nodes'
// announcements of their own addresses, and of one this node has just
// handed over (the set of the last round, which filters cheaply, may
// still list it: Held decides).
func (m *Monitor) hear(a netip.Addr, mac net.HardwareAddr) {
	a = a.Unmap()
	m.mu.Lock()
	held := m.held[a]
	m.mu.Unlock()
	if !held || !slices.Contains(m.o.Held(), a) {
		return
	}
	select {
	case m.heard <- Finding{Addr: a, MAC: MAC(mac.String())}:
	default: // Run is behind: the host announces again, or a probe finds it
	}
}

// Heard takes a claim another host made on the wire by itself: a new
// conflict if the address is held (at the last round), and that MAC's
// conflict stays until it has been quiet for Quiet.
func (m *Monitor) Heard(a netip.Addr, mac string) {
	now := m.o.Clock.Now()
	m.mu.Lock()
	if !m.held[a] {
		m.mu.Unlock()
		return
	}
	k := key{a, mac}
	e, known := m.active[k]
	if !known {
		e = &entry{f: Finding{Addr: a, MAC: mac, Since: now}}
		m.active[k] = e
	}
	e.heard = now
	f := e.f
	m.mu.Unlock()
	if !known {
		m.o.Report(f)
	}
}

// Round probes the next batch of held addresses and reports what changed.
func (m *Monitor) Round(ctx context.Context) {
	held := m.o.Held()
	slices.SortFunc(held, func(a, b netip.Addr) int { return a.Compare(b) })
	m.forget(held)
	if len(held) == 0 {
		return
	}
	batch := held
	if len(held) > m.o.Batch {
		if m.next >= len(held) {
			m.next = 0
		}
		batch = slices.Clone(held[m.next:min(m.next+m.o.Batch, len(held))])
		if n := m.o.Batch - len(batch); n > 0 {
			batch = append(batch, held[:min(n, m.next)]...)
		}
		m.next = (m.next + m.o.Batch) % len(held)
	}
	answered, err := m.o.Probe(ctx, batch)
	if err != nil {
		if !m.warned {
			m.o.Logger.Warn("cannot probe the wire for address conflicts", "err", err)
			m.warned = true
		}
		if len(answered) == 0 {
			return
		}
	}
	m.record(batch, answered)
}

// record takes one probe's answers for batch.
func (m *Monitor) record(batch []netip.Addr, answered map[netip.Addr]net.HardwareAddr) {
	now := m.o.Clock.Now()
	var found, over []Finding
	m.mu.Lock()
	for _, a := range batch {
		mac, ok := answered[a]
		seen := ""
		if ok {
			seen = MAC(mac.String())
			k := key{a, seen}
			if e := m.active[k]; e != nil {
				e.misses = 0
			} else {
				e = &entry{f: Finding{Addr: a, MAC: seen, Since: now}}
				m.active[k] = e
				found = append(found, e.f)
			}
		}
		for k, e := range m.active {
			if k.addr == a && k.mac != seen {
				if e.misses++; e.misses >= Misses && (e.heard.IsZero() || now.Sub(e.heard) >= m.o.Quiet) {
					delete(m.active, k)
					over = append(over, e.f)
				}
			}
		}
	}
	m.mu.Unlock()
	for _, f := range found {
		m.o.Report(f)
	}
	for _, f := range over {
		m.o.Resolve(f)
	}
}

// forget drops conflicts on addresses this node no longer holds: the
// node that holds them now watches them.
func (m *Monitor) forget(held []netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held = make(map[netip.Addr]bool, len(held))
	for _, a := range held {
		m.held[a] = true
	}
	for k := range m.active {
		if _, ok := slices.BinarySearchFunc(held, k.addr, func(a, b netip.Addr) int { return a.Compare(b) }); !ok {
			delete(m.active, k)
		}
	}
}

// Active returns the conflicts now, by address and MAC.
func (m *Monitor) Active() []Finding {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Finding, 0, len(m.active))
	for _, e := range m.active {
		out = append(out, e.f)
	}
	slices.SortFunc(out, func(a, b Finding) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return strings.Compare(a.MAC, b.MAC)
	})
	return out
}

// Format writes findings as address=MAC pairs, comma-separated (the
// conflicts annotation on a Lease); "" for none.
func Format(fs []Finding) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Addr.String() + "=" + f.MAC
	}
	return strings.Join(parts, ",")
}

// Describe reads every Lease's Annotation: what its holder sees answering
// for its addresses, one line each (for vipd status and vipd doctor).
func Describe(ls []coordinationv1.Lease) []string {
	var out []string
	for _, l := range ls {
		v := l.Annotations[Annotation]
		if v == "" || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			continue
		}
		mine := MAC(l.Annotations[MACAnnotation])
		for _, p := range strings.Split(v, ",") {
			addr, mac, _ := strings.Cut(p, "=")
			out = append(out, fmt.Sprintf("%s: another host answers for it from MAC %s; node %s (MAC %s) holds it (Lease %s/%s)",
				addr, mac, *l.Spec.HolderIdentity, mine, l.Namespace, l.Name))
		}
	}
	slices.Sort(out)
	return out
}

// MAC is s, or "unknown" when empty (an IPv6 answer without a link-layer
// address option, a Lease without MACAnnotation).
func MAC(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
