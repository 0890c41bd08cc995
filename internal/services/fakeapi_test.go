package services

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	k8stesting "k8s.io/client-go/testing"
)

// apiServer is one object store shared by several nodes' clients, with
// what client-go's stock fake lacks and what breaks real systems: every
// object has a resourceVersion and a stale update is a conflict (and
// generateName works); each
// node's watches deliver events late by a lag of its own; list and watch
// honour metadata.name field selectors (the elector watches one Lease).
type apiServer struct {
	mu      sync.Mutex
	rv      int
	tracker k8stesting.ObjectTracker
}

// The tracker's watchers drop nothing: one that falls DefaultChanSize events
// behind panics ("channel full"), which a burst of 1000 status writes on a
// busy machine did. A real API server buffers far more.
func init() { watch.DefaultChanSize = 1 << 16 }

func newAPIServer(objs ...runtime.Object) *apiServer {
	s := &apiServer{tracker: k8stesting.NewObjectTracker(scheme.Scheme, scheme.Codecs.UniversalDecoder())}
	for _, o := range objs {
		o = o.DeepCopyObject()
		s.stamp(o)
		if err := s.tracker.Add(o); err != nil {
			panic(err)
		}
	}
	return s
}

func (s *apiServer) stamp(o runtime.Object) {
	s.rv++
	m, _ := meta.Accessor(o)
	m.SetResourceVersion(strconv.Itoa(s.rv))
}

// client is a node's clientset; its watches lag by lag.
func (s *apiServer) client(lag time.Duration) *fake.Clientset {
	cs := &fake.Clientset{}
	react := k8stesting.ObjectReaction(s.tracker)
	cs.AddReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		switch a := a.(type) {
		case k8stesting.CreateActionImpl:
			obj := a.GetObject().DeepCopyObject()
			if m, _ := meta.Accessor(obj); m.GetName() == "" && m.GetGenerateName() != "" {
				m.SetName(m.GetGenerateName() + strconv.Itoa(s.rv+1))
			}
			s.stamp(obj)
			if err := s.tracker.Create(a.GetResource(), obj, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, obj.DeepCopyObject(), nil
		case k8stesting.UpdateActionImpl:
			obj := a.GetObject().DeepCopyObject()
			m, _ := meta.Accessor(obj)
			cur, err := s.tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
			if err != nil {
				return true, nil, err
			}
			cm, _ := meta.Accessor(cur)
			if m.GetResourceVersion() != "" && m.GetResourceVersion() != cm.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(),
					fmt.Errorf("resourceVersion %s, stored %s", m.GetResourceVersion(), cm.GetResourceVersion()))
			}
			s.stamp(obj)
			if err := s.tracker.Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, obj.DeepCopyObject(), nil
		case k8stesting.ListActionImpl:
			ok, obj, err := react(a)
			if err == nil {
				obj = byName(obj, a.GetListRestrictions().Fields)
			}
			return ok, obj, err
		}
		return react(a)
	})
	cs.AddWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		w, err := s.tracker.Watch(wa.GetResource(), wa.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		return true, lagged(w, lag, wa.GetWatchRestrictions().Fields), nil
	})
	return cs
}

// byName keeps the items of a list that a metadata.name selector matches.
func byName(list runtime.Object, sel fields.Selector) runtime.Object {
	if sel == nil || sel.Empty() {
		return list
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		return list
	}
	var keep []runtime.Object
	for _, o := range items {
		if matchName(o, sel) {
			keep = append(keep, o)
		}
	}
	_ = meta.SetList(list, keep)
	return list
}

func matchName(o runtime.Object, sel fields.Selector) bool {
	if sel == nil || sel.Empty() {
		return true
	}
	m, err := meta.Accessor(o)
	return err == nil && sel.Matches(fields.Set{"metadata.name": m.GetName(), "metadata.namespace": m.GetNamespace()})
}

// lagged delivers w's events, filtered by sel, each lag after it happened.
func lagged(w watch.Interface, lag time.Duration, sel fields.Selector) watch.Interface {
	ch := make(chan watch.Event, 4096)
	out := watch.NewProxyWatcher(ch)
	type timed struct {
		ev watch.Event
		at time.Time
	}
	q := make(chan timed, 4096)
	go func() {
		defer close(q)
		for ev := range w.ResultChan() {
			if ev.Object != nil && !matchName(ev.Object, sel) {
				continue
			}
			q <- timed{ev, time.Now().Add(lag)}
		}
	}()
	go func() {
		defer w.Stop()
		for t := range q {
			time.Sleep(time.Until(t.at))
			select {
			case ch <- t.ev:
			case <-out.StopChan():
				return
			}
		}
	}()
	return out
}

// newCluster is an apiServer holding objs, and a client without lag for
// the test itself (an administrator's kubectl).
func newCluster(objs ...runtime.Object) (*apiServer, *fake.Clientset) {
	api := newAPIServer(objs...)
	return api, api.client(0)
}
