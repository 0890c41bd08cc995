package election

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// fakeAPI is a fake clientset with optimistic concurrency on Leases (the
// stock fake ignores resourceVersion), a journal of writes, and a switch to
// make writes hang as they do behind a partition.
type fakeAPI struct {
	*fake.Clientset
	mu      sync.Mutex
	rv      int
	journal *journal
	hang    chan struct{} // when not nil, writes block until it is closed
}

// journal records, in order, what guards and the API server saw.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, fmt.Sprintf(format, args...))
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.events...)
}

var leaseGVR = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}

func newFakeAPI(j *journal) *fakeAPI {
	f := &fakeAPI{Clientset: fake.NewClientset(), journal: j}
	write := func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.mu.Lock()
		hang := f.hang
		f.mu.Unlock()
		if hang != nil {
			<-hang
			return true, nil, fmt.Errorf("connection reset")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		obj := a.(interface{ GetObject() runtime.Object }).GetObject()
		m, _ := meta.Accessor(obj)
		cur, err := f.Tracker().Get(leaseGVR, m.GetNamespace(), m.GetName())
		switch a.GetVerb() {
		case "create":
			if err == nil {
				return true, nil, apierrors.NewAlreadyExists(leaseGVR.GroupResource(), m.GetName())
			}
		case "update":
			if err != nil {
				return true, nil, err
			}
			cm, _ := meta.Accessor(cur)
			if cm.GetResourceVersion() != m.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(leaseGVR.GroupResource(), m.GetName(), fmt.Errorf("rv %s != %s", m.GetResourceVersion(), cm.GetResourceVersion()))
			}
		}
		f.rv++
		m.SetResourceVersion(strconv.Itoa(f.rv))
		l := obj.(*coordinationv1.Lease)
		j.add("api %s holder=%q", a.GetVerb(), ptr.Deref(l.Spec.HolderIdentity, ""))
		return false, nil, nil
	}
	f.PrependReactor("create", "leases", write)
	f.PrependReactor("update", "leases", write)
	return f
}

func (f *fakeAPI) setHang(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on && f.hang == nil {
		f.hang = make(chan struct{})
	}
	if !on && f.hang != nil {
		close(f.hang)
		f.hang = nil
	}
}

// put writes a Lease as another node would.
func (f *fakeAPI) put(t *testing.T, holder string, create bool) {
	t.Helper()
	ctx := context.Background()
	leases := f.CoordinationV1().Leases("kube-system")
	now := metav1.NewMicroTime(time.Now())
	if create {
		_, err := leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system"},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(5)), RenewTime: &now},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	l, err := leases.Get(ctx, "plndr-cp-lock", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.HolderIdentity = ptr.To(holder)
	l.Spec.RenewTime = &now
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeAPI) holder(t *testing.T) string {
	t.Helper()
	l, err := f.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-cp-lock", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

// guard records Hold and Drop.
type guard struct {
	name string
	j    *journal
	mu   sync.Mutex
	held bool
	last time.Time
}

func (g *guard) Hold(until time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.held {
		g.j.add("%s hold", g.name)
	}
	g.held, g.last = true, until
}

func (g *guard) Drop(reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held {
		g.j.add("%s drop", g.name)
	}
	g.held = false
}

func (g *guard) state() (bool, time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.last
}

type harness struct {
	t     *testing.T
	api   *fakeAPI
	clock *clocktesting.FakeClock
	j     *journal
}

func newHarness(t *testing.T) *harness {
	j := &journal{}
	return &harness{t: t, api: newFakeAPI(j), clock: clocktesting.NewFakeClock(time.Unix(1000, 0)), j: j}
}

// start runs an elector for identity; it returns its guard and a stop
// function that cancels it and waits for Run to return.
func (h *harness) start(identity string) (*guard, *Elector, func() error) {
	g := &guard{name: identity, j: h.j}
	e, err := New(Options{
		Client: h.api, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: identity,
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Guard:  g, Clock: h.clock,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(5 * time.Second):
				h.t.Errorf("%s: Run did not return after cancel", identity)
			}
		})
		return runErr
	}
	h.t.Cleanup(func() { stop() })
	return g, e, stop
}

