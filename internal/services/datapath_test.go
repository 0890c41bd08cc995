package services

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/vipd/vipd/internal/vip/viptest"
)

// slowKernel is a kernel whose next Replace or Delete, once armed, waits
// until released: a netlink call that takes its time.
type slowKernel struct {
	*viptest.Kernel
	mu      sync.Mutex
	op      string        // the call to hold up ("replace", "delete"; "": none)
	release chan struct{} // closed to let it finish
	entered chan struct{} // told when it is held up
}

func (k *slowKernel) arm(op string) (entered, release chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.op, k.entered, k.release = op, make(chan struct{}, 1), make(chan struct{})
	return k.entered, k.release
}

func (k *slowKernel) wait(op string) {
	k.mu.Lock()
	if k.op != op {
		k.mu.Unlock()
		return
	}
	k.op = ""
	entered, release := k.entered, k.release
	k.mu.Unlock()
	entered <- struct{}{}
	<-release
}

func (k *slowKernel) Replace(iface string, p netip.Prefix, valid time.Duration) error {
	k.wait("replace")
	return k.Kernel.Replace(iface, p, valid)
}

func (k *slowKernel) Delete(iface string, p netip.Prefix) error {
	k.wait("delete")
	return k.Kernel.Delete(iface, p)
}

// A slow netlink call holds up no decision: while the kernel takes its
// time over a VIP's renewal, the controller's state can still be read and
// changed (the datapath applies it off the controller's lock).
func TestSlowKernelHoldsUpNoDecision(t *testing.T) {
	api, client := newCluster(lb("default", "web", 0, annotate(AnnotationIPs, "198.51.100.120")))
	k := &slowKernel{Kernel: viptest.New(nil)}
	c, stop := run(t, Options{Client: api.client(0), NodeName: "n1", Datapath: Datapath{Kernel: k}})
	defer stop()
	waitFor(t, "VIP announced", announced(client, "default", "web", "198.51.100.120", "n1"))
	entered, release := k.arm("replace")
	defer close(release)
	select {
	case <-entered: // the next renewal's refresh of the address
	case <-time.After(10 * time.Second):
		t.Fatal("no renewal refreshed the VIP")
	}
	answered := make(chan int, 1)
	go func() { answered <- c.Holding() }()
	select {
	case n := <-answered:
		if n != 1 {
			t.Fatalf("holding %d VIPs, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the controller's state cannot be read while the kernel refreshes a VIP: netlink runs under its lock")
	}
}

// A Lease write that no longer lists an address comes only after the
// address is off the interface (S3), however long the removal takes: the
// write waits for the datapath.
func TestLeaseLetsGoOnlyAfterTheRemoval(t *testing.T) {
	const ip = "198.51.100.121"
	api, client := newCluster(lb("default", "web", 0, annotate(AnnotationIPs, ip)))
	k := &slowKernel{Kernel: viptest.New(nil)}
	cl := api.client(0)
	var mu sync.Mutex
	var early []string
	cl.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l, ok := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if ok && !strings.Contains(l.Annotations[HoldsAnnotation], ip) && k.Has(ip+"/32") {
			mu.Lock()
			early = append(early, fmt.Sprintf("%s/%s holds %q", l.Namespace, l.Name, l.Annotations[HoldsAnnotation]))
			mu.Unlock()
		}
		return false, nil, nil
	})
	_, stop := run(t, Options{Client: cl, NodeName: "n1", Datapath: Datapath{Kernel: k}})
	defer stop()
	waitFor(t, "VIP announced", announced(client, "default", "web", ip, "n1"))
	entered, release := k.arm("delete")
	if err := client.CoreV1().Services("default").Delete(context.Background(), "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the VIP of the deleted Service was not removed")
	}
	time.Sleep(time.Second) // two retry periods: renewals would have written meanwhile
	close(release)
	waitFor(t, "the Lease stops listing the address", func() error {
		l, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-svcs-lock", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if h := l.Annotations[HoldsAnnotation]; h != "" {
			return fmt.Errorf("holds %q", h)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("the Lease said %s let go while it was still on the interface: %v", ip, early)
	}
}
