package services

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/vip/viptest"
)

// wire is a fake segment for Datapath.Probe: the addresses some other host
// answers for, and every address vipd asked about.
type wire struct {
	mu     sync.Mutex
	taken  map[netip.Addr]net.HardwareAddr
	probed map[netip.Addr]int
}

func newWire() *wire {
	return &wire{taken: map[netip.Addr]net.HardwareAddr{}, probed: map[netip.Addr]int{}}
}

func (w *wire) probe(_ context.Context, addrs []netip.Addr) (map[netip.Addr]net.HardwareAddr, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[netip.Addr]net.HardwareAddr{}
	for _, ip := range addrs {
		w.probed[ip]++
		if mac, ok := w.taken[ip]; ok {
			out[ip] = mac
		}
	}
	return out, nil
}

func (w *wire) set(ip string, mac net.HardwareAddr) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if mac == nil {
		delete(w.taken, netip.MustParseAddr(ip))
	} else {
		w.taken[netip.MustParseAddr(ip)] = mac
	}
}

func (w *wire) times(ip string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.probed[netip.MustParseAddr(ip)]
}

func eventMessage(client *fake.Clientset, name, reason string) (string, error) {
	evs, err := client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			return e.Message, nil
		}
	}
	return "", fmt.Errorf("no %s Event on %s", reason, name)
}

// TestProbeBeforeTheFirstClaim: another host answers for the address a new
// Service asks for. vipd does not put it on the interface nor write status,
// and says who answers; once nobody answers, it claims the address and says
// the conflict is over. In both modes: in spread mode the node's own
// heartbeat, which lists the address before the claim check reads, is not
// another vipd node's listing.
func TestProbeBeforeTheFirstClaim(t *testing.T) {
	for _, spread := range []bool{false, true} {
		t.Run(map[bool]string{false: "single_holder", true: "spread"}[spread], func(t *testing.T) {
			probeBeforeTheFirstClaim(t, Options{NodeName: "n1", Mode: Mode{Spread: spread, Settle: 500 * time.Millisecond}})
		})
	}
}

func probeBeforeTheFirstClaim(t *testing.T, o Options) {
	api, client := newCluster(lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.100")))
	w := newWire()
	rogue := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	w.set("198.51.100.100", rogue)
	k := viptest.New(nil)
	o.Client, o.Datapath.Kernel, o.Datapath.Probe = api.client(0), k, w.probe
	run(t, o)
	waitFor(t, "AddressConflict Event", func() error {
		msg, err := eventMessage(client, "web", "AddressConflict")
		if err == nil && (!strings.Contains(msg, "198.51.100.100") || !strings.Contains(msg, rogue.String()) || !strings.Contains(msg, "default/web")) {
			err = fmt.Errorf("message %q does not name the Service, the address and the MAC", msg)
		}
		return err
	})
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if k.Has("198.51.100.100/32") {
			t.Fatal("the address was added while another host answers for it")
		}
	}
	if announced(client, "default", "web", "198.51.100.100", "n1")() == nil {
		t.Fatal("status written for an address another host answers for")
	}
	if n := w.times("198.51.100.100"); n < 2 {
		t.Errorf("probed %d times in 1.5 s, want it probed again every retry period", n)
	}
	w.set("198.51.100.100", nil)
	waitFor(t, "claimed once nobody answers", announced(client, "default", "web", "198.51.100.100", "n1"))
	if !k.Has("198.51.100.100/32") {
		t.Error("status written but the address is not on the interface")
	}
	waitFor(t, "AddressConflictResolved Event", func() error {
		msg, err := eventMessage(client, "web", "AddressConflictResolved")
		if err == nil && !strings.Contains(msg, rogue.String()) {
			err = fmt.Errorf("message %q does not name the MAC", msg)
		}
		return err
	})
}

// TestNoProbeForAnAddressAVipdNodeHad: a takeover is never delayed by a
// probe. An address in the Service's status (vipd wrote it when a node held
// it) or listed by another node's Lease is claimed without asking the wire.
func TestNoProbeForAnAddressAVipdNodeHad(t *testing.T) {
	before := lb("default", "before", 0, annotate(AnnotationIPs, "198.51.100.120"))
	before.Annotations[AnnotationHost] = "n9"
	before.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.120"}}
	released := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: LocalLeasePrefix + "old", Annotations: map[string]string{HoldsAnnotation: "198.51.100.121"}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(""), LeaseDurationSeconds: ptr.To(int32(4))},
	}
	api, client := newCluster(before, released,
		lb("default", "listed", 0, annotate(AnnotationIPs, "198.51.100.121")),
		lb("default", "new", 0, annotate(AnnotationIPs, "198.51.100.122")))
	w := newWire()
	k := viptest.New(nil)
	run(t, Options{Client: api.client(0), NodeName: "n1", Datapath: Datapath{Kernel: k, Probe: w.probe}})
	for name, ip := range map[string]string{"before": "198.51.100.120", "listed": "198.51.100.121", "new": "198.51.100.122"} {
		waitFor(t, name+" claimed", announced(client, "default", name, ip, "n1"))
	}
	if n := w.times("198.51.100.120") + w.times("198.51.100.121"); n != 0 {
		t.Errorf("addresses a vipd node had were probed %d times, want never", n)
	}
	if n := w.times("198.51.100.122"); n != 1 {
		t.Errorf("the new address was probed %d times, want once", n)
	}
}
