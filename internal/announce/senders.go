package announce

import (
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
)

// Link sends gratuitous ARP (IPv4) or unsolicited neighbor advertisements
// (IPv6) on one interface. Sockets are opened on first use and reopened after
// an error, so an interface that is recreated is picked up again.
type Link struct {
	Interface string

	mu  sync.Mutex
	arp *arp.Client
	ndp *ndp.Conn
	ifi *net.Interface
}

// Announce implements Sender.
func (l *Link) Announce(ip netip.Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if ip.Is4() {
		err = l.garp(ip)
	} else {
		err = l.unsolicitedNA(ip)
	}
	if err != nil {
		l.closeLocked()
	}
	return err
}

func (l *Link) iface() (*net.Interface, error) {
	if l.ifi == nil {
		ifi, err := net.InterfaceByName(l.Interface)
		if err != nil {
			return nil, fmt.Errorf("interface %q: %w", l.Interface, err)
		}
		l.ifi = ifi
	}
	return l.ifi, nil
}

// garp sends a gratuitous ARP request (sender and target address both the
// VIP) to the Ethernet broadcast address, the form every switch and host
// accepts to update its tables.
func (l *Link) garp(ip netip.Addr) error {
	ifi, err := l.iface()
	if err != nil {
		return err
	}
	if l.arp == nil {
		c, err := arp.Dial(ifi)
		if err != nil {
			return fmt.Errorf("opening ARP socket on %s: %w", ifi.Name, err)
		}
		l.arp = c
	}
	p, err := arp.NewPacket(arp.OperationRequest, ifi.HardwareAddr, ip, ethernet.Broadcast, ip)
	if err != nil {
		return err
	}
	if err := l.arp.WriteTo(p, ethernet.Broadcast); err != nil {
		return fmt.Errorf("sending gratuitous ARP for %s on %s: %w", ip, ifi.Name, err)
	}
	return nil
}

// unsolicitedNA sends a neighbor advertisement with the override flag to
// all-nodes, so neighbors replace their cache entry for the VIP.
func (l *Link) unsolicitedNA(ip netip.Addr) error {
	ifi, err := l.iface()
	if err != nil {
		return err
	}
	if l.ndp == nil {
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return fmt.Errorf("opening NDP socket on %s: %w", ifi.Name, err)
		}
		l.ndp = c
	}
	m := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: ifi.HardwareAddr}},
	}
	if err := l.ndp.WriteTo(m, nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("sending neighbor advertisement for %s on %s: %w", ip, ifi.Name, err)
	}
	return nil
}

// Close releases the sockets.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeLocked()
	return nil
}

func (l *Link) closeLocked() {
	if l.arp != nil {
		l.arp.Close()
		l.arp = nil
	}
	if l.ndp != nil {
		l.ndp.Close()
		l.ndp = nil
	}
	l.ifi = nil
}
