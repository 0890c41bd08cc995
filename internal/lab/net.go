package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Subnet is the lab's network (RFC 5737 documentation range): nothing is
// ever sent to any address outside it.
var Subnet = netip.MustParsePrefix("198.51.100.0/24")

// Host is one network namespace attached to the lab's bridge by eth0.
type Host struct {
	// Name is the host's role: "cp", "client" or the node name.
	Name string
	// NS is the network namespace (ip netns) name.
	NS string
	// IP is eth0's address.
	IP netip.Addr
	// IP6 is eth0's IPv6 address in labs with Options.IPv6.
	IP6 netip.Addr

	ns     netns.NsHandle
	handle *netlink.Handle
}

// Do runs f on an OS thread switched into the host's network namespace:
// sockets f creates belong to that namespace.
func (h *Host) Do(f func()) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(h.ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering %s: %w", h.NS, err)
	}
	f()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: it dies with this goroutine instead of
		// running other goroutines in the wrong namespace.
		return fmt.Errorf("leaving %s: %w", h.NS, err)
	}
	runtime.UnlockOSThread()
	return nil
}

// DialContext dials from inside the host's namespace.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	if e := h.Do(func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); e != nil {
		return nil, e
	}
	return c, err
}

// Listen listens inside the host's namespace.
func (h *Host) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	var err error
	if e := h.Do(func() { l, err = net.Listen(network, addr) }); e != nil {
		return nil, e
	}
	return l, err
}

// IP runs `ip args...` in the host's namespace.
func (h *Host) IPCmd(args ...string) error {
	if len(args) > 0 && (args[0] == "-6" || args[0] == "-4") {
		return run("ip", append([]string{args[0], "-n", h.NS}, args[1:]...)...)
	}
	return run("ip", append([]string{"-n", h.NS}, args...)...)
}

// Netlink is a netlink handle inside the host's namespace.
func (h *Host) Netlink() *netlink.Handle { return h.handle }

// HasAddr reports whether addr is on eth0 and eth0 is up.
func (h *Host) HasAddr(addr netip.Addr) (present, up bool, err error) {
	l, err := h.handle.LinkByName("eth0")
	if err != nil {
		return false, false, err
	}
	addrs, err := h.handle.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false, false, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == addr {
			return true, l.Attrs().Flags&net.FlagUp != 0 && l.Attrs().OperState != netlink.OperDown, nil
		}
	}
	return false, false, nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// network is the lab's namespaces: a switch with a bridge and hosts on it.
type network struct {
	prefix string
	sw     string
	hosts  []*Host
}

// nsPrefix names this process's namespaces so that leftovers of a crashed
// run can be recognised by their dead creator.
const nsPrefix = "vl"

func newNetwork(id string) (*network, error) {
	sweepStale()
	n := &network{prefix: fmt.Sprintf("%s%d%s", nsPrefix, os.Getpid(), id)}
	n.sw = n.prefix + "-sw"
	if err := run("ip", "netns", "add", n.sw); err != nil {
		return nil, err
	}
	for _, c := range [][]string{
		{"-n", n.sw, "link", "set", "lo", "up"},
		{"-n", n.sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"},
		{"-n", n.sw, "link", "set", "br0", "up"},
	} {
		if err := run("ip", c...); err != nil {
			n.close()
			return nil, err
		}
	}
	return n, nil
}

// addHost creates a namespace with eth0 on the bridge and address ip/24.
func (n *network) addHost(name string, ip netip.Addr) (*Host, error) {
	h := &Host{Name: name, NS: n.prefix + "-" + name, IP: ip}
	if err := run("ip", "netns", "add", h.NS); err != nil {
		return nil, err
	}
	n.hosts = append(n.hosts, h)
	port := fmt.Sprintf("p%d", len(n.hosts))
	for _, c := range [][]string{
		{"link", "add", port, "netns", n.sw, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
		{"-n", n.sw, "link", "set", port, "master", "br0", "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "addr", "add", netip.PrefixFrom(ip, Subnet.Bits()).String(), "dev", "eth0"},
		{"-n", h.NS, "link", "set", "eth0", "up"},
	} {
		if err := run("ip", c...); err != nil {
			return nil, err
		}
	}
	var err error
	if h.ns, err = netns.GetFromName(h.NS); err != nil {
		return nil, err
	}
	if h.handle, err = netlink.NewHandleAt(h.ns); err != nil {
		return nil, err
	}
	return h, nil
}

func (n *network) close() {
	for _, h := range n.hosts {
		if h.handle != nil {
			h.handle.Close()
		}
		if h.ns.IsOpen() {
			h.ns.Close()
		}
		run("ip", "netns", "del", h.NS)
	}
	run("ip", "netns", "del", n.sw)
}

// sweepStale deletes lab namespaces whose creating process is gone (a test
// binary killed by a timeout cannot clean up after itself).
func sweepStale() {
	sweepKubelets()
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, nsPrefix) {
			continue
		}
		digits := strings.TrimLeft(name[len(nsPrefix):], "0123456789")
		pid, err := strconv.Atoi(name[len(nsPrefix) : len(name)-len(digits)])
		if err != nil || !strings.HasPrefix(digits, "x") {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue
		}
		killIn(name)
		run("ip", "netns", "del", name)
	}
}

// killIn kills every process running in the named namespace.
func killIn(ns string) {
	out, _ := exec.Command("ip", "netns", "pids", ns).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	}
	time.Sleep(10 * time.Millisecond)
}

// Segment is the lab's network alone: node hosts and the client on one
// bridge, with no control plane (for tests of traffic between the nodes).
type Segment struct {
	Nodes  []*Host
	Client *Host
	net    *network
}

// NewSegment creates nodes node hosts (NodeAddr) and the client
// (ClientAddr); on error nothing is left behind.
func NewSegment(nodes int) (s *Segment, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the lab needs root (network namespaces, veth)")
	}
	n, err := newNetwork(fmt.Sprintf("s%d", labSeq.Add(1)))
	if err != nil {
		return nil, err
	}
	s = &Segment{net: n}
	defer func() {
		if err != nil {
			n.close()
			s = nil
		}
	}()
	if s.Nodes, err = n.addNodes(nodes); err != nil {
		return nil, err
	}
	if s.Client, err = n.addHost("client", ClientAddr); err != nil {
		return nil, err
	}
	return s, nil
}

// addNodes adds node hosts n1..n<count> at NodeAddr.
func (n *network) addNodes(count int) ([]*Host, error) {
	var hosts []*Host
	for i := range count {
		h, err := n.addHost(fmt.Sprintf("n%d", i+1), NodeAddr(i))
		if err != nil {
			return hosts, err
		}
		hosts = append(hosts, h)
	}
	return hosts, nil
}

// Close removes the segment's namespaces.
func (s *Segment) Close() { s.net.close() }

// ListenPacket opens a datagram socket inside the host's namespace.
func (h *Host) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	var err error
	if e := h.Do(func() { c, err = net.ListenPacket(network, addr) }); e != nil {
		return nil, e
	}
	return c, err
}
