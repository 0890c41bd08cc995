package services

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Writer makes vipd's changes to Services, the only API writes of a pass:
// annotations (allocation, owner) and status.loadBalancer. The real one is
// the client (ClientWriter); tests record, delay or fail writes with
// their own.
type Writer interface {
	Update(ctx context.Context, s *corev1.Service) (*corev1.Service, error)
	UpdateStatus(ctx context.Context, s *corev1.Service) (*corev1.Service, error)
}

// ClientWriter writes through a Kubernetes client.
type ClientWriter struct{ Client kubernetes.Interface }

// Update writes metadata and spec.
func (w ClientWriter) Update(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	return w.Client.CoreV1().Services(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
}

// UpdateStatus writes the status.
func (w ClientWriter) UpdateStatus(ctx context.Context, s *corev1.Service) (*corev1.Service, error) {
	return w.Client.CoreV1().Services(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{})
}

// report posts the Events for bad input (c.report is called on the node
// that reports: see pass).
func (c *Controller) report(ctx context.Context, plan []*Entry) {
	for _, e := range plan {
		if c.behind(e.Svc) {
			continue
		}
		if e.Warning != nil {
			c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, e.Warning.Reason, e.Warning.Message)
		}
		if e.Problem != nil {
			c.poster.Post(ctx, ref(e.Svc, "Service"), corev1.EventTypeWarning, e.Problem.Reason, e.Problem.Message)
		}
	}
}

// allocatorWrites are the allocator's writes: addresses taken from pools,
// and clean-up of Services with bad input or no longer vipd's.
func (c *Controller) allocatorWrites(ctx context.Context, plan []*Entry, stale []*corev1.Service) []func() {
	var w []func()
	for _, e := range plan {
		if c.behind(e.Svc) {
			continue
		}
		switch {
		case e.Problem != nil:
			if len(e.Svc.Status.LoadBalancer.Ingress) > 0 || e.Svc.Annotations[AnnotationHost] != "" {
				w = append(w, func() { c.clear(ctx, e.Svc, false) })
			}
		case len(e.Allocated) > 0:
			w = append(w, func() { c.writeAllocation(ctx, e) })
		}
	}
	for _, s := range stale {
		if !c.behind(s) {
			w = append(w, func() { c.clear(ctx, s, true) })
		}
	}
	return w
}

// writeAllocation records a pool address on the Service (optimistic
// concurrency: the update carries the resourceVersion the plan was made from).
func (c *Controller) writeAllocation(ctx context.Context, e *Entry) {
	s := e.Svc.DeepCopy()
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	var ips []string
	for _, ip := range e.Allocated {
		ips = append(ips, ip.String())
	}
	s.Annotations[AnnotationIPs] = strings.Join(ips, ",")
	s.Annotations[AnnotationAllocated] = e.Pool
	if !e.Local {
		// The allocator holds the Services Lease, so it owns the VIP next:
		// one write instead of two. The status waits for the announcement.
		s.Annotations[AnnotationHost] = c.o.NodeName
	}
	if _, err := c.o.Writer.Update(ctx, s); err != nil {
		c.retry("writing the allocated address", e.Key, err)
		return
	}
	c.wrote(e.Key, e.Svc.ResourceVersion)
	c.basedMu.Lock()
	c.unconfirmed[e.Key] = e.Allocated
	c.basedMu.Unlock()
	c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Allocated",
		fmt.Sprintf("service %s: allocated %s from pool %s", e.Key, strings.Join(ips, ","), e.Pool))
}

// clear removes what vipd wrote on a Service that has no VIP: the status,
// the owner annotation and, when released (not vipd's any more), an
// allocation vipd made, which returns the address to the pool.
func (c *Controller) clear(ctx context.Context, svc *corev1.Service, release bool) {
	s := svc.DeepCopy()
	changed := false
	if _, ok := s.Annotations[AnnotationHost]; ok {
		delete(s.Annotations, AnnotationHost)
		changed = true
	}
	if release && s.Annotations[AnnotationAllocated] != "" {
		delete(s.Annotations, AnnotationAllocated)
		delete(s.Annotations, AnnotationIPs)
		changed = true
	}
	var err error
	if changed {
		s, err = c.o.Writer.Update(ctx, s)
		if err != nil {
			c.retry("clearing the owner annotation", key(svc), err)
			return
		}
		c.wrote(key(svc), svc.ResourceVersion)
	}
	// A Service that is no longer vipd's (another class, or
	// kube-vip.io/ignore) keeps a status that vipd did not write: only one
	// that matches the owner annotation vipd wrote and its addresses goes.
	if len(s.Status.LoadBalancer.Ingress) > 0 && (!release || vipdStatus(svc)) {
		s.Status.LoadBalancer.Ingress = nil
		if _, err := c.o.Writer.UpdateStatus(ctx, s); err != nil {
			c.retry("clearing the status", key(svc), err)
			return
		}
		c.wrote(key(svc), s.ResourceVersion)
	}
	c.log.Info("cleared the Service's VIP status", "service", key(svc))
}

// ownerWrites are this node's writes for the Services whose every VIP it
// holds now: the owner annotation, then status.loadBalancer.ingress.
func (c *Controller) ownerWrites(ctx context.Context, plan []*Entry) []func() {
	var w []func()
	c.lp.do(func() { w = c.ownerWritesOf(ctx, plan) })
	return w
}

