package owner

import (
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vipd/vipd/internal/vip"
)

// calls journals what the address and the announcer were asked, in order.
type calls struct{ log []string }

type fakeAddr struct {
	c       *calls
	present bool
	fenced  bool
}

func (a *fakeAddr) Hold(until time.Time) error {
	if a.fenced {
		a.c.log = append(a.c.log, "addr remove (fenced)")
		a.present = false
		return vip.ErrFenced
	}
	a.c.log = append(a.c.log, "addr hold")
	a.present = true
	return nil
}
func (a *fakeAddr) Remove() error {
	a.c.log = append(a.c.log, "addr remove")
	a.present = false
	return nil
}
func (a *fakeAddr) Present() (bool, error)   { return a.present, nil }
func (a *fakeAddr) Prefix() netip.Prefix     { return netip.MustParsePrefix("198.51.100.200/32") }
func (a *fakeAddr) Interface() string        { return "eth0" }
func (c *calls) Start(netip.Addr, time.Time) { c.log = append(c.log, "announce start") }
func (c *calls) Extend(time.Time)            { c.log = append(c.log, "announce extend") }
func (c *calls) Stop()                       { c.log = append(c.log, "announce stop") }
func (c *calls) SetPresent(bool)             {}

func TestHoldThenDropInOrder(t *testing.T) {
	c, clk, _, v := newTest()
	v.Hold(clk.Now().Add(3 * time.Second))
	v.Hold(clk.Now().Add(4 * time.Second))
	if err := v.Check(); err != nil {
		t.Fatalf("healthy holder: %v", err)
	}
	v.Drop("test")
	want := []string{"addr hold", "announce start", "addr hold", "announce extend", "announce stop", "addr remove"}
	if !reflect.DeepEqual(c.log, want) {
		t.Fatalf("got %v\nwant %v", c.log, want)
	}
	if v.Holding() {
		t.Fatal("still holding after Drop")
	}
}

func TestFencedHoldStopsAnnouncing(t *testing.T) {
	c, clk, a, v := newTest()
	v.Hold(clk.Now().Add(3 * time.Second))
	a.fenced = true
	v.Hold(clk.Now().Add(500 * time.Millisecond))
	if v.Holding() || c.log[len(c.log)-2] != "announce stop" {
		t.Fatalf("log %v, holding %v", c.log, v.Holding())
	}
}

func TestCheckReportsExpiredFenceAndMissingAddress(t *testing.T) {
	_, clk, a, v := newTest()
	v.Hold(clk.Now().Add(3 * time.Second))
	a.present = false
	if err := v.Check(); err == nil || !strings.Contains(err.Error(), "missing from eth0") {
		t.Fatalf("missing address: %v", err)
	}
	a.present = true
	clk.Step(4 * time.Second)
	if err := v.Check(); err == nil || !strings.Contains(err.Error(), "fence passed 1s ago") {
		t.Fatalf("expired fence: %v", err)
	}
}

// newTest returns a VIP over a recording address and announcer.
func newTest() (*calls, *clocktesting.FakeClock, *fakeAddr, *VIP) {
	c := &calls{}
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	a := &fakeAddr{c: c}
	return c, clk, a, New(a, c, c, clk, slog.New(slog.DiscardHandler))
}

// TestHoldingNowEndsAtTheFence: past the fence, before the Drop that
// follows it, the VIP is still held but not held now (what the conflict
// watch asks: a process resumed after SIGSTOP reads the new owner's
// announcements before its timers drop the address).
func TestHoldingNowEndsAtTheFence(t *testing.T) {
	_, clk, _, v := newTest()
	v.Hold(clk.Now().Add(2 * time.Second))
	if !v.HoldingNow() {
		t.Fatal("not held now within the fence")
	}
	clk.Step(2 * time.Second)
	if !v.Holding() || v.HoldingNow() {
		t.Fatalf("at the fence: Holding %v, HoldingNow %v; want true, false", v.Holding(), v.HoldingNow())
	}
	v.Hold(clk.Now().Add(2 * time.Second))
	if !v.HoldingNow() {
		t.Fatal("not held now after a renewal")
	}
}
