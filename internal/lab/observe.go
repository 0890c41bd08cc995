package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
)

// Sample is which nodes had the VIP on an interface that is up, at one time.
type Sample struct {
	At     time.Time
	Owners []string
}

// Probe is one client connection through the VIP.
type Probe struct {
	At   time.Time
	Node string // who answered; empty on failure
	Err  error
}

// Observer samples the nodes' addresses and probes the VIP from the client
// host, from outside the daemons, until Stop.
type Observer struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	samples []Sample
	probes  []Probe
	errs    []error
}

// Observe starts sampling every sampleEvery and probing vip:port every
// probeEvery (probes run concurrently, each with a 200 ms timeout).
func (l *Lab) Observe(vip netip.Addr, port int, sampleEvery, probeEvery time.Duration) *Observer {
	return l.ObserveTimeout(vip, port, sampleEvery, probeEvery, 200*time.Millisecond)
}

// ObserveTimeout is Observe with another timeout for each probe (a probe
// slower than that is a failure).
func (l *Lab) ObserveTimeout(vip netip.Addr, port int, sampleEvery, probeEvery, timeout time.Duration) *Observer {
	ctx, cancel := context.WithCancel(context.Background())
	o := &Observer{cancel: cancel}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			s, err := l.Owners(vip)
			o.mu.Lock()
			if err != nil {
				o.errs = append(o.errs, err)
			} else {
				o.samples = append(o.samples, s)
			}
			o.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	if probeEvery > 0 {
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			t := time.NewTicker(probeEvery)
			defer t.Stop()
			var pw sync.WaitGroup
			defer pw.Wait()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				pw.Add(1)
				go func() {
					defer pw.Done()
					at := time.Now()
					node, err := l.Reach(context.Background(), vip, port, timeout)
					o.mu.Lock()
					o.probes = append(o.probes, Probe{At: at, Node: node, Err: err})
					o.mu.Unlock()
				}()
			}
		}()
	}
	return o
}

// Owners samples which nodes have vip on an up eth0 now.
func (l *Lab) Owners(vip netip.Addr) (Sample, error) {
	s := Sample{At: time.Now()}
	for _, n := range l.Nodes {
		present, up, err := n.HasAddr(vip)
		if err != nil {
			return s, fmt.Errorf("%s: %w", n.Name, err)
		}
		if present && up {
			s.Owners = append(s.Owners, n.Name)
		}
	}
	return s, nil
}

// AllOwners returns, for every address on an up eth0 of any node that is not
// the node's own, the nodes that have it: one netlink dump per node.
func (l *Lab) AllOwners() (map[netip.Addr][]string, error) { return OwnersIn(l.Nodes) }

// OwnersIn is AllOwners of nodes, read in their order (a hand-over read in
// one order can show an address on two nodes: read both orders).
func OwnersIn(nodes []*Host) (map[netip.Addr][]string, error) {
	out := map[netip.Addr][]string{}
	for _, n := range nodes {
		link, err := n.Netlink().LinkByName("eth0")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			continue
		}
		addrs, err := n.Netlink().AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || ip.Unmap() == n.IP || ip.Unmap() == n.IP6 || ip.IsLinkLocalUnicast() {
				continue
			}
			out[ip.Unmap()] = append(out[ip.Unmap()], n.Name)
		}
	}
	return out, nil
}

// Stop ends observation and returns what was seen.
func (o *Observer) Stop() *Report {
	o.cancel()
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	sort.Slice(o.probes, func(i, j int) bool { return o.probes[i].At.Before(o.probes[j].At) })
	return &Report{Samples: o.samples, Probes: o.probes, Errors: o.errs}
}

// Report is what an Observer saw.
type Report struct {
	Samples []Sample
	Probes  []Probe
	Errors  []error
}

// MaxOwners is the largest number of nodes that had the VIP at once.
func (r *Report) MaxOwners() int {
	m := 0
	for _, s := range r.Samples {
		m = max(m, len(s.Owners))
	}
	return m
}

// TwoOwnerTime is the sampled time during which two or more nodes had the
// VIP: from each such sample to the next sample.
func (r *Report) TwoOwnerTime() time.Duration {
	var d time.Duration
	for i, s := range r.Samples {
		if len(s.Owners) > 1 && i+1 < len(r.Samples) {
			d += r.Samples[i+1].At.Sub(s.At)
		}
	}
	return d
}