// ownerWritesOf is ownerWrites on the loop.
func (c *Controller) ownerWritesOf(ctx context.Context, plan []*Entry) (w []func()) {
	for _, e := range plan {
		if e.Problem != nil || len(e.Allocated) > 0 || len(e.Addrs) == 0 {
			continue
		}
		all := true
		for _, ip := range e.Addrs {
			if h := c.vips[ip]; h == nil || !h.ov.Holding() {
				all = false
				break
			}
		}
		// (behind last: of 1000 Services at 10 nodes, a node holds 100.)
		if !all || (e.Svc.Annotations[AnnotationHost] == c.o.NodeName && sameIngress(e.Svc, e.Addrs)) || c.behind(e.Svc) {
			continue
		}
		w = append(w, func() { c.writeOwner(ctx, e) })
	}
	return w
}

// vipdStatus reports whether the status is the one vipd wrote: vipd's owner
// annotation is set and the status lists exactly the requested addresses.
func vipdStatus(s *corev1.Service) bool {
	req, err := Requested(s)
	return err == nil && len(req) > 0 && s.Annotations[AnnotationHost] != "" && sameIngress(s, req)
}

func sameIngress(s *corev1.Service, ips []netip.Addr) bool {
	in := s.Status.LoadBalancer.Ingress
	if len(in) != len(ips) {
		return false
	}
	for i, ip := range ips {
		if in[i].IP != ip.String() || in[i].Hostname != "" {
			return false
		}
	}
	return true
}

func (c *Controller) writeOwner(ctx context.Context, e *Entry) {
	s := e.Svc.DeepCopy()
	prev, wasUp := s.Annotations[AnnotationHost], len(s.Status.LoadBalancer.Ingress) > 0
	var err error
	if prev != c.o.NodeName {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		s.Annotations[AnnotationHost] = c.o.NodeName
		rv := s.ResourceVersion
		s, err = c.o.Writer.Update(ctx, s)
		if err != nil {
			c.retry("writing the owner annotation", e.Key, err)
			return
		}
		c.wrote(e.Key, rv)
	}
	if !sameIngress(s, e.Addrs) {
		s.Status.LoadBalancer.Ingress = nil
		for _, ip := range e.Addrs {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip.String()})
		}
		if _, err := c.o.Writer.UpdateStatus(ctx, s); err != nil {
			c.retry("writing status.loadBalancer.ingress", e.Key, err)
			return
		}
		c.wrote(e.Key, s.ResourceVersion)
	}
	ips := joinAddrs(e.Addrs)
	switch {
	case prev == "" || prev == c.o.NodeName && !wasUp:
		c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Announced", fmt.Sprintf("%s announced by node %s", ips, c.o.NodeName))
	case prev != c.o.NodeName:
		c.poster.Post(ctx, ref(s, "Service"), corev1.EventTypeNormal, "Moved", fmt.Sprintf("%s moved from node %s to node %s", ips, prev, c.o.NodeName))
	}
}

func joinAddrs(ips []netip.Addr) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

// retry logs a failed write and makes another pass soon; a conflict only
// means the cache was behind, and the next pass sees the newer object.
func (c *Controller) retry(what, svc string, err error) {
	c.failed.Add(1)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		c.log.Debug(what+": object changed meanwhile, trying again", "service", svc, "err", err)
	} else {
		c.log.Warn(what+" failed, trying again", "service", svc, "err", err)
	}
	// One pass a second later for all the writes that failed meanwhile:
	// a timer per failed write made a pass each, and passes that write
	// again fail again (six writes an admission webhook refused: a dozen
	// passes a second).
	if c.retrying.CompareAndSwap(false, true) {
		go func() {
			<-c.o.Clock.After(time.Second)
			c.retrying.Store(false)
			c.planNow()
		}()
	}
}

// forget drops what is remembered about Services that no longer exist.
func (c *Controller) forget(all []*corev1.Service) {
	keys, uids := make(map[string]bool, len(all)), make(map[string]bool, len(all))
	for _, s := range all {
		keys[key(s)], uids[string(s.UID)] = true, true
	}
	c.basedMu.Lock()
	for k := range c.based {
		if !keys[k] {
			delete(c.based, k)
		}
	}
	c.basedMu.Unlock()
	if c.cmLister != nil {
		if cm, err := c.cmLister.ConfigMaps(PoolsNamespace).Get(PoolsName); err == nil {
			uids[string(cm.UID)] = true
		}
	}
	c.poster.Retain(func(uid string) bool { return uids[uid] })
}

// confirm forgets the allocations that the cache now shows (the Service
// has a request of its own, or is gone) and returns the others.
func (c *Controller) confirm(svcs []*corev1.Service) map[string][]netip.Addr {
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if len(c.unconfirmed) == 0 {
		return nil
	}
	pending := map[string]bool{}
	for _, s := range svcs {
		if req, err := Requested(s); err == nil && len(req) == 0 {
			pending[key(s)] = true
		}
	}
	out := map[string][]netip.Addr{}
	for k, ips := range c.unconfirmed {
		if !pending[k] {
			delete(c.unconfirmed, k)
			continue
		}
		out[k] = ips
	}
	return out
}

// wrote records that a successful write replaced version rv of Service k.
func (c *Controller) wrote(k, rv string) {
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if c.based[k] == nil {
		c.based[k] = map[string]bool{}
	}
	c.based[k][rv] = true
}

// behind reports whether the cache still shows a version of svc that a
// write of ours already replaced.
func (c *Controller) behind(svc *corev1.Service) bool {
	k := key(svc)
	c.basedMu.Lock()
	defer c.basedMu.Unlock()
	if c.based[k][svc.ResourceVersion] {
		return true
	}
	delete(c.based, k)
	return false
}

// run does the writes, a few at a time.
func (c *Controller) run(writes []func()) {
	sem := make(chan struct{}, c.o.Writers)
	var wg sync.WaitGroup
	for _, w := range writes {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w()
		}()
	}
	wg.Wait()
}
