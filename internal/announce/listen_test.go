package announce

import (
	"net"
	"net/netip"
	"testing"

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