// eventually polls cond in real time (the loop runs in goroutines).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle lets the elector's goroutines react to a clock step; used only
// where the test asserts that nothing happens.
func settle() { time.Sleep(50 * time.Millisecond) }

func TestNewRejectsUnsafeTimings(t *testing.T) {
	base := Options{Client: fake.NewClientset(), Guard: &guard{}, Namespace: "ns", Name: "n", Identity: "me",
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}}
	if _, err := New(base); err != nil {
		t.Fatalf("seed timings rejected: %v", err)
	}
	for name, mod := range map[string]func(*Options){
		"lease not 2s above renew": func(o *Options) { o.LeaseDuration = 4*time.Second + 999*time.Millisecond },
		"renew not above 2 retry":  func(o *Options) { o.RenewDeadline = 2 * time.Second },
		"no retry":                 func(o *Options) { o.RetryPeriod = 0 },
		"no identity":              func(o *Options) { o.Identity = "" },
		"no guard":                 func(o *Options) { o.Guard = nil },
	} {
		o := base
		mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestAcquiresAbsentLeaseAndRenewsWithFence(t *testing.T) {
	h := newHarness(t)
	g, _, _ := h.start("n1")
	eventually(t, "n1 holds", func() bool { held, _ := g.state(); return held })
	if got := h.api.holder(t); got != "n1" {
		t.Fatalf("holder %q", got)
	}
	_, until := g.state()
	if want := h.clock.Now().Add(3 * time.Second); !until.Equal(want) {
		t.Errorf("fence %s, want start of renewal + renew deadline = %s", until, want)
	}
	// Each retry period renews and moves the fence.
	for i := 1; i <= 3; i++ {
		h.clock.Step(time.Second)
		want := h.clock.Now().Add(3 * time.Second)
		eventually(t, "fence moved", func() bool { _, u := g.state(); return u.Equal(want) })
	}
}

func TestFollowerWaitsForObservedExpiryThenTakesOver(t *testing.T) {
	h := newHarness(t)
	h.api.put(t, "other", true)
	g, e, _ := h.start("n1")
	eventually(t, "lease observed", func() bool { return e.Ready() == nil })
	h.clock.Step(4900 * time.Millisecond)
	settle()
	if held, _ := g.state(); held {
		t.Fatal("took over before the observed Lease expired")
	}
	h.clock.Step(100 * time.Millisecond)
	eventually(t, "takeover at expiry", func() bool { held, _ := g.state(); return held })
	if got := h.api.holder(t); got != "n1" {
		t.Errorf("holder %q", got)
	}
}

func TestRenewalSeenRestartsTheWait(t *testing.T) {
	h := newHarness(t)
	h.api.put(t, "other", true)
	g, e, _ := h.start("n1")
	eventually(t, "lease observed", func() bool { return e.Ready() == nil })
	h.clock.Step(4 * time.Second)
	settle()
	h.api.put(t, "other", false) // the holder renews
	settle()
	h.clock.Step(4 * time.Second) // 8 s after the first observation, 4 s after the renewal
	settle()
	if held, _ := g.state(); held {
		t.Fatal("took over a Lease that was renewed 4 s ago")
	}
	h.clock.Step(time.Second)
	eventually(t, "takeover 5 s after the renewal", func() bool { held, _ := g.state(); return held })
}

func TestReleasedLeaseIsTakenAtOnce(t *testing.T) {
	h := newHarness(t)
	h.api.put(t, "other", true)
	g, e, _ := h.start("n1")
	eventually(t, "lease observed", func() bool { return e.Ready() == nil })
	h.api.put(t, "", false) // released by its holder
	// No clock step: the watch alone must trigger the takeover.
	eventually(t, "takeover on release", func() bool { held, _ := g.state(); return held })
}

func TestFenceDropsWhileRenewalHangs(t *testing.T) {
	h := newHarness(t)
	g, _, _ := h.start("n1")
	eventually(t, "n1 holds", func() bool { held, _ := g.state(); return held })
	h.api.setHang(true)
	defer h.api.setHang(false)
	h.clock.Step(time.Second) // renewal starts and hangs
	settle()
	h.clock.Step(1900 * time.Millisecond)
	settle()
	if held, _ := g.state(); !held {
		t.Fatal("dropped before the renew deadline")
	}
	h.clock.Step(100 * time.Millisecond) // 3 s after the last successful renewal started
	eventually(t, "drop at the renew deadline", func() bool { held, _ := g.state(); return !held })
}

func TestShutdownDropsBeforeRelease(t *testing.T) {
	h := newHarness(t)
	g, _, stop := h.start("n1")
	eventually(t, "n1 holds", func() bool { held, _ := g.state(); return held })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := h.api.holder(t); got != "" {
		t.Fatalf("Lease not released: holder %q", got)
	}
	ev := h.j.list()
	drop, release := -1, -1
	for i, e := range ev {
		switch e {
		case "n1 drop":
			drop = i
		case `api update holder=""`:
			release = i
		}
	}
	if drop < 0 || release < 0 || drop > release {
		t.Fatalf("want drop before release, got %v", ev)
	}
}

func TestTwoElectorsOneHolder(t *testing.T) {
	h := newHarness(t)
	g1, _, stop1 := h.start("n1")
	g2, _, stop2 := h.start("n2")
	eventually(t, "one holds", func() bool {
		a, _ := g1.state()
		b, _ := g2.state()
		return a != b
	})
	for range 5 {
		h.clock.Step(time.Second)
		settle()
		a, _ := g1.state()
		b, _ := g2.state()
		if a == b {
			t.Fatalf("n1 holds=%v, n2 holds=%v", a, b)
		}
	}
	leader, follower, stopLeader := g1, g2, stop1
	if held, _ := g2.state(); held {
		leader, follower, stopLeader = g2, g1, stop2
	}
	// Graceful handover: the follower takes over on the release, at once,
	// without any clock step.
	stopLeader()
	eventually(t, "follower takes over after the leader releases", func() bool { held, _ := follower.state(); return held })
	if held, _ := leader.state(); held {
		t.Fatal("the old leader still holds after shutdown")
	}
}

// gate is a Gate the test opens and closes.
type gate struct {
	mu   sync.Mutex
	open bool
	ch   chan struct{}
}

func newGate(open bool) *gate { return &gate{open: open, ch: make(chan struct{}, 1)} }

func (g *gate) Open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open
}

