// Package kubeapi lists and watches the API objects vipd follows so that no
// start order can leave a cache waiting for ever.
//
// client-go's reflector backs off up to 30-60 s after failures and concludes
// nothing itself; vipd used to decide "this resource is forbidden, go on
// without it" from a first answer, so a first attempt that found the API
// server down (a power cut: vipd starts before its API server) left a cache
// that could never sync. Here every list and watch is retried by the source
// itself, every Retry while the API server does not answer and every
// ForbiddenRetry while RBAC forbids it, so a cache fills within about a
// second of the API server answering, whatever happened before:
//
//   - a Required resource (Services, when svc_enable is on) keeps its cache
//     waiting while it is forbidden, and /readyz says what to add to the
//     ClusterRole;
//   - an optional one (the pools ConfigMap, Nodes, the API server's
//     EndpointSlices) that RBAC forbids before it was ever read is an
//     empty cache, so the controller runs without it as it would without
//     the objects, and its objects are picked up once RBAC allows them,
//     without a restart. One that was read keeps what it last read while
//     RBAC forbids it: a revoked permission must not make vipd forget
//     whose addresses are whose (S7).
//
// A Tracker collects what every source waits for, for /readyz and the log:
// said once at warning level and then every minute while it lasts, never
// once per retry.
package kubeapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

const (
	// Retry is how often a list or watch is tried again while the API
	// server does not answer (see retryAfter for one that answers with an
	// error), and how long an outage lasts before it is said.
	Retry = time.Second
	// ForbiddenRetry is how often a forbidden resource is tried again. A
	// forbidden request costs the API server an authorization check and no
	// storage read; vipd cannot watch ClusterRoles with the seed's RBAC, so
	// this is what bounds how soon a granted permission is used.
	ForbiddenRetry = 3 * time.Second
	// LogEvery is how often a state that lasts is logged again.
	LogEvery = time.Minute
)

// Tracker records what the sources wait for. Its zero value is not usable:
// use NewTracker.
type Tracker struct {
	server string
	log    *slog.Logger
	now    func() time.Time

	mu   sync.Mutex
	down *outage               // the API server does not answer
	deny map[string]*forbidden // by source name
}

type outage struct {
	err           error
	since, logged time.Time
	sources       map[string]bool
}

type forbidden struct {
	src   *Source
	since time.Time
}

// NewTracker returns a Tracker; server is the API server's URL, for the
// messages. now may be nil (time.Now).
func NewTracker(server string, log *slog.Logger, now func() time.Time) *Tracker {
	if now == nil {
		now = time.Now
	}
	return &Tracker{server: server, log: log.With("component", "kubeapi"), now: now, deny: map[string]*forbidden{}}
}

// unreachable records that s could not reach the API server.
func (t *Tracker) unreachable(s *Source, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.down == nil {
		t.down = &outage{since: now, sources: map[string]bool{}}
	}
	t.down.err = err
	t.down.sources[s.Name] = true
	// One failed request between answers (a 500, a reset connection) is
	// not an outage worth a line: said once it lasted a retry.
	if now.Sub(t.down.since) < Retry {
		return
	}
	if t.down.logged.IsZero() || now.Sub(t.down.logged) >= LogEvery {
		t.down.logged = now
		t.log.Warn("waiting for the API server: "+s.Name+" cannot be read (retrying every "+Retry.String()+")",
			"server", t.server, "err", err, "for", now.Sub(t.down.since).Round(time.Second).String())
	}
}

// denied records that RBAC forbids s.
func (t *Tracker) denied(s *Source, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.answeredLocked()
	if _, ok := t.deny[s.Name]; ok {
		return
	}
	t.deny[s.Name] = &forbidden{src: s, since: t.now()}
	if s.Required {
		t.log.Error(s.Forbidden+" (trying again every "+ForbiddenRetry.String()+"; RBAC must allow list and watch)", "err", err)
	} else {
		t.log.Warn(s.Forbidden+" (it is picked up within "+ForbiddenRetry.String()+" once allowed, no restart needed)", "err", err)
	}
}

// answered records that s was read.
func (t *Tracker) answered(s *Source) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.answeredLocked()
	if f, ok := t.deny[s.Name]; ok {
		delete(t.deny, s.Name)
		t.log.Info(s.Name+" can be read now", "forbiddenFor", t.now().Sub(f.since).Round(time.Second).String())
	}
}

