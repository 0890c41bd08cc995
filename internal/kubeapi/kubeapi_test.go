package kubeapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
)

// api is a fake API server whose answer for ConfigMaps can be switched:
// refused (connection refused), forbidden, or served from the fake's
// store. Each watch it serves can be ended, as the API server ends a watch
// at its timeout.
type api struct {
	client *fake.Clientset
	mu     sync.Mutex
	mode   string // "", "refused", "forbidden"
	calls  int
	open   []watch.Interface
}

func newAPI(objs ...runtime.Object) *api { return &api{client: fake.NewClientset(objs...)} }

func (a *api) set(mode string) {
	a.mu.Lock()
	a.mode = mode
	a.mu.Unlock()
}

func (a *api) answer() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	switch a.mode {
	case "refused":
		return errors.New(`Get "https://198.51.100.2:6443/api/v1/namespaces/kube-system/configmaps": dial tcp 198.51.100.2:6443: connect: connection refused`)
	case "forbidden":
		return apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "", errors.New(`User "system:serviceaccount:kube-system:kube-vip" cannot list resource "configmaps"`))
	}
	return nil
}

// endWatches ends every watch served so far.
func (a *api) endWatches() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, w := range a.open {
		w.Stop()
	}
	a.open = nil
}

func (a *api) source(required bool) *Source {
	cms := a.client.CoreV1().ConfigMaps("kube-system")
	return &Source{
		Name: "ConfigMap kube-system/kubevip", Required: required,
		Forbidden: "cannot read ConfigMaps: add configmaps (get, list, watch) to the ClusterRole",
		ListFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			if err := a.answer(); err != nil {
				return nil, err
			}
			return cms.List(ctx, o)
		},
		WatchFunc: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if err := a.answer(); err != nil {
				return nil, err
			}
			w, err := cms.Watch(ctx, o)
			if err == nil {
				a.mu.Lock()
				a.open = append(a.open, w)
				a.mu.Unlock()
			}
			return w, err
		},
		Empty: func() runtime.Object { return &corev1.ConfigMapList{} },
		sleep: func(ctx context.Context, _ time.Duration) bool { return sleep(ctx, 10*time.Millisecond) },
	}
}

func cm(data string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kubevip"}, Data: map[string]string{"cidr-global": data}}
}

