package services

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/vip/viptest"
)

// written is one Service write as the recorder saw it.
type written struct {
	status  bool // UpdateStatus (else Update)
	key     string
	host    string   // the owner annotation written
	ingress []string // the status written
	held    []string // of those, the addresses on the node's interface at that moment
}

// recorder is a Writer that records every write with what the node's
// kernel held at that moment, and answers late: the write commits at once
// (watches see it), the answer comes after late, as from an API server
// that is slow to reply.
type recorder struct {
	next Writer
	k    *viptest.Kernel
	late time.Duration

	mu  sync.Mutex
	log []written
}

func (r *recorder) Update(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	return r.do(ctx, s, false, r.next.Update)
}

func (r *recorder) UpdateStatus(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	return r.do(ctx, s, true, r.next.UpdateStatus)
}

func (r *recorder) do(ctx context.Context, s *corev1.Service, status bool, f func(context.Context, *corev1.Service) (*corev1.Service, error)) (*corev1.Service, error) {
	w := written{status: status, key: key(s), host: s.Annotations[AnnotationHost]}
	if status {
		for _, in := range s.Status.LoadBalancer.Ingress {
			w.ingress = append(w.ingress, in.IP)
			if r.k.Has(in.IP + "/32") {
				w.held = append(w.held, in.IP)
			}
		}
	}
	out, err := f(ctx, s)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, w)
		r.mu.Unlock()
	}
	time.Sleep(r.late)
	return out, err
}

func (r *recorder) writes() []written {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]written(nil), r.log...)
}

// TestWritesFollowTheAddress: for a Service with its own address and two
// from a pool, while another node holds the Services Lease and then after
// this node took it over, with every write answered 300 ms after it committed, each
// Service gets one Update (allocation and owner, or owner) and then one
// status write, never more; a status lists only addresses the node holds
// at that moment, under the owner annotation of that node.
func TestWritesFollowTheAddress(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: PoolsNamespace, Name: PoolsName},
		Data: map[string]string{"range-global": "198.51.100.130-198.51.100.139"}}
	other := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "plndr-svcs-lock"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("n0"), LeaseDurationSeconds: ptr.To(int32(4)),
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()}}}
	api, client := newCluster(cm, other,
		lb("default", "own", 0, annotate(AnnotationIPs, "198.51.100.120")),
		lb("default", "pool-a", 1, nil),
		lb("team", "pool-b", 2, nil))
	k := viptest.New(nil)
	rec := &recorder{next: ClientWriter{Client: api.client(0)}, k: k, late: 300 * time.Millisecond}
	_, stop := run(t, Options{Client: api.client(0), NodeName: "n1", Writer: rec, Datapath: Datapath{Kernel: k}})
	waitFor(t, "every Service announced", func() error {
		for _, s := range []struct{ ns, name string }{{"default", "own"}, {"default", "pool-a"}, {"team", "pool-b"}} {
			svc, err := client.CoreV1().Services(s.ns).Get(context.Background(), s.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Annotations[AnnotationHost] != "n1" {
				return fmt.Errorf("%s/%s: status %v, owner %q", s.ns, s.name, svc.Status.LoadBalancer.Ingress, svc.Annotations[AnnotationHost])
			}
		}
		return nil
	})
	time.Sleep(time.Second) // any write that would follow
	stop()
	perSvc := map[string][]written{}
	for _, w := range rec.writes() {
		perSvc[w.key] = append(perSvc[w.key], w)
		if w.status && (len(w.held) != len(w.ingress) || w.host != "n1") {
			t.Errorf("%s: status %v written while the node held %v, owner %q", w.key, w.ingress, w.held, w.host)
		}
	}
	for _, k := range []string{"default/own", "default/pool-a", "team/pool-b"} {
		ws := perSvc[k]
		var kinds []string
		for _, w := range ws {
			kinds = append(kinds, map[bool]string{false: "update", true: "status"}[w.status])
		}
		if strings.Join(kinds, ",") != "update,status" {
			t.Errorf("%s: writes %v, want one update (owner) then one status", k, kinds)
		}
	}
	if ip := perSvc["default/own"]; len(ip) == 2 && (len(ip[1].ingress) != 1 || netip.MustParseAddr(ip[1].ingress[0]) != netip.MustParseAddr("198.51.100.120")) {
		t.Errorf("default/own: status %v, want its own address", ip[1].ingress)
	}
}

// passEnds is a log handler that calls itself at the end of every pass.
type passEnds func()

func (h passEnds) Enabled(context.Context, slog.Level) bool { return true }
func (h passEnds) Handle(_ context.Context, rec slog.Record) error {
	if rec.Message == "pass" {
		h()
	}
	return nil
}
func (h passEnds) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h passEnds) WithGroup(string) slog.Handler      { return h }