func (t *Tracker) answeredLocked() {
	if t.down == nil {
		return
	}
	if !t.down.logged.IsZero() {
		t.log.Info("the API server answers again", "server", t.server, "after", t.now().Sub(t.down.since).Round(time.Millisecond).String())
	}
	t.down = nil
}

// Waiting says what the given sources wait for, or nil: the API server
// (with the last error and for how long), or RBAC for a required source.
func (t *Tracker) Waiting(sources ...*Source) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var why []string
	if t.down != nil && t.now().Sub(t.down.since) >= Retry {
		for _, s := range sources {
			if t.down.sources[s.Name] {
				why = append(why, fmt.Sprintf("waiting for the API server at %s (%s) for %s", t.server, short(t.down.err), t.now().Sub(t.down.since).Round(time.Second)))
				break
			}
		}
	}
	for _, s := range sources {
		if f, ok := t.deny[s.Name]; ok && s.Required {
			why = append(why, fmt.Sprintf("%s, for %s", s.Forbidden, t.now().Sub(f.since).Round(time.Second)))
		}
	}
	if len(why) == 0 {
		return nil
	}
	sort.Strings(why[1:])
	return errors.New(strings.Join(why, "; "))
}

// Denied lists the sources RBAC forbids now, by name.
func (t *Tracker) Denied() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name := range t.deny {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// short is what went wrong in a client error, without the request
// ("Get \"https://...\": dial tcp 10.43.0.1:443: connect: connection
// refused" is "connection refused").
func short(err error) string {
	s := err.Error()
	if strings.Contains(s, ": dial tcp ") {
		s = s[strings.LastIndex(s, ": ")+2:]
	}
	return s
}

// Source is one resource vipd lists and watches.
type Source struct {
	// Name says what it is, for messages ("Services", "ConfigMap
	// kube-system/kubevip").
	Name string
	// Required: the cache waits while RBAC forbids it, and /readyz fails.
	// Otherwise a forbidden resource is an empty cache.
	Required bool
	// Forbidden says what RBAC forbids, what vipd does without it and
	// what to add to the ClusterRole.
	Forbidden string
	// ListFunc and WatchFunc are the typed client's calls.
	ListFunc  func(context.Context, metav1.ListOptions) (runtime.Object, error)
	WatchFunc func(context.Context, metav1.ListOptions) (watch.Interface, error)
	// Empty returns an empty list of the resource's list type.
	Empty func() runtime.Object

	t       *Tracker
	mu      sync.Mutex
	emptied bool // the cache was given an empty list because RBAC forbids it
	read    bool // a list was answered once
	sleep   func(context.Context, time.Duration) bool
}

func sleep(ctx context.Context, d time.Duration) bool {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

type answer int

const (
	ok answer = iota
	refused
	denied
	pass // for the reflector: an expired or too large resource version
)

func classify(err error) answer {
	switch {
	case err == nil:
		return ok
	case apierrors.IsForbidden(err):
		return denied
	case apierrors.IsResourceExpired(err), apierrors.IsGone(err),
		apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge):
		return pass
	}
	return refused
}

// ListWithContext lists until the API server answers; see the package doc.
func (s *Source) ListWithContext(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
	list := func() (runtime.Object, error) {
		obj, err := s.ListFunc(ctx, o)
		if err == nil {
			s.mu.Lock()
			s.emptied, s.read = false, true
			s.mu.Unlock()
		}
		return obj, err
	}
	return answered(ctx, s, list, func() (runtime.Object, bool) {
		if s.emptyWhenDenied() {
			return s.empty(), true
		}
		return nil, false
	})
}

// answered calls call until the API server answers it (see the package
// doc); while RBAC forbids it, whenDenied may end the wait with a value.
func answered[T any](ctx context.Context, s *Source, call func() (T, error), whenDenied func() (T, bool)) (T, error) {
	var zero T
	for {
		v, err := call()
		switch classify(err) {
		case ok:
			s.t.answered(s)
			return v, nil
		case pass:
			return zero, err
		case denied:
			s.t.denied(s, err)
			if v, done := whenDenied(); done {
				return v, nil
			}
			if !s.sleep(ctx, ForbiddenRetry) {
				return zero, ctx.Err()
			}
		case refused:
			if ctx.Err() != nil {
				return zero, ctx.Err()
			}
			s.t.unreachable(s, err)
			if !s.sleep(ctx, retryAfter(err)) {
				return zero, ctx.Err()
			}
		}
	}
}

// retryAfter is how long to wait before trying again after err: Retry
// when the API server did not answer; when it answered with an error (5xx,
// 429, 401: overloaded or starting), what it asked for (at most 10 s) or
// 2-3 s, so that a struggling API server is not asked by every cache every
// second.
func retryAfter(err error) time.Duration {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return Retry
	}
	if d, ok := apierrors.SuggestsClientDelay(err); ok && d > 0 {
		return min(time.Duration(d)*time.Second, 10*time.Second)
	}
	return 2*Retry + time.Duration(rand.Int64N(int64(Retry)))
}

