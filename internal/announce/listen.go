package announce

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Listen reports, until ctx ends, every claim another host makes on the
// segment on its own: a gratuitous ARP (request or reply whose sender
// address is its target; the sender's MAC not iface's) and an unsolicited
// IPv6 neighbor advertisement (its target, with the MAC it carries).
// Probes (Probe) find a host that answers; this finds one that announces,
// whenever it does. Answers (ARP replies, solicited advertisements) are
// left to the probes that asked. A filter in the kernel keeps only
// gratuitous ARPs from other hosts (not a client's request, nor this
// host's own packets), so a busy segment costs little. The MAC passed to
// seen is valid only during the call.
func Listen(ctx context.Context, iface string, seen func(netip.Addr, net.HardwareAddr)) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return fmt.Errorf("interface %q: %w", iface, err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(2)
	go func() { defer wg.Done(); errs[0] = listenARP(ctx, ifi, seen) }()
	go func() { defer wg.Done(); errs[1] = listenNDP(ctx, ifi, seen) }()
	wg.Wait()
	return errors.Join(errs...)
}

// Offsets in an Ethernet frame carrying ARP for IPv4.
const (
	arpSHA = 14 + 8  // sender hardware address (6)
	arpSPA = 14 + 14 // sender protocol address (4)
	arpTPA = 14 + 24 // target protocol address (4)
)

// claimProgram keeps the gratuitous ARPs (sender address = target
// address, request or reply) that do not come from mac.
func claimProgram(mac net.HardwareAddr) ([]bpf.Instruction, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("MAC %q: want 6 bytes", mac)
	}
	hi := uint32(mac[0])<<24 | uint32(mac[1])<<16 | uint32(mac[2])<<8 | uint32(mac[3])
	lo := uint32(mac[4])<<8 | uint32(mac[5])
	return []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: arpSPA, Size: 4},
		/* 1 */ bpf.TAX{},
		/* 2 */ bpf.LoadAbsolute{Off: arpTPA, Size: 4},
		/* 3 */ bpf.JumpIfX{Cond: bpf.JumpNotEqual, SkipTrue: 5}, // not gratuitous: to 9
		/* 4 */ bpf.LoadAbsolute{Off: arpSHA, Size: 4},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: 2}, // another MAC: to 8
		/* 6 */ bpf.LoadAbsolute{Off: arpSHA + 4, Size: 2},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipTrue: 1}, // this host's: to 9
		/* 8 */ bpf.RetConstant{Val: 1 << 16},
		/* 9 */ bpf.RetConstant{Val: 0},
	}, nil
}

func listenARP(ctx context.Context, ifi *net.Interface, seen func(netip.Addr, net.HardwareAddr)) error {
	prog, err := claimProgram(ifi.HardwareAddr)
	if err != nil {
		return fmt.Errorf("ARP listener on %s: %w", ifi.Name, err)
	}
	filter, err := bpf.Assemble(prog)
	if err != nil {
		return err
	}
	c, err := packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, &packet.Config{Filter: filter})
	if err != nil {
		return fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	// The filter kept only gratuitous ARPs of other hosts: read the two
	// fields needed from the frame, without parsing (every vipd node's
	// periodic announcements of its own VIPs reach every other node).
	buf := make([]byte, 128)
	return readUntil(ctx, func() error {
		n, _, err := c.ReadFrom(buf)
		if err != nil || n < arpTPA+4 || buf[14+4] != 6 || buf[14+5] != 4 { // hardware and protocol address lengths
			return err
		}
		if ip := netip.AddrFrom4([4]byte(buf[arpSPA : arpSPA+4])); !ip.IsUnspecified() {
			seen(ip, net.HardwareAddr(buf[arpSHA:arpSHA+6]))
		}
		return nil
	})
}

// readUntil calls read until ctx ends or the socket is closed (a packet
// that cannot be read is skipped).
func readUntil(ctx context.Context, read func() error) error {
	for {
		err := read()
		if ctx.Err() != nil || errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) {
			return nil
		}
	}
}

func listenNDP(ctx context.Context, ifi *net.Interface, seen func(netip.Addr, net.HardwareAddr)) error {
	c, err := listenNA(ifi)
	if errors.As(err, new(openError)) {
		return nil // no IPv6 on the interface (no link-local address): nothing to hear
	}
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	return readUntil(ctx, func() error {
		m, _, _, err := c.ReadFrom()
		if err != nil {
			return err
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok || na.Solicited {
			return nil
		}
		for _, o := range na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target && l.Addr.String() != ifi.HardwareAddr.String() {
				seen(na.TargetAddress.WithZone(""), l.Addr)
			}
		}
		return nil
	})
}

// Listeners shares one Listen per interface among its subscribers (the
// control-plane VIP's and the Services' conflict watches): each packet is
// read once, and given to every subscriber.
type Listeners struct {
	// Listen is the listener shared (nil: Listen).
	Listen func(ctx context.Context, iface string, seen func(netip.Addr, net.HardwareAddr)) error

	mu     sync.Mutex
	ifaces map[string]*shared
}

type shared struct {
	// subs is replaced, never changed in place: the reader takes it
	// under the lock and calls without it.
	subs   []*func(netip.Addr, net.HardwareAddr)
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// For returns a Listen for iface whose socket is shared: opened for the
// first subscriber, closed after the last one's ctx ended.
func (ls *Listeners) For(iface string) func(context.Context, func(netip.Addr, net.HardwareAddr)) error {
	return func(ctx context.Context, seen func(netip.Addr, net.HardwareAddr)) error {
		ls.mu.Lock()
		if ls.ifaces == nil {
			ls.ifaces = map[string]*shared{}
		}
		sh := ls.ifaces[iface]
		if sh == nil {
			lctx, cancel := context.WithCancel(context.Background())
			sh = &shared{cancel: cancel, done: make(chan struct{})}
			ls.ifaces[iface] = sh
			listen := ls.Listen
			if listen == nil {
				listen = Listen
			}
			go func() {
				err := listen(lctx, iface, func(a netip.Addr, mac net.HardwareAddr) {
					ls.mu.Lock()
					subs := sh.subs
					ls.mu.Unlock()
					for _, f := range subs {
						(*f)(a, mac)
					}
				})
				ls.mu.Lock()
				sh.err = err
				ls.mu.Unlock()
				close(sh.done)
			}()
		}
		sub := &seen
		sh.subs = append(slices.Clip(sh.subs), sub)
		ls.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-sh.done:
		}
		ls.mu.Lock()
		defer ls.mu.Unlock()
		sh.subs = slices.DeleteFunc(slices.Clone(sh.subs), func(f *func(netip.Addr, net.HardwareAddr)) bool { return f == sub })
		if len(sh.subs) == 0 && ls.ifaces[iface] == sh {
			sh.cancel()
			delete(ls.ifaces, iface)
		}
		select {
		case <-sh.done:
			return sh.err
		default:
			return nil
		}
	}
}
