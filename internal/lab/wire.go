package lab

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/packet"
	"golang.org/x/sys/unix"

	"github.com/vipd/vipd/internal/announce"
)

// Wire asks the segment, from the client host, who answers ARP for an
// address: what a router on the segment would learn. It sees an address
// held in a node's kernel (vipd) and a responder in user space (MetalLB's
// speaker) alike, so both can be measured the same way.
type Wire struct {
	c    *arp.Client
	macs map[string]string // MAC → node name

	mu      sync.Mutex
	replies []Answer
	done    chan struct{}
}

// Wire opens an ARP socket on the client host's eth0. Close it when done.
func (l *Lab) Wire() (*Wire, error) {
	w := &Wire{macs: map[string]string{}, done: make(chan struct{})}
	for _, n := range l.Nodes {
		link, err := n.Netlink().LinkByName("eth0")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.Name, err)
		}
		w.macs[link.Attrs().HardwareAddr.String()] = n.Name
	}
	var err error
	if derr := l.Client.Do(func() {
		var ifi *net.Interface
		if ifi, err = net.InterfaceByName("eth0"); err != nil {
			return
		}
		var pc *packet.Conn
		if pc, err = packet.Listen(ifi, packet.Raw, unix.ETH_P_ARP, nil); err != nil {
			return
		}
		// 1000 answers at once overflow the default buffer (about 280
		// ARP packets): room for several thousand.
		if rc, serr := pc.SyscallConn(); serr == nil {
			_ = rc.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
			})
		}
		if err == nil {
			w.c, err = arp.New(ifi, pc)
		}
		if err != nil {
			pc.Close()
		}
	}); derr != nil {
		return nil, derr
	}
	if err != nil {
		return nil, fmt.Errorf("ARP socket on the client: %w", err)
	}
	go w.read()
	return w, nil
}

func (w *Wire) read() {
	defer close(w.done)
	for {
		p, _, err := w.c.Read()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return // closed
		}
		if p.Operation != arp.OperationReply {
			continue
		}
		node, ok := w.macs[p.SenderHardwareAddr.String()]
		if !ok {
			node = "mac " + p.SenderHardwareAddr.String()
		}
		w.mu.Lock()
		w.replies = append(w.replies, Answer{At: time.Now(), IP: p.SenderIP, Node: node})
		w.mu.Unlock()
	}
}

// Ask sends one ARP request for each address and returns, for each, the
// nodes that answered within window (sorted; none: nobody answered). A
// reply that comes later than window is counted in the next Ask, so keep
// window well above the segment's reply time.
func (w *Wire) Ask(addrs []netip.Addr, window time.Duration) (map[netip.Addr][]string, error) {
	w.Take() // late answers to an earlier Ask
	if err := w.Send(addrs); err != nil {
		return nil, err
	}
	time.Sleep(window)
	out := make(map[netip.Addr][]string, len(addrs))
	for _, ip := range addrs {
		out[ip] = nil
	}
	for _, r := range w.Take() {
		if nodes, ok := out[r.IP]; ok && !slices.Contains(nodes, r.Node) {
			out[r.IP] = append(nodes, r.Node)
		}
	}
	for ip := range out {
		slices.Sort(out[ip])
	}
	return out, nil
}

// Send sends one ARP request for each address; Take returns the answers.
func (w *Wire) Send(addrs []netip.Addr) error {
	for i, ip := range addrs {
		if err := w.c.Request(ip); err != nil {
			return fmt.Errorf("ARP request for %s: %w", ip, err)
		}
		if i%64 == 63 {
			time.Sleep(time.Millisecond) // no burst of thousands on the segment
		}
	}
	return nil
}

// Answer is an ARP reply the client read: who answered for IP, and when.
type Answer struct {
	At   time.Time
	IP   netip.Addr
	Node string
}

// Take returns the answers read since the last Take (or Ask), oldest
// first.
func (w *Wire) Take() []Answer {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.replies
	w.replies = nil
	return out
}

// Close closes the socket.
func (w *Wire) Close() {
	w.c.Close()
	<-w.done
}

// Announce sends one gratuitous ARP (IPv4) or unsolicited neighbor
// advertisement (IPv6) for addr from host h's eth0, with its MAC, as a
// host that claims addr does (it need not have the address: then it
// answers no probe for it).
func (h *Host) Announce(addr netip.Addr) error {
	var err error
	if derr := h.Do(func() {
		// (Its sockets are opened here, in h's namespace.)
		l := &announce.Link{Interface: "eth0"}
		defer l.Close()
		err = l.Announce(addr)
	}); derr != nil {
		return derr
	}
	return err
}
