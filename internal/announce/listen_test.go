package announce

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"golang.org/x/net/bpf"
)

// The kernel filter of Listen keeps other hosts' gratuitous ARPs, and
// drops answers (left to the probes), a client's request and this host's
// own packets.
func TestClaimProgram(t *testing.T) {
	own := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	other := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	near := net.HardwareAddr{0x02, 0, 0, 0, 0x07, 0x01} // own's first 4 bytes
	vip := netip.MustParseAddr("198.51.100.10")
	client := netip.MustParseAddr("198.51.100.200")
	prog, err := claimProgram(own)
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	frame := func(op arp.Operation, mac net.HardwareAddr, spa, tpa netip.Addr) []byte {
		p, err := arp.NewPacket(op, mac, spa, ethernet.Broadcast, tpa)
		if err != nil {
			t.Fatal(err)
		}
		b, err := p.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		f := &ethernet.Frame{Destination: ethernet.Broadcast, Source: mac, EtherType: ethernet.EtherTypeARP, Payload: b}
		fb, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return fb
	}
	for _, c := range []struct {
		name string
		b    []byte
		keep bool
	}{
		{"gratuitous request from another host", frame(arp.OperationRequest, other, vip, vip), true},
		{"gratuitous reply from another host", frame(arp.OperationReply, other, vip, vip), true},
		{"gratuitous ARP from a MAC that shares 4 bytes with this host's", frame(arp.OperationReply, near, vip, vip), true},
		{"another host's answer to a probe", frame(arp.OperationReply, other, vip, client), false},
		{"a client's request", frame(arp.OperationRequest, other, client, vip), false},
		{"this host's gratuitous ARP", frame(arp.OperationRequest, own, vip, vip), false},
		{"this host's reply", frame(arp.OperationReply, own, vip, client), false},
	} {
		n, err := vm.Run(c.b)
		if err != nil {
			t.Fatal(err)
		}
		if (n > 0) != c.keep {
			t.Errorf("%s: kept %d bytes, want kept=%t", c.name, n, c.keep)
		}
	}
	if _, err := claimProgram(net.HardwareAddr{1, 2}); err == nil {
		t.Error("a 2-byte MAC: no error")
	}
}

// TestListenersShareOneSocket: two subscribers on one interface share one
// listener and both hear each claim; it stops after the last one left, and
// the next subscriber starts a new one.
func TestListenersShareOneSocket(t *testing.T) {
	type run struct {
		emit    chan netip.Addr
		stopped chan struct{}
	}
	runs := make(chan run, 4)
	ls := &Listeners{Listen: func(ctx context.Context, _ string, seen func(netip.Addr, net.HardwareAddr)) error {
		r := run{make(chan netip.Addr), make(chan struct{})}
		runs <- r
		defer close(r.stopped)
		for {
			select {
			case a := <-r.emit:
				seen(a, net.HardwareAddr{2, 0, 0, 0, 0, 9})
			case <-ctx.Done():
				return nil
			}
		}
	}}
	heard := [2]chan netip.Addr{make(chan netip.Addr, 1), make(chan netip.Addr, 1)}
	ctxs := [2]context.Context{}
	cancels := [2]context.CancelFunc{}
	ended := [2]chan error{make(chan error, 1), make(chan error, 1)}
	for i := range 2 {
		ctxs[i], cancels[i] = context.WithCancel(context.Background())
		go func() {
			ended[i] <- ls.For("eth0")(ctxs[i], func(a netip.Addr, _ net.HardwareAddr) {
				select {
				case heard[i] <- a:
				default: // (a full channel must not stop the listener)
				}
			})
		}()
	}
	r := <-runs
	a := netip.MustParseAddr("198.51.100.10")
	// Both subscribed once both hear (the second may subscribe late).
	for i := range 2 {
		for got := false; !got; {
			select {
			case r.emit <- a:
			case <-heard[i]:
				got = true
			case <-time.After(5 * time.Second):
				t.Fatalf("subscriber %d heard nothing", i)
			}
		}
	}
	select {
	case <-runs:
		t.Fatal("a second listener for the same interface")
	default:
	}
	cancels[0]()
	<-ended[0]
	select {
	case <-r.stopped:
		t.Fatal("the listener stopped while a subscriber remained")
	case <-time.After(50 * time.Millisecond):
	}
	cancels[1]()
	<-ended[1]
	<-r.stopped
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ls.For("eth0")(ctx, func(netip.Addr, net.HardwareAddr) {}) }()
	select {
	case <-runs:
	case <-time.After(5 * time.Second):
		t.Fatal("no new listener for a subscriber after the last one left")
	}
}
