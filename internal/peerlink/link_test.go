package peerlink

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// memNet is datagrams between named in-memory connections.
type memNet struct {
	mu    sync.Mutex
	conns map[string]*memConn
}

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

type memConn struct {
	net  *memNet
	name string
	in   chan []byte
	once sync.Once
	done chan struct{}
}

func (n *memNet) conn(name string) *memConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := &memConn{net: n, name: name, in: make(chan []byte, 64), done: make(chan struct{})}
	n.conns[name] = c
	return c
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p), memAddr("?"), nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	}
}

func (c *memConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.net.mu.Lock()
	to := c.net.conns[addr.String()]
	c.net.mu.Unlock()
	if to != nil {
		select {
		case to.in <- append([]byte(nil), b...):
		default:
		}
	}
	return len(b), nil
}

func (c *memConn) Close() error                     { c.once.Do(func() { close(c.done) }); return nil }
func (c *memConn) LocalAddr() net.Addr              { return memAddr(c.name) }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// Three Links on their goroutines: the holder keeps its holding through
// the others, and a check completes once the holder is gone and its fence
// has passed.
func TestLinks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := clocktesting.NewFakeClock(t0)
	mn := &memNet{conns: map[string]*memConn{}}
	links := map[string]*Link{}
	var wg sync.WaitGroup
	for _, n := range all {
		l, err := New(Options{Node: n, Instance: "i" + n, Key: testKey(t, 1), Conn: mn.conn(n),
			Addr: func(node string) (net.Addr, bool) { return memAddr(node), true }, Timing: timing, Skew: 0.05, Late: time.Second, LeaseDuration: 5 * time.Second, Every: time.Second, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		links[n] = l
		wg.Add(1)
		go func() { defer wg.Done(); _ = l.Run(ctx) }()
		for _, m := range all {
			if err := l.Know(ctx, m, "i"+m); err != nil {
				t.Fatal(err)
			}
		}
		_ = l.Read(ctx, 0)
		_ = l.Saw(ctx, term, 1)
	}
	a := links["a"]
	if err := a.Hold(ctx, term, all, clk.Now().Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	// step lets a second pass and waits (in real time) until the grants
	// of that second's requests are counted.
	step := func() {
		clk.Step(time.Second)
		for range 200 {
			if u, _, _ := a.Fence(ctx, term); u.After(clk.Now().Add(time.Second)) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for range 10 {
		step()
	}
	until, peers, err := a.Fence(ctx, term)
	if err != nil || !peers || !until.After(clk.Now()) {
		t.Fatalf("10 s past the API fence: fence %s from now, through peers %v, %v", until.Sub(clk.Now()), peers, err)
	}
	// The holder is gone: c's check completes after its fence.
	stopped := clk.Now()
	_ = a.Drop(ctx, term)
	mn.mu.Lock()
	delete(mn.conns, "a")
	mn.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- links["c"].Check(ctx, term, 1, all) }()
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if !clk.Now().After(until) {
				t.Fatalf("claimable %s after the holder stopped, before its fence (%s after)", clk.Now().Sub(stopped), until.Sub(stopped))
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if i > 500 {
			t.Fatal("the check never completed")
		}
		if i%5 == 0 {
			clk.Step(time.Second)
		}
	}
}
