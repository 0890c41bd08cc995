package announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// ProbeWindow is how long a probe listens for an answer: short enough to
// add little to a first claim, long enough for a host on the same segment
// to answer twice (a probe is sent at the start and half way).
const ProbeWindow = 200 * time.Millisecond

// Probe asks the segment on iface whether another host already answers for
// any of addrs, before this node first claims them: an ARP probe (RFC 5227:
// sender address 0.0.0.0, so no neighbour learns anything from it) for
// IPv4, a neighbor solicitation for IPv6. It returns the addresses some
// other host answered for, with its MAC (empty when an IPv6 answer carried
// none). The answer is only as good as the wire: a host that is down, or
// that ignores ARP, is not seen.
func Probe(ctx context.Context, iface string, addrs []netip.Addr, window time.Duration) (map[netip.Addr]net.HardwareAddr, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("interface %q: %w", iface, err)
	}
	var v4, v6 []netip.Addr
	for _, ip := range addrs {
		if ip = ip.Unmap(); ip.Is4() {
			v4 = append(v4, ip)
		} else {
			v6 = append(v6, ip)
		}
	}
	out := map[netip.Addr]net.HardwareAddr{}
	var mu sync.Mutex
	found := func(ip netip.Addr, mac net.HardwareAddr) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := out[ip]; !ok || len(out[ip]) == 0 {
			out[ip] = append(net.HardwareAddr(nil), mac...)
		}
	}
	deadline := time.Now().Add(window)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	if len(v4) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[0] = probeARP(ctx, ifi, v4, deadline, found) }()
	}
	if len(v6) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); errs[1] = probeNDP(ctx, ifi, v6, deadline, found) }()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func set(addrs []netip.Addr) map[netip.Addr]bool {
	m := make(map[netip.Addr]bool, len(addrs))
	for _, ip := range addrs {
		m[ip] = true
	}
	return m
}

// listen reads until the deadline (or ctx ends), and sends the probes at
// the start and half way.
func listen(ctx context.Context, deadline time.Time, setDeadline func(time.Time) error, send func() error, read func() error) error {
	if err := setDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = setDeadline(time.Now()) })
	defer stop()
	if err := send(); err != nil {
		return err
	}
	again := time.AfterFunc(time.Until(deadline)/2, func() { _ = send() })
	defer again.Stop()
	for {
		if err := read(); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil
			}
			return err
		}
	}
}

// probeARP: any ARP packet whose sender address is one of addrs, from a MAC
// that is not this interface's, means another host uses that address.
func probeARP(ctx context.Context, ifi *net.Interface, addrs []netip.Addr, deadline time.Time, found func(netip.Addr, net.HardwareAddr)) error {
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	want := set(addrs)
	zero := make(net.HardwareAddr, 6)
	send := func() error {
		for _, ip := range addrs {
			p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, netip.IPv4Unspecified(), zero, ip)
			if err != nil {
				return err
			}
			if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
				return fmt.Errorf("sending ARP probe for %s on %s: %w", ip, ifi.Name, err)
			}
		}
		return nil
	}
	read := func() error {
		p, _, err := c.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return os.ErrDeadlineExceeded
			}
			return err
		}
		if want[p.SenderIP] && p.SenderHardwareAddr.String() != ifi.HardwareAddr.String() {
			found(p.SenderIP, p.SenderHardwareAddr)
		}
		return nil
	}
	return listen(ctx, deadline, c.SetReadDeadline, send, read)
}

// listenNA opens an NDP socket on ifi that receives neighbor
// advertisements only. An error opening the socket itself (no link-local
// address on ifi) is an openError.
func listenNA(ifi *net.Interface) (*ndp.Conn, error) {
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("opening NDP socket on %s: %w", ifi.Name, openError{err})
	}
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// openError is a socket that could not be opened.
type openError struct{ error }

func (e openError) Unwrap() error { return e.error }

// probeNDP: a neighbor advertisement for one of addrs from another host
// means it has that address.
func probeNDP(ctx context.Context, ifi *net.Interface, addrs []netip.Addr, deadline time.Time, found func(netip.Addr, net.HardwareAddr)) error {
	c, err := listenNA(ifi)
	if err != nil {
		return err
	}
	defer c.Close()
	want := set(addrs)
	send := func() error {
		for _, ip := range addrs {
			group, err := ndp.SolicitedNodeMulticast(ip)
			if err != nil {
				return err
			}
			m := &ndp.NeighborSolicitation{TargetAddress: ip, Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
			if err := c.WriteTo(m, nil, group); err != nil {
				return fmt.Errorf("sending neighbor solicitation for %s on %s: %w", ip, ifi.Name, err)
			}
		}
		return nil
	}
	read := func() error {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return os.ErrDeadlineExceeded
			}
			return err
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || !want[na.TargetAddress.WithZone("")] {
			return nil
		}
		var mac net.HardwareAddr
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				mac = l.Addr
			}
		}
		if mac.String() != ifi.HardwareAddr.String() {
			found(na.TargetAddress.WithZone(""), mac)
		}
		return nil
	}
	return listen(ctx, deadline, c.SetReadDeadline, send, read)
}