// TestPassWritesAreBounded: 12 Services to write (owner, then status) with
// one writer: no pass writes more than passWrites of them, the next pass
// does the rest, and each Service still gets one owner write then one
// status write.
func TestPassWritesAreBounded(t *testing.T) {
	var objs []runtime.Object
	for i := range 12 {
		objs = append(objs, lb("default", fmt.Sprintf("s%d", i), i, annotate(AnnotationIPs, fmt.Sprintf("198.51.100.%d", 120+i))))
	}
	api, client := newCluster(objs...)
	k := viptest.New(nil)
	rec := &recorder{next: ClientWriter{Client: api.client(0)}, k: k}
	mark := func() { // in the log of writes, where each pass ended
		rec.mu.Lock()
		rec.log = append(rec.log, written{key: "(pass)"})
		rec.mu.Unlock()
	}
	_, stop := run(t, Options{Client: api.client(0), NodeName: "n1", Writer: rec, Writers: 1, Logger: slog.New(passEnds(mark)), Datapath: Datapath{Kernel: k}})
	waitFor(t, "every Service announced", func() error {
		list, err := client.CoreV1().Services("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, svc := range list.Items {
			if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Annotations[AnnotationHost] != "n1" {
				return fmt.Errorf("%s: status %v, owner %q", svc.Name, svc.Status.LoadBalancer.Ingress, svc.Annotations[AnnotationHost])
			}
		}
		return nil
	})
	time.Sleep(time.Second) // any write that would follow
	stop()
	inPass, most := map[string]bool{}, 0
	perSvc := map[string][]string{}
	for _, w := range rec.writes() {
		if w.key == "(pass)" {
			inPass = map[string]bool{}
			continue
		}
		inPass[w.key] = true
		most = max(most, len(inPass))
		perSvc[w.key] = append(perSvc[w.key], map[bool]string{false: "update", true: "status"}[w.status])
	}
	if most > passWrites {
		t.Errorf("a pass wrote %d Services, want at most %d (passWrites × Writers)", most, passWrites)
	}
	if len(perSvc) != 12 {
		t.Errorf("%d Services written, want 12", len(perSvc))
	}
	for k, kinds := range perSvc {
		if strings.Join(kinds, ",") != "update,status" {
			t.Errorf("%s: writes %v, want one update (owner) then one status", k, kinds)
		}
	}
}

// refusing is a Writer that refuses every write of some Services, as an
// admission webhook might.
type refusing struct {
	next Writer
	keys map[string]bool
}

func (r refusing) Update(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	if r.keys[key(s)] {
		return nil, fmt.Errorf("admission webhook denied the request")
	}
	return r.next.Update(ctx, s)
}

func (r refusing) UpdateStatus(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	if r.keys[key(s)] {
		return nil, fmt.Errorf("admission webhook denied the request")
	}
	return r.next.UpdateStatus(ctx, s)
}

// TestRefusedWritesHoldUpNoOthers: with one writer (passWrites Services a
// pass), the writes of the first six Services are always refused; the six
// after them are still written, and the refused ones are not tried in a
// loop.
func TestRefusedWritesHoldUpNoOthers(t *testing.T) {
	var objs []runtime.Object
	refused := map[string]bool{}
	for i := range 12 {
		objs = append(objs, lb("default", fmt.Sprintf("s%02d", i), i, annotate(AnnotationIPs, fmt.Sprintf("198.51.100.%d", 120+i))))
		if i < 6 {
			refused[fmt.Sprintf("default/s%02d", i)] = true
		}
	}
	api, client := newCluster(objs...)
	var passes atomic.Int64
	_, _ = run(t, Options{Client: api.client(0), NodeName: "n1", Writers: 1, Logger: slog.New(passEnds(func() { passes.Add(1) })),
		Writer: refusing{next: ClientWriter{Client: api.client(0)}, keys: refused}, Datapath: Datapath{Kernel: viptest.New(nil)}})
	waitFor(t, "the Services whose writes are not refused announced", func() error {
		for i := 6; i < 12; i++ {
			svc, err := client.CoreV1().Services("default").Get(context.Background(), fmt.Sprintf("s%02d", i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(svc.Status.LoadBalancer.Ingress) != 1 || svc.Annotations[AnnotationHost] != "n1" {
				return fmt.Errorf("%s: status %v, owner %q", svc.Name, svc.Status.LoadBalancer.Ingress, svc.Annotations[AnnotationHost])
			}
		}
		return nil
	})
	// The refused writes are tried again every second, not in a loop.
	before := passes.Load()
	time.Sleep(2 * time.Second)
	if n := passes.Load() - before; n > 8 {
		t.Errorf("%d passes in 2 s with only refused writes left, want a few (one a second)", n)
	}
}