// logs collects the log.
type logs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func run(t *testing.T, a *api, required bool) (*Tracker, *Source, *Informer, *logs) {
	t.Helper()
	lg := &logs{}
	tr := NewTracker("https://198.51.100.2:6443", slog.New(slog.NewTextHandler(io.MultiWriter(lg), nil)), nil)
	src := a.source(required)
	inf := tr.Informer(src, &corev1.ConfigMap{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go inf.RunWithContext(ctx)
	return tr, src, inf, lg
}

func within(t *testing.T, what string, f func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !f(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not within 10 s: %s", what)
		}
	}
}

func data(inf *Informer) string {
	o, ok, _ := inf.GetIndexer().GetByKey("kube-system/kubevip")
	if !ok {
		return ""
	}
	return o.(*corev1.ConfigMap).Data["cidr-global"]
}

// An API server that refuses connections at first: the cache fills once it
// answers, Waiting names the server and the error meanwhile, and the log
// says it once, not once per retry.
func TestUnreachableAtStartThenAnswers(t *testing.T) {
	a := newAPI(cm("198.51.100.0/28"))
	a.set("refused")
	tr, src, inf, lg := run(t, a, true)
	within(t, "an outage that lasted a retry, said", func() bool {
		return tr.Waiting(src) != nil && strings.Contains(lg.String(), "waiting for the API server")
	})
	a.mu.Lock()
	if a.calls < 20 {
		t.Errorf("%d tries in a second", a.calls)
	}
	a.mu.Unlock()
	err := tr.Waiting(src)
	if err == nil || !strings.Contains(err.Error(), "waiting for the API server at https://198.51.100.2:6443 (connection refused) for ") {
		t.Fatalf("Waiting: %v", err)
	}
	if inf.HasSynced() {
		t.Fatal("synced while the API server refuses")
	}
	a.set("")
	within(t, "synced once the API answers", inf.HasSynced)
	if data(inf) != "198.51.100.0/28" {
		t.Fatalf("cache: %q", data(inf))
	}
	if err := tr.Waiting(src); err != nil {
		t.Fatalf("Waiting after it answered: %v", err)
	}
	if n := strings.Count(lg.String(), "waiting for the API server"); n != 1 {
		t.Fatalf("said %d times, want once:\n%s", n, lg)
	}
	if !strings.Contains(lg.String(), "the API server answers again") {
		t.Fatalf("recovery not said:\n%s", lg)
	}
}

// An optional resource forbidden at start is an empty, synced cache; once
// RBAC allows it, its object is picked up without a restart; when RBAC
// forbids it again (seen when the watch is next opened), the cache keeps
// what it read, and follows again once allowed.
func TestOptionalForbiddenThenAllowedThenForbidden(t *testing.T) {
	a := newAPI(cm("198.51.100.0/28"))
	a.set("forbidden")
	tr, src, inf, lg := run(t, a, false)
	within(t, "synced while forbidden", inf.HasSynced)
	if data(inf) != "" {
		t.Fatalf("forbidden, yet the cache has %q", data(inf))
	}
	if err := tr.Waiting(src); err != nil {
		t.Fatalf("an optional resource made Waiting fail: %v", err)
	}
	if got := tr.Denied(); len(got) != 1 {
		t.Fatalf("Denied: %v", got)
	}
	a.set("")
	within(t, "the ConfigMap picked up once allowed", func() bool { return data(inf) == "198.51.100.0/28" })
	if len(tr.Denied()) != 0 {
		t.Fatalf("still denied: %v", tr.Denied())
	}
	// Events keep flowing through the watch.
	if _, err := a.client.CoreV1().ConfigMaps("kube-system").Update(context.Background(), cm("203.0.113.0/28"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, "the update seen", func() bool { return data(inf) == "203.0.113.0/28" })
	a.set("forbidden")
	a.endWatches()
	within(t, "forbidden again", func() bool { return len(tr.Denied()) == 1 })
	time.Sleep(50 * time.Millisecond)
	if data(inf) != "203.0.113.0/28" {
		t.Fatalf("forbidden after it was read: the cache has %q, want what it read", data(inf))
	}
	if n := strings.Count(lg.String(), "cannot read ConfigMaps"); n != 2 {
		t.Fatalf("the forbidden warning said %d times, want once per time it was forbidden:\n%s", n, lg)
	}
	if _, err := a.client.CoreV1().ConfigMaps("kube-system").Update(context.Background(), cm("198.51.100.64/28"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a.set("")
	within(t, "followed again once allowed", func() bool { return data(inf) == "198.51.100.64/28" })
}

// A required resource forbidden at start keeps its cache waiting and
// Waiting says what to add; once allowed it syncs.
func TestRequiredForbiddenThenAllowed(t *testing.T) {
	a := newAPI(cm("198.51.100.0/28"))
	a.set("forbidden")
	tr, src, inf, _ := run(t, a, true)
	within(t, "Waiting says it is forbidden", func() bool {
		err := tr.Waiting(src)
		return err != nil && strings.Contains(err.Error(), "add configmaps (get, list, watch)")
	})
	if inf.HasSynced() {
		t.Fatal("a required resource synced while forbidden")
	}
	a.set("")
	within(t, "synced once allowed", inf.HasSynced)
	if data(inf) != "198.51.100.0/28" {
		t.Fatalf("cache: %q", data(inf))
	}
	if err := tr.Waiting(src); err != nil {
		t.Fatal(err)
	}
}

// The API server going away while the cache is synced (a restart): the
// watch is opened again as soon as it answers, and what changed meanwhile
// is seen.
func TestAPIServerRestart(t *testing.T) {
	a := newAPI(cm("198.51.100.0/28"))
	_, _, inf, _ := run(t, a, true)
	within(t, "synced", inf.HasSynced)
	a.set("refused")
	a.endWatches()
	time.Sleep(100 * time.Millisecond)
	a.set("")
	if _, err := a.client.CoreV1().ConfigMaps("kube-system").Update(context.Background(), cm("203.0.113.0/28"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	within(t, "the change made while it was away", func() bool { return data(inf) == "203.0.113.0/28" })
}

// Refused, then forbidden (an empty cache), then away again, then allowed:
// the object is picked up.
func TestRefusedForbiddenAwayAllowed(t *testing.T) {
	a := newAPI(cm("198.51.100.0/28"))
	a.set("refused")
	_, _, inf, lg := run(t, a, false)
	time.Sleep(50 * time.Millisecond)
	a.set("forbidden")
	within(t, "synced while forbidden", inf.HasSynced)
	time.Sleep(50 * time.Millisecond)
	a.set("refused")
	time.Sleep(100 * time.Millisecond)
	a.set("")
	within(t, "picked up once allowed", func() bool { return data(inf) == "198.51.100.0/28" })
	if !strings.Contains(lg.String(), "can be read now") {
		t.Fatalf("not said:\n%s", lg)
	}
}