// OwnerChanges lists the successive single owners seen (samples with no
// owner are skipped), e.g. [n1 n2] for one takeover.
func (r *Report) OwnerChanges() []string {
	var seq []string
	for _, s := range r.Samples {
		if len(s.Owners) != 1 {
			continue
		}
		if len(seq) == 0 || seq[len(seq)-1] != s.Owners[0] {
			seq = append(seq, s.Owners[0])
		}
	}
	return seq
}

// AnsweredBy lists the successive nodes that answered the client.
func (r *Report) AnsweredBy() []string {
	var seq []string
	for _, p := range r.Probes {
		if p.Err != nil {
			continue
		}
		if len(seq) == 0 || seq[len(seq)-1] != p.Node {
			seq = append(seq, p.Node)
		}
	}
	return seq
}

// Gap is the client-seen outage around a fault at t: from the start of the
// last successful probe before the first failure after t (or t, if none
// failed before) to the start of the first successful probe after it. It is
// 0 when no probe after t failed, and -1 when the VIP never came back.
func (r *Report) Gap(t time.Time) time.Duration {
	var lastOK time.Time
	failed := false
	for _, p := range r.Probes {
		switch {
		case p.Err == nil && failed:
			return p.At.Sub(lastOK)
		case p.Err == nil:
			lastOK = p.At
		case !p.At.Before(t) && !failed:
			failed = true
			if lastOK.IsZero() {
				lastOK = t
			}
		}
	}
	if failed {
		return -1
	}
	return 0
}

// Recovery is the time from t to the first probe answered by node.
func (r *Report) Recovery(t time.Time, node string) time.Duration {
	for _, p := range r.Probes {
		if p.Err == nil && p.Node == node && !p.At.Before(t) {
			return p.At.Sub(t)
		}
	}
	return -1
}

// Summary is a one-line description for test logs.
func (r *Report) Summary(t time.Time) string {
	return fmt.Sprintf("samples=%d probes=%d maxOwners=%d twoOwners=%s owners=%s answeredBy=%s gap=%s",
		len(r.Samples), len(r.Probes), r.MaxOwners(), r.TwoOwnerTime(), strings.Join(r.OwnerChanges(), "→"),
		strings.Join(r.AnsweredBy(), "→"), r.Gap(t).Round(time.Millisecond))
}

// AddrEvent is a change of an address on a node's eth0 as its kernel
// announced it (RTM_NEWADDR, also sent when a lifetime is refreshed;
// RTM_DELADDR), stamped when the lab read it.
type AddrEvent struct {
	At    time.Time
	Node  string
	IP    netip.Addr
	Added bool
}

// AddrWatch follows every node's eth0 addresses through netlink
// notifications until Stop: exact times, where sampling (AllOwners) is only
// as fine as its period and costs a core when run back to back.
type AddrWatch struct {
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	events []AddrEvent
	errs   []error
}

// WatchAddrs starts an AddrWatch.
func (l *Lab) WatchAddrs() (*AddrWatch, error) {
	w := &AddrWatch{done: make(chan struct{})}
	for _, n := range l.Nodes {
		link, err := n.Netlink().LinkByName("eth0")
		if err != nil {
			close(w.done)
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		idx, name := link.Attrs().Index, n.Name
		ch := make(chan netlink.AddrUpdate, 4096)
		err = netlink.AddrSubscribeWithOptions(ch, w.done, netlink.AddrSubscribeOptions{
			Namespace: &n.ns, ReceiveBufferSize: 8 << 20, ReceiveBufferForceSize: true,
			ErrorCallback: func(err error) {
				select {
				case <-w.done:
					return // the socket closed by Stop
				default:
				}
				w.mu.Lock()
				w.errs = append(w.errs, fmt.Errorf("%s: %w", name, err))
				w.mu.Unlock()
			},
		})
		if err != nil {
			close(w.done)
			return nil, fmt.Errorf("%s: subscribing to address changes: %w", name, err)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for u := range ch {
				at := time.Now()
				ip, ok := netip.AddrFromSlice(u.LinkAddress.IP)
				if !ok || u.LinkIndex != idx {
					continue
				}
				w.mu.Lock()
				w.events = append(w.events, AddrEvent{At: at, Node: name, IP: ip.Unmap(), Added: u.NewAddr})
				w.mu.Unlock()
			}
		}()
	}
	return w, nil
}

// Stop ends the watch and returns its events in the order they were read,
// and the first error a subscription reported (a lost notification: its
// socket's buffer overflowed), if any.
func (w *AddrWatch) Stop() ([]AddrEvent, error) {
	close(w.done)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	sort.SliceStable(w.events, func(i, j int) bool { return w.events[i].At.Before(w.events[j].At) })
	if len(w.errs) > 0 {
		return w.events, w.errs[0]
	}
	return w.events, nil
}