func (g *gate) Changed() <-chan struct{} { return g.ch }

func (g *gate) set(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
	select {
	case g.ch <- struct{}{}:
	default:
	}
}

func (h *harness) startGated(identity string, gt Gate) *guard {
	g := &guard{name: identity, j: h.j}
	e, err := New(Options{
		Client: h.api, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: identity,
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second},
		Guard:  g, Gate: gt, Clock: h.clock,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
	return g
}

func TestClosedGateStepsDownAndReleases(t *testing.T) {
	h := newHarness(t)
	gt := newGate(true)
	g := h.startGated("n1", gt)
	eventually(t, "n1 holds", func() bool { held, _ := g.state(); return held })
	gt.set(false)
	eventually(t, "released", func() bool { return h.api.holder(t) == "" })
	if held, _ := g.state(); held {
		t.Fatal("still holding with the gate closed")
	}
	ev := h.j.list()
	if ev[len(ev)-2] != "n1 drop" || ev[len(ev)-1] != `api update holder=""` {
		t.Fatalf("want drop then release, got %v", ev)
	}
	// Closed: the released Lease is not taken back, whatever the clock says.
	h.clock.Step(10 * time.Second)
	settle()
	if held, _ := g.state(); held || h.api.holder(t) != "" {
		t.Fatal("acquired with the gate closed")
	}
	gt.set(true)
	eventually(t, "acquires when the gate reopens", func() bool { held, _ := g.state(); return held })
}

func TestClosedGateNeverCompetes(t *testing.T) {
	h := newHarness(t)
	g := h.startGated("n1", newGate(false))
	settle()
	h.clock.Step(10 * time.Second)
	settle()
	if held, _ := g.state(); held {
		t.Fatal("a node with a closed gate took an absent Lease")
	}
	// Not even a write: a closed gate keeps the node out of the election.
	if ev := h.j.list(); len(ev) != 0 {
		t.Fatalf("API writes with the gate closed: %v", ev)
	}
}

func TestClosedGateReleasesAfterTheFenceDropped(t *testing.T) {
	h := newHarness(t)
	gt := newGate(true)
	g := h.startGated("n1", gt)
	eventually(t, "n1 holds", func() bool { held, _ := g.state(); return held })
	// Renewals hang (the API server on the other end died with etcd): the
	// fence drops the VIP, but the Lease still names n1.
	h.api.setHang(true)
	h.clock.Step(time.Second)
	settle()
	h.clock.Step(2 * time.Second)
	eventually(t, "fence drop", func() bool { held, _ := g.state(); return !held })
	h.api.setHang(false)
	if got := h.api.holder(t); got != "n1" {
		t.Fatalf("holder %q", got)
	}
	// The gate closes: release, so followers need not wait for expiry.
	gt.set(false)
	eventually(t, "released", func() bool { return h.api.holder(t) == "" })
}

// TestObserveKeepsTheNewerVersion: a watch event older than the answer to
// our own write (lower resourceVersion) does not replace it, so the holder
// does not step down on a stale "held by other".
func TestObserveKeepsTheNewerVersion(t *testing.T) {
	e, err := New(Options{Client: fake.NewClientset(), Guard: &guard{}, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: "n1",
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	lease := func(rv, holder string) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", ResourceVersion: rv},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder)},
		}
	}
	s := &state{}
	e.observe(s, lease("12", "n1"))
	e.observe(s, lease("11", "other"))
	if holder(s.observed) != "n1" {
		t.Fatalf("an older version replaced the newer one: holder %q", holder(s.observed))
	}
	e.observe(s, lease("13", "other"))
	if holder(s.observed) != "other" {
		t.Fatalf("a newer version was ignored: holder %q", holder(s.observed))
	}
}

// TestOneIdentityTwoProcesses: two processes with the same identity (two
// hosts with one host name, and no vip_nodename) never both hold: the
// Lease carries the writer's instance token, and a Lease that names this
// node with another process's token is another holder's. Stopping the
// holder hands over to the other as to any node.
func TestOneIdentityTwoProcesses(t *testing.T) {
	h := newHarness(t)
	g1, _, stop1 := h.start("vm")
	eventually(t, "the first holds", func() bool { held, _ := g1.state(); return held })
	g2, _, stop2 := h.start("vm")
	for range 12 { // past two lease durations of renewals
		h.clock.Step(500 * time.Millisecond)
		settle()
		a, _ := g1.state()
		b, _ := g2.state()
		if a && b {
			t.Fatal("two processes with one identity both hold the Lease")
		}
		if !a {
			t.Fatal("the first process lost the Lease it renews")
		}
	}
	stop1()
	eventually(t, "the second takes over after the first releases", func() bool { held, _ := g2.state(); return held })
	if held, _ := g1.state(); held {
		t.Fatal("the first still holds after shutdown")
	}
	_ = stop2
}

// TestUnreachableAPISaysSo: when the Lease cannot be read (the API server
// unreachable), the elector says so at warning level, with the error,
// after a few tries, and once more when it can read it again.
func TestUnreachableAPISaysSo(t *testing.T) {
	client := fake.NewClientset()
	var down atomic.Bool
	down.Store(true)
	client.PrependReactor("list", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, errors.New("dial tcp 198.51.100.2:6443: connect: connection refused")
		}
		return false, nil, nil
	})
	var buf lockedBuffer
	e, err := New(Options{Client: client, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: "n1",
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 20 * time.Millisecond},
		Guard:  &guard{name: "n1", j: &journal{}}, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	eventually(t, "the warning", func() bool { return strings.Contains(buf.String(), "cannot read the Lease from the API server") })
	if !strings.Contains(buf.String(), "connection refused") {
		t.Fatalf("the warning lacks the error:\n%s", buf.String())
	}
	down.Store(false)
	eventually(t, "the recovery", func() bool { return strings.Contains(buf.String(), "reading the Lease from the API server again") })
}

