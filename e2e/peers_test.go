package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
	"github.com/vipd/vipd/internal/peerfence"
	"github.com/vipd/vipd/internal/peerlink"
	"github.com/vipd/vipd/internal/peerwire"
)

const peerPort = 7780

// recorder keeps what its connection sends: what a host on the segment
// could have captured.
type recorder struct {
	net.PacketConn
	mu   sync.Mutex
	sent [][]byte
}

func (r *recorder) WriteTo(b []byte, addr net.Addr) (int, error) {
	r.mu.Lock()
	r.sent = append(r.sent, bytes.Clone(b))
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, addr)
}

// syncBuffer is a log both the link and the test use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Three nodes hold through peers over UDP in their own namespaces: the
// holder keeps its holding long after its API fence; a host on the segment
// that sends a forged check, a replayed request and garbage has each
// refused, logged and counted, and blocks nothing; once the holder is gone
// a claimant's check completes only after the holder's fence.
func TestPeerMessagesOnTheWire(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("VIPD_E2E") == "1" {
			t.Fatal("VIPD_E2E=1 but not running as root")
		}
		t.Skip("needs root")
	}
	seg, err := lab.NewSegment(3)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.Close()
	key, err := peerwire.NewKey(bytes.Repeat([]byte{7}, peerwire.MinKey), "test")
	if err != nil {
		t.Fatal(err)
	}
	timing := peerfence.Timing{For: 3200 * time.Millisecond, Margin: 1500 * time.Millisecond}
	names := []string{"n1", "n2", "n3"}
	addr := func(node string) (net.Addr, bool) {
		i := slices.Index(names, node)
		if i < 0 {
			return nil, false
		}
		return &net.UDPAddr{IP: lab.NodeAddr(i).AsSlice(), Port: peerPort}, true
	}
	term := peerfence.Term{Holder: "n1", Instance: "i-n1", Epoch: 3}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		links   = map[string]*peerlink.Link{}
		stop    = map[string]context.CancelFunc{}
		logs    = map[string]*syncBuffer{}
		rec     = map[string]*recorder{}
		mu      sync.Mutex
		refused = map[string][]string{}
		wg      sync.WaitGroup
	)
	defer wg.Wait()
	defer cancel()
	for i, n := range names {
		c, err := seg.Nodes[i].ListenPacket("udp4", (&net.UDPAddr{IP: lab.NodeAddr(i).AsSlice(), Port: peerPort}).String())
		if err != nil {
			t.Fatal(err)
		}
		rec[n] = &recorder{PacketConn: c}
		logs[n] = &syncBuffer{}
		l, err := peerlink.New(peerlink.Options{Node: n, Instance: "i-" + n, Key: key, Conn: rec[n], Addr: addr,
			Timing: timing, Skew: 0.05, Late: time.Second, LeaseDuration: leaseDuration, Every: 500 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(logs[n], nil)),
			Refused: func(r string) { mu.Lock(); refused[n] = append(refused[n], r); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		links[n] = l
		lctx, lcancel := context.WithCancel(ctx)
		stop[n] = lcancel
		wg.Add(1)
		go func() { defer wg.Done(); _ = l.Run(lctx) }()
		for _, m := range names {
			if err := l.Know(ctx, m, "i-"+m); err != nil {
				t.Fatal(err)
			}
		}
		_ = l.Read(ctx, 10)
		_ = l.Saw(ctx, term, 11)
	}
	holder := links["n1"]
	if err := holder.Hold(ctx, term, names, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * timing.For)
	until, peers, err := holder.Fence(ctx, term)
	if err != nil || !peers || !until.After(time.Now()) {
		t.Fatalf("%s past the API fence: fence %s from now, through peers %v, %v", 2*timing.For-time.Second, time.Until(until), peers, err)
	}

	// The rogue on the segment.
	rogue, err := seg.Client.ListenPacket("udp4", lab.ClientAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	rec["n1"].mu.Lock()
	captured := slices.Clone(rec["n1"].sent)
	rec["n1"].mu.Unlock()
	other, _ := peerwire.NewKey(bytes.Repeat([]byte{8}, peerwire.MinKey), "rogue")
	forged := other.Seal(peerwire.Message{Kind: peerwire.Check, From: "n3", FromInstance: "i-n3", To: "n2", ToInstance: "i-n2", Seq: 1 << 40, Term: term, Rev: 11})
	n2, _ := addr("n2")
	for _, b := range append([][]byte{forged, []byte("hello")}, captured...) {
		if _, err := rogue.WriteTo(b, n2); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for range 100 {
		mu.Lock()
		got = slices.Clone(refused["n2"])
		mu.Unlock()
		if slices.Contains(got, "mac") && slices.Contains(got, "format") && slices.Contains(got, "replay") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !slices.Contains(got, "mac") || !slices.Contains(got, "format") || !slices.Contains(got, "replay") {
		t.Fatalf("refused at n2: %v; want mac (forged), format (garbage) and replay (captured)", got)
	}
	t.Logf("refused at n2: %d (%d captured datagrams replayed)", len(got), len(captured))
	for _, r := range []string{"reason=mac", "reason=format", "reason=replay"} {
		if !strings.Contains(logs["n2"].String(), "refused a peer message") || !strings.Contains(logs["n2"].String(), r) {
			t.Errorf("n2's log has no line for %s:\n%s", r, logs["n2"].String())
		}
	}
	// The forged check blocked nothing: the holding still stands by n2's
	// and n3's promises.
	time.Sleep(timing.For)
	if until, peers, _ = holder.Fence(ctx, term); !peers || !until.After(time.Now()) {
		t.Fatalf("after the rogue's datagrams: fence %s from now, through peers %v", time.Until(until), peers)
	}

	// The holder goes; the claimant's check completes after its fence
	// (read just before: a request the loop sends in between can only
	// move the fence later).
	until, _, _ = holder.Fence(ctx, term)
	stop["n1"]()
	gone := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 10*timing.For)
	defer ccancel()
	if err := links["n3"].Check(cctx, term, 11, names); err != nil {
		t.Fatalf("the check: %v", err)
	}
	if !time.Now().After(until) {
		t.Fatalf("the check completed %s after the holder stopped, before its fence (%s after)", time.Since(gone), until.Sub(gone))
	}
	t.Logf("the check completed %s after the holder stopped; its fence ran %s after", time.Since(gone).Round(time.Millisecond), until.Sub(gone).Round(time.Millisecond))
}
