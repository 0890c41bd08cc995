package kubeapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Informer is a cache of one Source with event handlers: a reflector that
// fills an indexer and calls the handlers in order.
//
// client-go's shared informer cannot be given the reflector's back-off,
// which doubles from 0.8 s to 30 s (times 1-2) for every relist within two
// minutes: after a few API server restarts in a row (a power cut with
// servers coming and going) a cache would be listed again only up to a
// minute after the API server answers. Here every relist waits Retry
// (times 1-1.5).
type Informer struct {
	src      *Source
	obj      runtime.Object
	indexer  cache.Indexer
	handlers []cache.ResourceEventHandler
	synced   atomic.Bool
	mu       sync.Mutex // one change of the indexer and its handler calls at a time
}

// Informer returns an informer over s; add its handlers, then run it.
func (t *Tracker) Informer(s *Source, obj runtime.Object, indexers cache.Indexers) *Informer {
	s.t = t
	if s.sleep == nil {
		s.sleep = sleep
	}
	return &Informer{src: s, obj: obj, indexer: cache.NewIndexer(cache.DeletionHandlingMetaNamespaceKeyFunc, indexers)}
}

// AddEventHandler adds h; call it before RunWithContext.
func (i *Informer) AddEventHandler(h cache.ResourceEventHandler) {
	i.handlers = append(i.handlers, h)
}

// GetIndexer is the cache.
func (i *Informer) GetIndexer() cache.Indexer { return i.indexer }

// HasSynced says whether the first list has been stored.
func (i *Informer) HasSynced() bool { return i.synced.Load() }

// RunWithContext lists and watches until ctx ends.
func (i *Informer) RunWithContext(ctx context.Context) {
	r := cache.NewReflectorWithOptions(&guarded{i.src}, i.obj, (*store)(i), cache.ReflectorOptions{
		Name: i.src.Name, TypeDescription: i.src.Name,
		Backoff: &wait.Backoff{Duration: Retry, Jitter: 0.5},
	})
	r.RunWithContext(ctx)
}

// store is the reflector's side of the Informer: it keeps the indexer and
// calls the handlers with what changed.
type store Informer

func (s *store) Add(obj any) error { return s.Update(obj) }

func (s *store) Update(obj any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists, _ := s.indexer.Get(obj)
	if err := s.indexer.Update(obj); err != nil {
		return err
	}
	for _, h := range s.handlers {
		if exists {
			h.OnUpdate(old, obj)
		} else {
			h.OnAdd(obj, false)
		}
	}
	return nil
}

func (s *store) Delete(obj any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists, _ := s.indexer.Get(obj)
	if err := s.indexer.Delete(obj); err != nil {
		return err
	}
	if exists {
		for _, h := range s.handlers {
			h.OnDelete(old)
		}
	}
	return nil
}

// Replace stores a new list: what is gone is deleted, what is new added,
// the rest updated (as a shared informer's relist does).
func (s *store) Replace(list []any, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	before := map[string]any{}
	for _, o := range s.indexer.List() {
		if k, err := cache.MetaNamespaceKeyFunc(o); err == nil {
			before[k] = o
		}
	}
	if err := s.indexer.Replace(list, ""); err != nil {
		return err
	}
	initial := !s.synced.Load()
	for _, o := range list {
		k, err := cache.MetaNamespaceKeyFunc(o)
		if err != nil {
			continue
		}
		old, had := before[k]
		delete(before, k)
		for _, h := range s.handlers {
			if had {
				h.OnUpdate(old, o)
			} else {
				h.OnAdd(o, initial)
			}
		}
	}
	for _, old := range before {
		for _, h := range s.handlers {
			h.OnDelete(cache.DeletedFinalStateUnknown{Key: keyOf(old), Obj: old})
		}
	}
	s.synced.Store(true)
	return nil
}

func keyOf(o any) string {
	k, _ := cache.MetaNamespaceKeyFunc(o)
	return k
}

func (s *store) Resync() error { return nil }

// guarded is the Source as the reflector sees it: a watch it is given
// never ends in under a second and never ends with an error event other
// than expired, so the reflector opens it again itself (from its resource
// version, through the Source's retries) instead of returning to its
// back-off; an expired one makes it list again.
type guarded struct{ *Source }

func (g *guarded) WatchWithContext(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	w, err := g.Source.WatchWithContext(ctx, o)
	if err != nil || w == nil {
		return w, err
	}
	return guard(ctx, w), nil
}

func (g *guarded) Watch(o metav1.ListOptions) (watch.Interface, error) {
	return g.WatchWithContext(context.Background(), o)
}

// minWatch is how long a watch lasts at least: the reflector treats one
// that ends sooner with no event as an error.
const minWatch = 1100 * time.Millisecond

func guard(ctx context.Context, w watch.Interface) watch.Interface {
	ctx, stop := context.WithCancel(ctx)
	out := make(chan watch.Event)
	start := time.Now()
	go func() {
		defer close(out)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.ResultChan():
				if !ok || ev.Type == watch.Error && !expired(ev) {
					// Ended, or an error event (a 500 from an etcd
					// leader change, a 429): end it as a normal close,
					// not sooner than minWatch.
					if d := minWatch - time.Since(start); d > 0 {
						sleep(ctx, d)
					}
					return
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return &waitWatch{ch: out, stop: stop}
}

// expired says whether a watch error event is a 410 (the reflector lists
// again).
func expired(ev watch.Event) bool {
	err := apierrors.FromObject(ev.Object)
	return apierrors.IsResourceExpired(err) || apierrors.IsGone(err)
}
