package services

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
)

// loop is the one goroutine that owns the ownership state: the groups and
// their claims, the Service VIPs, the claim check's view of the Leases and
// spread mode's heartbeats, readiness and hand-over. Elector guards,
// informer handlers, and the answers of reads, probes and timers post an
// event to it (post) or run one and wait for it (do); nothing else reads or
// changes that state, so every decision sees one moment and none waits for
// a lock another holds across a call. An event makes no netlink or API
// call: those run on goroutines of their own (the datapath table's, a
// read's, a probe's, the pass's writes) and post their answer; but for
// two, which unit tests meet: the datapath table applies at once while
// its applier is not running (before Run, after it), and an Event is
// created at once when the poster has no queue (Run gives it one).
//
// The zero value is ready; its goroutine starts with the first event.
type loop struct {
	once  sync.Once
	mu    sync.Mutex // the queue only
	queue []func()
	wake  chan struct{}
	// owner is the loop goroutine's id: do on the loop runs at once (an
	// event that waited for itself would never end).
	owner atomic.Uint64
	// inline: every event runs at once, on the caller's goroutine, and
	// there is no loop goroutine (the permutation tests, which are that
	// goroutine and step the handlers one event at a time).
	inline bool
}

func (l *loop) start() {
	l.once.Do(func() {
		l.wake = make(chan struct{}, 1)
		started := make(chan struct{})
		go func() {
			l.owner.Store(goroutineID())
			close(started)
			for range l.wake {
				l.drain()
			}
		}()
		<-started
	})
}

// drain runs the queued events in order, and those they post.
func (l *loop) drain() {
	for {
		l.mu.Lock()
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, f := range q {
			f()
		}
	}
}

// post queues f, to run on the loop after every event posted before it.
func (l *loop) post(f func()) {
	if l.inline {
		f()
		return
	}
	l.start()
	l.mu.Lock()
	l.queue = append(l.queue, f)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// do runs f on the loop and returns once it has run.
func (l *loop) do(f func()) {
	if l.inline {
		f()
		return
	}
	l.start()
	if l.owner.Load() == goroutineID() {
		f()
		return
	}
	done := make(chan struct{})
	l.post(func() { defer close(done); f() })
	<-done
}

// goroutineID is the id of the calling goroutine, as its stack names it.
func goroutineID() uint64 {
	var buf [32]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}