// lockedBuffer is a bytes.Buffer safe for a logger and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestColdStartOnlyWithoutAKnownHolder: ColdStart runs before the Lease is
// first created (and an error keeps it from being created), but never
// before taking over a Lease whose holder this node saw let go.
func TestColdStartOnlyWithoutAKnownHolder(t *testing.T) {
	var calls atomic.Int32
	var refuse atomic.Bool
	refuse.Store(true)
	client := newFakeAPI(&journal{}) // (resourceVersions enforced)
	opts := func(id string, g *guard) Options {
		return Options{Client: client, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: id,
			Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 50 * time.Millisecond},
			Guard:  g, ColdStart: func(context.Context) error {
				calls.Add(1)
				if refuse.Load() {
					return errors.New("another host answers")
				}
				return nil
			}}
	}
	g1 := &guard{name: "n1", j: &journal{}}
	e1, err := New(opts("n1", g1))
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- e1.Run(ctx1) }()
	eventually(t, "two cold-start probes", func() bool { return calls.Load() >= 2 })
	if _, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), "plndr-cp-lock", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the Lease was created while the cold-start probe refused: %v", err)
	}
	refuse.Store(false)
	eventually(t, "n1 holds", func() bool { h, _ := g1.state(); return h })

	// n2 starts while n1 holds: it sees the holder, so when n1 lets go
	// (SIGTERM) it takes over without probing.
	g2 := &guard{name: "n2", j: &journal{}}
	e2, err := New(opts("n2", g2))
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	go func() { _ = e2.Run(ctx2) }()
	time.Sleep(200 * time.Millisecond)
	before := calls.Load()
	refuse.Store(true) // a probe now would keep n2 from taking over
	stop1()
	<-done1
	eventually(t, "n2 holds after n1 let go", func() bool { h, _ := g2.state(); return h })
	if n := calls.Load(); n != before {
		t.Fatalf("the takeover from n1 probed %d times; want none", n-before)
	}
}

