// Package events posts Kubernetes Events for vipd, each distinct one once,
// and degrades to a single log warning when RBAC forbids Events (the seed's
// ClusterRole has no events permission).
package events

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Poster posts Events from one node.
type Poster struct {
	Client kubernetes.Interface
	Node   string
	Log    *slog.Logger

	mu        sync.Mutex
	last      map[string]string // object+reason -> last message posted
	forbidden bool
	queue     chan *corev1.Event
}

// Async makes Post return at once and create Events from a queue of size
// n, so a burst of Events does not slow the writes they describe. Events
// beyond a full queue are logged but not posted. It ends with ctx.
func (p *Poster) Async(ctx context.Context, n int) {
	p.queue = make(chan *corev1.Event, n)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-p.queue:
				p.create(ctx, ev)
			}
		}
	}()
}

// Post logs and posts an Event on obj unless the last Event with this reason
// on obj had the same message. It returns false when it was a repeat.
func (p *Poster) Post(ctx context.Context, obj corev1.ObjectReference, typ, reason, message string) bool {
	p.mu.Lock()
	if p.last == nil {
		p.last = map[string]string{}
	}
	k := string(obj.UID) + "\x00" + obj.Kind + "\x00" + obj.Namespace + "/" + obj.Name + "\x00" + reason
	if m, ok := p.last[k]; ok && m == message {
		p.mu.Unlock()
		return false
	}
	p.last[k] = message
	forbidden := p.forbidden
	p.mu.Unlock()

	if typ == corev1.EventTypeWarning {
		p.Log.Warn(message, "reason", reason)
	} else {
		p.Log.Info(message, "reason", reason)
	}
	if forbidden || p.Client == nil {
		return true
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "vipd-", Namespace: obj.Namespace},
		InvolvedObject: obj,
		Reason:         reason, Message: message, Type: typ,
		Source:         corev1.EventSource{Component: "vipd", Host: p.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "vipd", ReportingInstance: "vipd-" + p.Node,
	}
	if p.queue == nil {
		p.create(ctx, ev)
		return true
	}
	select {
	case p.queue <- ev:
	default:
		p.Log.Debug("Event queue full; this Event is only in the log", "reason", reason)
	}
	return true
}

func (p *Poster) create(ctx context.Context, ev *corev1.Event) {
	p.mu.Lock()
	forbidden := p.forbidden
	p.mu.Unlock()
	if forbidden {
		return
	}
	_, err := p.Client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{})
	reason := ev.Reason
	switch {
	case apierrors.IsForbidden(err):
		p.mu.Lock()
		first := !p.forbidden
		p.forbidden = true
		p.mu.Unlock()
		if first {
			p.Log.Warn("cannot post Events (forbidden by RBAC); findings appear only in this log. Add {apiGroups: [\"\"], resources: [\"events\"], verbs: [\"create\"]} to ClusterRole system:kube-vip-role to see them with kubectl get events", "err", err)
		}
	case err != nil:
		p.Log.Warn("cannot post Event", "reason", reason, "err", err)
	}
}

// Retain forgets what was posted about objects whose UID keep rejects
// (deleted ones), so memory stays bounded by the objects that exist.
func (p *Poster) Retain(keep func(uid string) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range p.last {
		uid, _, _ := strings.Cut(k, "\x00")
		if !keep(uid) {
			delete(p.last, k)
		}
	}
}