func (s *Source) empty() runtime.Object {
	l := s.Empty()
	if m, err := meta.ListAccessor(l); err == nil {
		m.SetResourceVersion("")
	}
	return l
}

// emptyWhenDenied says whether a denied list is answered with an empty
// one (an optional source never read), and notes that it was.
func (s *Source) emptyWhenDenied() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Required || s.read {
		return false
	}
	s.emptied = true
	return true
}

func (s *Source) isEmptied() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emptied
}

// WatchWithContext watches until the API server answers and RBAC allows
// it. While an optional source that was never read is forbidden, the
// watch waits for it to be allowed and then ends as expired, so the
// reflector lists again.
func (s *Source) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	if s.isEmptied() {
		return s.awaitAllowed(ctx), nil
	}
	return answered(ctx, s, func() (watch.Interface, error) { return s.WatchFunc(ctx, o) },
		func() (watch.Interface, bool) { return nil, false })
}

// awaitAllowed is a watch with no events that tries a list every
// ForbiddenRetry and ends as expired once one is allowed.
func (s *Source) awaitAllowed(ctx context.Context) watch.Interface {
	ctx, stop := context.WithCancel(ctx)
	w := &waitWatch{ch: make(chan watch.Event, 1), stop: stop}
	go func() {
		defer close(w.ch)
		for s.sleep(ctx, ForbiddenRetry) {
			_, err := s.ListFunc(ctx, metav1.ListOptions{Limit: 1})
			if a := classify(err); a == denied || a == refused {
				s.t.log.Debug("still cannot read "+s.Name, "err", err)
				continue
			}
			s.t.log.Debug(s.Name + " allowed now: listing it again")
			st := apierrors.NewResourceExpired("vipd: " + s.Name + " is allowed now").Status()
			w.ch <- watch.Event{Type: watch.Error, Object: &st}
			return
		}
	}()
	return w
}

type waitWatch struct {
	ch   chan watch.Event
	stop context.CancelFunc
}

func (w *waitWatch) Stop()                          { w.stop() }
func (w *waitWatch) ResultChan() <-chan watch.Event { return w.ch }

// List is ListWithContext without a context (cache.ListerWatcher); the
// reflector uses ListWithContext.
func (s *Source) List(o metav1.ListOptions) (runtime.Object, error) {
	return s.ListWithContext(context.Background(), o)
}

// Watch is WatchWithContext without a context (cache.ListerWatcher).
func (s *Source) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return s.WatchWithContext(context.Background(), o)
}

// IsWatchListSemanticsUnSupported makes the reflector list and then watch
// (not stream the initial list through a watch), which is what the
// retries above are written for.
func (s *Source) IsWatchListSemanticsUnSupported() bool { return true }

// New returns a Source over a typed client's List and Watch (for example
// client.CoreV1().Services(ns).List and .Watch); tweak, if set, narrows
// every list and watch (a field or label selector).
func New[L runtime.Object](name string, list func(context.Context, metav1.ListOptions) (L, error), watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), tweak func(*metav1.ListOptions)) *Source {
	narrow := func(o metav1.ListOptions) metav1.ListOptions {
		if tweak != nil {
			tweak(&o)
		}
		return o
	}
	return &Source{
		Name: name,
		ListFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return list(ctx, narrow(o))
		},
		WatchFunc: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return watchFn(ctx, narrow(o))
		},
		Empty: func() runtime.Object {
			var l L
			return reflect.New(reflect.TypeOf(l).Elem()).Interface().(runtime.Object)
		},
	}
}