// TestEditOfAWriteNeverSeenCountsAsHeld: a follower whose last trusted
// version is a release misses the holder's acquire (a relist, or a read
// past its lagging watch) and then sees that acquire edited by someone
// else (holder cleared). The edit names a write it never saw, so the
// release it knows is not what the holder last wrote: it waits a lease
// duration from the edit, as for a Lease it never saw, instead of taking
// the Lease at once while the holder still has the VIP (found by review).
func TestEditOfAWriteNeverSeenCountsAsHeld(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	e, err := New(Options{Client: fake.NewClientset(), Guard: &guard{}, Namespace: "kube-system", Name: "plndr-cp-lock", Identity: "n2",
		Timing: Timing{LeaseDuration: 5 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	version := func(rv, holder string, seq uint64) *coordinationv1.Lease {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: "plndr-cp-lock", Namespace: "kube-system", ResourceVersion: rv},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder), LeaseDurationSeconds: ptr.To(int32(5))},
		}
		WriteSeal(l, "t1", seq)
		return l
	}
	for _, tc := range []struct {
		name string
		seen uint64 // the write the edit changed is the one seen (else a later one)
		want bool   // waits
	}{{"the edit changed the release it saw", 1, false}, {"the edit changed an acquire it never saw", 2, true}} {
		s := &state{}
		e.observe(s, version("10", "", 1)) // n1 released (its write 1)
		edited := version("12", "n1", tc.seen)
		edited.Spec.HolderIdentity = nil // someone else clears the holder of n1's write
		e.observe(s, edited)
		if s.foreign == "" {
			t.Fatalf("%s: the edit was not seen as one", tc.name)
		}
		if wait := e.nextTry(s); (wait > 0) != tc.want || tc.want && wait < 4*time.Second {
			t.Errorf("%s: waits %s; want waiting %t (a lease duration)", tc.name, wait, tc.want)
		}
	}
}
