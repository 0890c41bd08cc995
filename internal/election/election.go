// Package election elects one owner for a VIP through a coordination.k8s.io
// Lease, and fences the owner locally.
//
// It is a small elector of its own rather than client-go's leaderelection,
// because client-go releases the Lease before OnStoppedLeading runs: another
// node could take the VIP while this one still has it (invariant S3). Here
// the Guard's Drop always returns before the Lease is released.
//
// Safety limits, stated plainly:
//
//   - The holder measures its renew deadline on the local monotonic clock
//     from the start of its last successful renewal. When it passes, Drop is
//     called even if a renewal call is still hanging (S5).
//   - A follower takes over only when the holder released the Lease, or when
//     the Lease it observed has not changed for the Lease's duration measured
//     from the moment it observed it; the takeover write carries the observed
//     resourceVersion, so a renewal it did not see makes the write fail.
//   - A deleted Lease counts as an observation of its last holder: followers
//     wait a whole lease duration from the deletion (S8), since the holder
//     may still hold the VIP (kubectl delete lease during a partition).
//   - Any answer to a write started before this node's latest release is
//     ignored, and a holder writes only on a version that names it; one
//     that names another node is read again (quorum read) first.
//   - This is only safe if leaseDuration >= renewDeadline + FenceMargin and
//     the clocks of the nodes run at about the same rate. Wall clocks need
//     not agree: no timestamp in the Lease is compared with the local clock.
package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/lease"
)

// VIPAnnotation on the Lease records the VIP its holder serves, for
// `vipd status` (kube-vip's Leases carry none; it is informational).
const VIPAnnotation = lease.VIP

// InstanceAnnotation on the Lease is a token of the process that wrote it:
// two processes with one identity (two hosts with the same host name and
// no vip_nodename) must not both take it for theirs.
const InstanceAnnotation = lease.Instance

// HandoverAnnotation on the Lease: its holder's Node is cordoned (kubectl
// cordon, kubectl drain), and it asks another node to take the Lease over.
const HandoverAnnotation = lease.Handover

// SuccessorAnnotation on the Lease: a node that may hold it (gate open, its
// Node not cordoned) offers to take it over. The holder then steps down and
// releases it (S3), and followers, watching, acquire it at once; without
// an offer (no other candidate) the holder keeps it.
const SuccessorAnnotation = lease.Successor

// FenceMargin is the least time by which the lease duration must exceed
// the renew deadline. The kernel keeps lifetimes in whole seconds (vipd
// rounds down, which costs nothing) but removes an expired address up to
// about 1 s late when other addresses were refreshed just before (measured:
// 7-376 ms on a quiet host, 905-914 ms while vipd refreshes other VIPs);
// the second second is the margin for that measurement, scheduling and
// clock-rate differences between nodes.
const FenceMargin = 2 * time.Second

// WarnAfter is how many failed reads of the Lease in a row are logged as
// a warning (fewer: at debug level only).
const WarnAfter = 3

// ShutdownBudget bounds the Lease release on shutdown (after Drop).
const ShutdownBudget = 800 * time.Millisecond

// Guard is the work a holder does while it owns the Lease.
type Guard interface {
	// Hold is called after every successful acquire or renewal with the
	// monotonic instant until which this node may act as owner.
	Hold(until time.Time)
	// Drop stops all owner activity and returns only once it has stopped.
	Drop(reason string)
}

// Gate says whether this node may hold or compete for the Lease right now
// (health.Gate: the local API server is ready).
type Gate interface {
	Open() bool
	// Changed receives a value after every change of Open.
	Changed() <-chan struct{}
}

// Standby says whether this node should leave the Lease to others: its
// Node is cordoned (kubectl cordon, kubectl drain evicts only after it).
type Standby interface {
	Standing() bool
	// Changed receives a value after every change of Standing.
	Changed() <-chan struct{}
}

// Recorder receives what metrics need; every method must be cheap.
type Recorder interface {
	SetLeader(bool)
	Transition()
	RenewFailure()
}

// Timing is an election's three durations (the seed's vip_leaseduration,
// vip_renewdeadline and vip_retryperiod; New checks the rules between them).
type Timing struct {
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Options configure an Elector.
type Options struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	Identity  string
	Timing
	Guard Guard
	// Annotations, if set, returns annotations written on the Lease with
	// every acquire and renewal (called from API goroutines).
	Annotations func() map[string]string
	// Gate, if set, keeps this node out of the election while closed; a
	// holder whose gate closes steps down and releases the Lease (the
	// reason logged is the Gate's Why() string, if it has that method).
	Gate Gate
	// FreshClient, if set, returns a client on new connections. It is used
	// to release the Lease when the gate closes: the connections of Client
	// may lead to the very API server that just failed.
	FreshClient func() (kubernetes.Interface, error)
	Recorder    Recorder
	Clock       clock.Clock
	Logger      *slog.Logger
	// Finalizer, if set, is put on the Lease whenever this node writes it,
	// so that deleting the Lease (kubectl delete lease) cannot erase what
	// it records while its holder may still act on it: the Lease stays,
	// marked for deletion, until its holder has stepped down and released
	// it, or until its holder's fence has provably passed (a follower saw
	// it unchanged for its duration); only then is the finalizer taken off
	// and the deletion completes. Nobody renews or takes over a Lease
	// marked for deletion; the next attempt after it is gone creates it
	// anew.
	Finalizer string
	// Standby, if set, makes this node a candidate of last resort while it
	// stands by: a holder asks for a successor on the Lease
	// (HandoverAnnotation) and hands the Lease over as soon as one offers
	// (SuccessorAnnotation); a follower never offers, and takes a released
	// or absent Lease only once it has been so for a lease duration, so
	// that any node not standing by gets it first. A holder no other node
	// offers to relieve keeps the Lease (a single node, all cordoned).
	Standby Standby
	// ColdStart, if set, is called before this node creates or takes
	// the Lease when it has never seen it held (a cold start: no known
	// vipd holder, so the wire is asked first); an error stops the write,
	// and the next try comes a retry period later. A takeover from a
	// holder it saw (a release, an expiry) never calls it.
	ColdStart func(context.Context) error
	// Instance is this process's token (InstanceAnnotation, SealAnnotation),
	// the same for every elector of one process (NewInstance); empty: one
	// of its own.
	Instance string
	// OnEdited, if set, is told (from the loop: it must not block) when a
	// version of the Lease that its holder did not write was seen (S9),
	// with the fields someone else changed and whether this node held the
	// Lease then (and so stepped down).
	OnEdited func(what string, held bool)
}

// EditedReason begins the reason a holder gives its Guard's Drop when it
// saw its Lease changed by someone else (S9): its fence did not pass.
const EditedReason = "the Lease was changed by someone other than its holder"

// EditedAnnotation on a Lease says when its holder last saw it changed by
// someone else, and what was changed (for vipd status).
const EditedAnnotation = lease.Edited

// NewInstance returns a new process token (Options.Instance).
func NewInstance() string {
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	return hex.EncodeToString(tok[:])
}

// Elector runs one election.
type Elector struct {
	o      Options
	log    *slog.Logger
	synced atomic.Bool
	// unread is why the Lease could not be read, and since when, while
	// it cannot (for Ready).
	unread atomic.Pointer[readFailure]
	renew  chan struct{}
	// renews counts Renew calls: a write whose annotations were made after
	// the nth call covers the first n (result.covers).
	renews atomic.Uint64
	// token tells this process's writes from another's under the same
	// identity (InstanceAnnotation).
	token  string
	warned atomic.Pointer[string]
	// seq numbers this process's writes of the Lease (SealAnnotation).
	seq atomic.Uint64
	// edited is the last change of the Lease by someone else (Edited).
	edited atomic.Pointer[Edit]
}

// Edit is a change of the Lease that its holder did not write (S9).
type Edit struct {
	What string    // the fields changed, in words
	At   time.Time // when this node saw it (wall clock)
	Held bool      // this node held the Lease then, and stepped down
}

// Edited returns the last change of the Lease by someone other than its
// holder that this node saw (nil: none).
func (e *Elector) Edited() *Edit { return e.edited.Load() }

// Token is this process's token (InstanceAnnotation).
func (e *Elector) Token() string { return e.token }

// Renew asks a holder to renew now rather than at its next retry period,
// so that what Annotations returns reaches the Lease at once (a new VIP
// is published before it is added). It never blocks; a follower ignores it.
func (e *Elector) Renew() {
	e.renews.Add(1)
	select {
	case e.renew <- struct{}{}:
	default:
	}
}

// Ready reports an error until the Lease has been read from the API server
// once.
func (e *Elector) Ready() error {
	if !e.synced.Load() {
		if f := e.unread.Load(); f != nil {
			return fmt.Errorf("the Lease %s/%s has not been read from the API server yet: cannot read it for %s: %w", e.o.Namespace, e.o.Name, e.o.Clock.Since(f.since).Round(time.Second), f.err)
		}
		return fmt.Errorf("the Lease %s/%s has not been read from the API server yet", e.o.Namespace, e.o.Name)
	}
	return nil
}

type readFailure struct {
	err   error
	since time.Time
}

// New checks every timing rule and returns an Elector.
func New(o Options) (*Elector, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("election: Client is nil")
	case o.Guard == nil:
		return nil, errors.New("election: Guard is nil")
	case o.Name == "" || o.Namespace == "":
		return nil, errors.New("election: Lease namespace and name must be set")
	case o.Identity == "":
		return nil, errors.New("election: Identity (the node name) must be set")
	case o.RetryPeriod <= 0:
		return nil, fmt.Errorf("election: retry period %s must be positive", o.RetryPeriod)
	case o.RenewDeadline <= 2*o.RetryPeriod:
		return nil, fmt.Errorf("election: renew deadline %s must exceed twice the retry period %s", o.RenewDeadline, o.RetryPeriod)
	case o.LeaseDuration < o.RenewDeadline+FenceMargin:
		return nil, fmt.Errorf("election: lease duration %s must exceed the renew deadline %s by at least %s", o.LeaseDuration, o.RenewDeadline, FenceMargin)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Recorder == nil {
		o.Recorder = nopRecorder{}
	}
	if o.Instance == "" {
		o.Instance = NewInstance()
	}
	return &Elector{o: o, log: o.Logger.With("lease", o.Namespace+"/"+o.Name), renew: make(chan struct{}, 1), token: o.Instance}, nil
}

type nopRecorder struct{}

func (nopRecorder) SetLeader(bool) {}
func (nopRecorder) Transition()    {}
func (nopRecorder) RenewFailure()  {}

// observation is a Lease as seen by this process, or its absence.
type observation struct {
	lease *coordinationv1.Lease // nil: the Lease does not exist
	err   error                 // a watch/list failure, for logging
}

// request is one write the loop asks its driver to make.
type request struct {
	base    *coordinationv1.Lease // nil: create
	unknown bool                  // read the Lease first (quorum read); write only if free or ours
	epoch   uint64
	start   time.Time // monotonic start of the call
	timeout time.Duration
	acquire bool // not holding: an acquire (acquireTime is set anew)
	look    bool // with unknown: only read the Lease (a follower standing by)
	cold    bool // never seen the Lease held: ColdStart before a create
	offer   bool // offer to succeed the holder (SuccessorAnnotation), nothing else
	// trust is the loop's Trust when the write started: with unknown, a
	// version read that is newer than base and unfenced is only returned.
	trust Trust
}

// result is the outcome of one attempt.
type result struct {
	lease   *coordinationv1.Lease
	wrote   bool // false: the attempt only read the Lease and found another holder
	created bool // the write created the Lease (it was absent)
	err     error
	start   time.Time // monotonic start of the call
	epoch   uint64    // the loop's epoch when the write started
	offer   bool      // the answer to an offer
	// covers: Elector.renews before the write made its annotations; the
	// renewals asked for until then are in it.
	covers uint64
}

// driver is what the loop needs from the outside world: the API calls and
// the timers. Run provides the real one; tests provide one they step by hand.
type driver interface {
	now() time.Time
	// write starts an attempt; its result comes back through loop.onResult.
	write(r request)
	// release hands the Lease back (fresh: through new connections) and
	// returns when done or given up (bounded by ShutdownBudget).
	release(l *coordinationv1.Lease, fresh bool) error
	// try and fence (re)arm the two timers; d <= 0 means now.
	try(d time.Duration)
	fence(d time.Duration)
	stopFence()
}

// state is owned by the loop; nothing else touches it.
type state struct {
	leading  bool
	deadline time.Time // leading: start of last successful renewal + renew deadline
	// observed is the newest version of the Lease seen. With deleted, it is
	// the last version before the Lease was deleted: a deletion counts as an
	// observation of its last holder, who may still hold the VIP.
	observed   *coordinationv1.Lease
	deleted    bool
	observedAt time.Time // when observed last changed
	known      bool      // observed is meaningful (a list, watch or write answered)
	sawHolder  bool      // some version seen named a holder (no cold start)
	inflight   bool
	again      bool   // a renewal was asked for while a write was in flight
	againAt    uint64 // with again: the requests the next write must cover (renewCovering)
	covered    uint64 // result.covers of the last successful write
	// epoch counts releases. A write started before the latest release
	// carries an older epoch, and its answer is ignored: it must not make
	// this node holder again after it gave the Lease away.
	epoch uint64
	// trust classifies the versions observed (S9). trusted is the newest
	// version its holder wrote; while observed is unfenced (foreign says
	// what someone else changed), trusted counts as the Lease from
	// foreignAt, when this node first saw that version, as the last
	// version of a deleted Lease does.
	trust     Trust
	trusted   *coordinationv1.Lease
	foreign   string
	foreignAt time.Time
	// trustedLast: every unfenced version since foreignAt names trusted
	// as its holder's last write (LastWrite); else this node missed
	// writes (a relist, a read past a lagging watch) and does not know
	// what its holder last wrote.
	trustedLast bool
}

// loop is the election's state machine. Each handler is called from one
// goroutine (Run's, or a test's), in the order the events arrive.
type loop struct {
	e *Elector
	d driver
	s state
}

func (l *loop) stepDown(reason string) {
	l.e.o.Guard.Drop(reason)
	if l.s.leading {
		l.s.leading = false
		l.e.o.Recorder.SetLeader(false)
		l.e.log.Warn("stepped down", "reason", reason)
	}
	l.d.stopFence()
}

// release gives the Lease back after the guard dropped (S3). Every write
// started before it is void from now on.
func (l *loop) release(base *coordinationv1.Lease, fresh bool) {
	l.s.epoch++
	if err := l.d.release(base, fresh); err != nil {
		l.e.log.Warn("could not release the Lease; followers take over when it expires", "err", err)
	}
	l.s.known = false
}

// launch starts a write unless one is in flight.
func (l *loop) launch() {
	s := &l.s
	if s.inflight {
		return
	}
	if !s.leading && !l.e.mayAcquire(s) {
		l.offer()
		return
	}
	start := l.d.now()
	r := request{base: s.observed, unknown: !s.known, epoch: s.epoch, start: start, timeout: l.e.o.RenewDeadline, acquire: !s.leading, trust: s.trust.Clone()}
	// A follower standing by only reads: a free Lease goes to a node that
	// does not stand by first (nextTry).
	r.look = r.unknown && !s.leading && l.e.standing()
	r.cold = !s.leading && !s.sawHolder
	if s.deleted {
		r.base = nil
	}
	if s.leading {
		r.timeout = s.deadline.Sub(start)
		// A leader writes only on a version that names it: one that names
		// another node (or none) is read again first, never written over.
		if !l.e.mine(s.observed) {
			r.unknown = true
		}
	}
	s.inflight = true
	l.d.write(r)
}

// offer asks to relieve a holder whose Node is cordoned, if this node may
// hold the Lease and nobody offered yet. The holder answers by stepping
// down and releasing the Lease (handOver).
func (l *loop) offer() {
	s, e := &l.s, l.e
	o := s.observed
	if s.inflight || s.leading || !s.known || s.deleted || o == nil || e.standing() || !e.gateOpen() ||
		holder(o) == "" || holder(o) == e.o.Identity || e.deleting(o) ||
		o.Annotations[HandoverAnnotation] == "" || o.Annotations[SuccessorAnnotation] != "" {
		return
	}
	s.inflight = true
	l.d.write(request{base: o, offer: true, epoch: s.epoch, start: l.d.now(), timeout: e.o.RenewDeadline})
}

// handOver steps down and releases the Lease (S3) when this node stands by
// and another node offered to take it over. It reports whether it did.
func (l *loop) handOver() bool {
	s, e := &l.s, l.e
	if !s.leading || !e.standing() || s.observed == nil {
		return false
	}
	succ := s.observed.Annotations[SuccessorAnnotation]
	if succ == "" || succ == e.o.Identity {
		return false
	}
	l.stepDown(fmt.Sprintf("this Node is cordoned and %s offered to take the Lease over", succ))
	l.release(s.observed, false)
	l.d.try(e.nextTry(s))
	return true
}

// onStandby is a change of Options.Standby (the Node cordoned or not).
func (l *loop) onStandby() {
	s, e := &l.s, l.e
	switch {
	case s.leading && e.standing():
		e.log.Info("this Node is cordoned: asking another node to take the Lease over; it keeps the Lease until one offers (none does if every other candidate is cordoned or not running)")
		l.onRenew()
	case s.leading:
		e.log.Info("this Node is no longer cordoned: keeping the Lease")
		l.onRenew()
	case !e.standing():
		l.d.try(e.nextTry(s))
	}
}

// onTry is the try timer: renew, or try to acquire.
func (l *loop) onTry() {
	if !l.s.leading && !l.e.gateOpen() {
		return // the gate's next change schedules the next try
	}
	l.launch()
	if l.s.leading {
		l.d.try(l.e.o.RetryPeriod)
	} else if !l.s.inflight {
		l.d.try(l.e.nextTry(&l.s))
	}
}

// onRenew renews now (or once the write in flight answered), for the
// loop's own reasons.
func (l *loop) onRenew() { l.renewCovering(math.MaxUint64) }

// onAsked is Elector.Renew's request.
func (l *loop) onAsked() {
	n := l.e.renews.Load()
	if !l.s.inflight && n <= l.s.covered {
		// Asked for while the last write was in flight, after it made its
		// annotations: it wrote what was asked for. (A burst of changes,
		// such as a pass that places twelve addresses, asks once per change;
		// a second write of the same annotations cost every node a watch
		// event and the claimant another quorum read, in a planned move.)
		return
	}
	l.renewCovering(n)
}

// renewCovering renews now, or after the write in flight unless that one
// covers the first n requests (result.covers).
func (l *loop) renewCovering(n uint64) {
	if !l.s.leading {
		return
	}
	if l.s.inflight {
		l.s.again, l.s.againAt = true, max(l.s.againAt, n)
		return
	}
	l.onTry()
}

// onGate is a change of the health gate.
func (l *loop) onGate() {
	if l.e.gateOpen() {
		l.d.try(l.e.nextTry(&l.s))
		return
	}
	// Release also when the fence already dropped the VIP but the Lease
	// still names this node: followers need not wait for it to expire.
	if l.s.leading || l.e.mine(l.s.observed) && !l.s.deleted {
		l.stepDown(l.e.gateWhy())
		l.release(l.s.observed, true)
	}
}

// onObserve is a version of the Lease (nil: absent) from the list or watch.
func (l *loop) onObserve(lease *coordinationv1.Lease) {
	l.e.observe(&l.s, lease)
	if l.finish() {
		return
	}
	// A holder does not step down on a watch event alone: the event may be
	// older than its own last write (the first List can answer "absent"
	// after our create). A fresh quorum read decides; until then the fence
	// keeps it safe.
	if l.s.leading {
		if l.s.foreign != "" {
			l.stepDownEdited()
			return
		}
		if !l.e.mine(l.s.observed) || l.s.deleted {
			l.s.known = false
			l.d.try(0)
			return
		}
		l.handOver()
		return
	}
	l.d.try(l.e.nextTry(&l.s))
	l.offer()
}

// stepDownEdited: the holder saw a version of its Lease that it did not
// write (S9). Someone else cleared its holder, rewrote what it holds,
// shortened it or wrote an old copy back; other nodes may take that for a
// release. It stops announcing and removes what it holds (S3) before it
// competes again: the claimants count it as holder for a lease duration
// from the change, so it takes the Lease back first.
func (l *loop) stepDownEdited() {
	l.stepDown(EditedReason + " (" + l.s.foreign + ")")
	l.d.try(l.e.nextTry(&l.s))
}

// finish handles a Lease marked for deletion (with Options.Finalizer): a
// holder steps down and releases it, taking the finalizer off (S3: the VIP
// is gone first); a follower takes the finalizer off once the holder has
// released it or the holder's fence has provably passed. The deletion then
// completes, and the next attempt creates the Lease anew. It reports
// whether the Lease is marked for deletion.
func (l *loop) finish() bool {
	s, e := &l.s, l.e
	if !e.deleting(s.observed) {
		return false
	}
	if s.leading {
		l.stepDown("the Lease is being deleted (kubectl delete lease): giving it up; a new one is created once it is gone")
	}
	if left := e.nextTry(s); left > 0 && !e.mine(s.observed) {
		l.d.try(left) // its holder may still act on it
		return true
	}
	l.release(s.observed, false)
	l.d.try(e.o.RetryPeriod / 4)
	return true
}

// deleting reports whether l is marked for deletion and carries this
// elector's finalizer.
func (e *Elector) deleting(l *coordinationv1.Lease) bool {
	return e.o.Finalizer != "" && l != nil && l.DeletionTimestamp != nil && slices.Contains(l.Finalizers, e.o.Finalizer)
}

// onFence is the fence timer: no successful renewal within the deadline.
func (l *loop) onFence() {
	if l.s.leading && !l.d.now().Before(l.s.deadline) {
		l.e.o.Recorder.RenewFailure()
		l.stepDown(fmt.Sprintf("no successful renewal within the renew deadline (%s)", l.e.o.RenewDeadline))
		l.d.try(l.e.o.RetryPeriod)
	}
}

// onResult is the answer to a write.
func (l *loop) onResult(r result) {
	s, e := &l.s, l.e
	s.inflight = false
	if r.offer {
		l.onOffered(r)
		return
	}
	if r.epoch != s.epoch {
		// Started before a release: whatever it says is void. The next try
		// reads the Lease afresh.
		s.known = false
		l.d.try(e.nextTry(s))
		return
	}
	if r.err == nil && e.deleting(r.lease) {
		e.observe(s, r.lease)
		l.finish()
		return
	}
	switch {
	case r.err == nil && !r.wrote:
		e.observe(s, r.lease)
		if s.leading && s.foreign != "" {
			l.stepDownEdited()
			return
		}
		if s.leading {
			l.stepDown(fmt.Sprintf("Lease now held by %q", holder(r.lease)))
		}
		l.d.try(e.nextTry(s))
	case r.err == nil && !s.leading && !e.gateOpen():
		// Acquired while the gate closed: give it back at once.
		e.observe(s, r.lease)
		l.release(r.lease, false)
	case r.err == nil:
		l.onWritten(r)
	case apierrors.IsConflict(r.err) || apierrors.IsAlreadyExists(r.err) || apierrors.IsNotFound(r.err):
		// Someone wrote since we looked: the next attempt starts with a
		// fresh quorum read, and writes only if the rule still allows.
		e.log.Debug("lease write lost a race", "err", r.err)
		s.known = false
		l.d.try(0)
	default:
		l.onFailed(r)
	}
}

// onOffered is the answer to an offer to take the Lease over (its
// holder's Node is cordoned).
func (l *loop) onOffered(r result) {
	s, e := &l.s, l.e
	if r.err == nil {
		e.observe(s, r.lease)
		e.log.Info("offered to take the Lease over: its holder's Node is cordoned", "holder", holder(r.lease))
	} else {
		e.log.Debug("offer to take the Lease over failed; the next version of the Lease decides", "err", r.err)
	}
	l.d.try(e.nextTry(s))
}

// onWritten is a successful acquire or renewal: the fence moves to the
// write's start + renew deadline, unless the answer came after it.
func (l *loop) onWritten(r result) {
	s, e := &l.s, l.e
	e.observe(s, r.lease)
	if s.leading && r.created {
		// The Lease was deleted under a holder: what it recorded (the
		// Service VIPs it holds) was gone meanwhile, and another node may
		// have claimed one. Step down, so every claim starts over.
		l.stepDown("the Lease was deleted; created it again")
	}
	deadline := r.start.Add(e.o.RenewDeadline)
	if !l.d.now().Before(deadline) {
		// The answer came too late to count (the fence handles a
		// holder); the Lease names this node, so try again at once.
		l.d.try(0)
		return
	}
	if !s.leading {
		s.leading = true
		e.o.Recorder.SetLeader(true)
		e.o.Recorder.Transition()
		e.log.Info("acquired Lease", "identity", e.o.Identity)
	}
	s.deadline, s.covered = deadline, max(s.covered, r.covers)
	e.o.Guard.Hold(deadline)
	l.d.fence(deadline.Sub(l.d.now()))
	if l.handOver() {
		return
	}
	again := s.again && r.covers < s.againAt
	s.again, s.againAt = false, 0
	if again {
		l.d.try(0)
		return
	}
	l.d.try(r.start.Add(e.o.RetryPeriod).Sub(l.d.now()))
}

// onFailed is a write that failed for another reason than a race.
func (l *loop) onFailed(r result) {
	s, e := &l.s, l.e
	if !s.leading {
		e.log.Debug("acquire failed", "err", r.err)
		l.d.try(e.o.RetryPeriod)
		return
	}
	e.o.Recorder.RenewFailure()
	e.log.Warn("renewal failed", "err", r.err, "fenceIn", s.deadline.Sub(l.d.now()).Round(time.Millisecond))
	if d := s.deadline.Sub(l.d.now()); d > 0 {
		l.d.try(min(e.o.RetryPeriod/4, d))
	}
}

// onShutdown steps down and, if this node may hold the Lease, releases it.
// pending is the answer to the write in flight, if it came in time.
func (l *loop) onShutdown(pending *result) {
	wasLeading := l.s.leading
	l.stepDown("shutting down")
	mayHold := wasLeading || l.e.mine(l.s.observed) && !l.s.deleted
	if l.s.inflight {
		// An acquire or renewal may have committed: release unless it
		// provably did not (its answer says another node holds the Lease).
		mayHold = true
		if pending != nil && pending.err == nil {
			l.s.observed, l.s.deleted = pending.lease, false
			mayHold = l.e.mine(pending.lease)
		}
		l.s.inflight = false
	}
	if mayHold {
		l.release(l.s.observed, false)
	}
}

// Run takes part in the election until ctx ends. On the way out, if it
// may hold the Lease, it calls Drop and then releases the Lease so another
// node can take over at once.
func (e *Elector) Run(ctx context.Context) error {
	clk := e.o.Clock
	obsCh := make(chan observation, 16)
	resCh := make(chan result, 1)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go e.watch(watchCtx, obsCh)

	d := &runDriver{e: e, res: resCh, tryNow: make(chan struct{}, 1)}
	d.tryT = clk.NewTimer(time.Hour)
	d.tryT.Stop()
	d.fenceT = clk.NewTimer(time.Hour)
	d.fenceT.Stop()
	l := &loop{e: e, d: d}

	var gateChanged <-chan struct{}
	if e.o.Gate != nil {
		gateChanged = e.o.Gate.Changed()
	}
	var standbyChanged <-chan struct{}
	if e.o.Standby != nil {
		standbyChanged = e.o.Standby.Changed()
	}
	d.try(0)
	for {
		select {
		case <-ctx.Done():
			var pending *result
			if l.s.inflight {
				// Wait (bounded) for the write in flight: an acquire that lands
				// after we left would name a departed node for a lease duration.
				t := clk.NewTimer(ShutdownBudget / 4)
				select {
				case r := <-resCh:
					pending = &r
				case <-t.C():
				}
				t.Stop()
			}
			l.onShutdown(pending)
			return nil
		case <-gateChanged:
			l.onGate()
		case <-e.renew:
			l.onAsked()
		case <-standbyChanged:
			l.onStandby()
		case o := <-obsCh:
			if o.err != nil {
				e.log.Debug("lease watch", "err", o.err)
				continue
			}
			l.onObserve(o.lease)
		case <-d.tryNow:
			d.tryT.Stop()
			l.onTry()
		case <-d.tryT.C():
			l.onTry()
		case <-d.fenceT.C():
			l.onFence()
		case r := <-resCh:
			l.onResult(r)
		}
	}
}

// runDriver is the production driver: API calls in goroutines, timers on
// the Elector's clock.
type runDriver struct {
	e            *Elector
	res          chan result
	tryT, fenceT clock.Timer
	// tryNow triggers the try case without a timer: a zero-length timer is
	// not a "now" on every clock.
	tryNow chan struct{}
}

func (d *runDriver) now() time.Time { return d.e.o.Clock.Now() }

func (d *runDriver) write(r request) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		defer cancel()
		if r.offer {
			l, err := d.e.o.Client.CoordinationV1().Leases(d.e.o.Namespace).Update(ctx, d.e.offered(r.base), metav1.UpdateOptions{})
			d.res <- result{lease: l, err: err, start: r.start, epoch: r.epoch, offer: true}
			return
		}
		covers := d.e.renews.Load() // before attempt makes the annotations
		l, created, wrote, err := d.e.attempt(ctx, r)
		d.e.log.Debug("lease write", "wrote", wrote, "err", err, "took", d.now().Sub(r.start))
		d.res <- result{lease: l, wrote: wrote, created: created, err: err, start: r.start, epoch: r.epoch, covers: covers}
	}()
}

func (d *runDriver) release(l *coordinationv1.Lease, fresh bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), ShutdownBudget)
	defer cancel()
	if fresh {
		return d.e.releaseFresh(ctx, l)
	}
	return d.e.release(ctx, l)
}

func (d *runDriver) try(dur time.Duration) {
	d.tryT.Stop()
	if dur > 0 {
		d.tryT.Reset(dur)
		return
	}
	select {
	case d.tryNow <- struct{}{}:
	default:
	}
}

func (d *runDriver) fence(dur time.Duration) {
	d.fenceT.Stop()
	d.fenceT.Reset(max(dur, 0))
}

func (d *runDriver) stopFence() { d.fenceT.Stop() }

// observe records l (nil: the Lease is absent) as the latest known state
// of the Lease. Absence after a version with a holder is a deletion: the
// last version is kept, marked deleted, and followers wait a whole lease
// duration from now, since its holder may still hold the VIP (S8).
func (e *Elector) observe(s *state, l *coordinationv1.Lease) {
	now := e.o.Clock.Now()
	if l == nil {
		if s.known && (s.observed == nil || s.deleted) {
			return
		}
		if s.observed != nil && holder(s.observed) != "" && !e.deleting(s.observed) {
			// (Deleted through the finalizer: its holder let go, or its
			// fence passed, before the finalizer came off.)
			if !s.deleted {
				s.deleted, s.observedAt = true, now
			}
		} else {
			s.observed, s.deleted, s.observedAt = nil, false, now
		}
		s.known = true
		e.synced.Store(true)
		return
	}
	if s.known && !s.deleted && rv(s.observed) == rv(l) {
		return
	}
	if older(l, s.observed) {
		return // a version older than one we saw is stale
	}
	if why := s.trust.Check(l); why == "" {
		s.trusted, s.foreign = l, ""
	} else if rv(l) != rv(s.observed) || s.foreign == "" {
		if s.foreign == "" {
			s.foreignAt, s.trustedLast = now, true
		}
		s.trustedLast = s.trustedLast && s.trusted != nil && LastWrite(ReadSeal(l), ReadSeal(s.trusted))
		s.foreign = why
		e.sawEdit(why, s.leading)
	}
	s.observed, s.deleted, s.observedAt, s.known = l, false, now, true
	s.sawHolder = s.sawHolder || holder(l) != ""
	e.synced.Store(true)
}

// sawEdit records and reports a version of the Lease that its holder did
// not write.
func (e *Elector) sawEdit(what string, held bool) {
	e.edited.Store(&Edit{What: what, At: time.Now(), Held: held})
	e.log.Warn("the Lease was changed by someone other than its holder: a claimant counts its last holder for a lease duration from now; "+
		"only vipd should write vipd's Leases (check who may update Leases in this namespace: vipd doctor)", "changed", what, "held", held)
	if e.o.OnEdited != nil {
		e.o.OnEdited(what, held)
	}
}

// older reports whether a is an earlier version of the Lease than b. A watch
// can deliver an event older than the answer to our own write; going back to
// it would only cost a conflict, but there is no need. Versions of one
// object compare as integers (KEP-5504); when they do not parse, nothing is
// older.
func older(a, b *coordinationv1.Lease) bool {
	if a == nil || b == nil {
		return false
	}
	c, err := resourceversion.CompareResourceVersion(a.ResourceVersion, b.ResourceVersion)
	return err == nil && c < 0
}

// mayAcquire is the follower's rule: the gate is open, and the Lease is
// absent, released, ours, or unchanged for its whole duration since we
// observed it.
func (e *Elector) mayAcquire(s *state) bool {
	return e.gateOpen() && e.nextTry(s) == 0
}

// gateWhy is why a holder whose gate closed steps down: the Gate's Why,
// if it has one (health.Gate: the local API server).
func (e *Elector) gateWhy() string {
	if w, ok := e.o.Gate.(interface{ Why() string }); ok {
		return w.Why()
	}
	return "local API server not ready (health gate closed)"
}

// gateOpen reports whether the gate (if any) lets this node compete.
func (e *Elector) gateOpen() bool {
	return e.o.Gate == nil || e.o.Gate.Open()
}

// standing reports whether this node stands by (Options.Standby).
func (e *Elector) standing() bool {
	return e.o.Standby != nil && e.o.Standby.Standing()
}

// nextTry is how long a follower waits before trying to acquire.
func (e *Elector) nextTry(s *state) time.Duration {
	l := s.observed
	if !s.known {
		return 0 // unknown: a quorum read decides
	}
	if s.foreign != "" && !s.deleted {
		return e.afterEdit(s)
	}
	if l == nil || holder(l) == "" {
		// Absent or released: free, but a node standing by leaves it to
		// the others for a lease duration.
		if !e.standing() {
			return 0
		}
		return max(s.observedAt.Add(e.o.LeaseDuration).Sub(e.o.Clock.Now()), 0)
	}
	if e.mine(l) {
		return 0
	}
	e.duplicate(l)
	d := e.o.LeaseDuration
	if l.Spec.LeaseDurationSeconds != nil && *l.Spec.LeaseDurationSeconds > 0 {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	left := s.observedAt.Add(d).Sub(e.o.Clock.Now())
	if left < 0 {
		return 0
	}
	return left
}

// afterEdit is nextTry while the observed version is unfenced (S9): the
// last version its holder wrote counts, from when the change was seen, as
// a deleted Lease's last version does. Never having seen one, this node
// counts the Lease as held for a lease duration; so it does when the
// change names a write of the holder it never saw.
func (e *Elector) afterEdit(s *state) time.Duration {
	t := s.trusted
	switch {
	case t != nil && e.mine(t):
		return 0 // its holder, which stepped down (stepDownEdited)
	case !s.trustedLast:
		t = nil
	case holder(t) == "":
		return 0
	}
	d := e.o.LeaseDuration
	if t != nil && t.Spec.LeaseDurationSeconds != nil && *t.Spec.LeaseDurationSeconds > 0 {
		d = max(d, time.Duration(*t.Spec.LeaseDurationSeconds)*time.Second)
	}
	return max(s.foreignAt.Add(d).Sub(e.o.Clock.Now()), 0)
}

// attempt creates the Lease (absent), or updates it with this node as
// holder. The update carries base's resourceVersion, so it fails if anything
// changed since base was read. With unknown, base is read first (a quorum
// read), and a Lease held by another node is only returned, not written.
// created reports that the write created the Lease.
func (e *Elector) attempt(ctx context.Context, r request) (l *coordinationv1.Lease, created, wrote bool, err error) {
	base := r.base
	if r.unknown {
		l, err := e.get(ctx)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, false, false, err
		}
		if h := holder(l); h != "" && !e.mine(l) || e.deleting(l) || r.look {
			return l, false, false, nil
		}
		if l != nil && rv(l) != rv(r.base) && r.trust.Check(l) != "" {
			return l, false, false, nil // unfenced, and the loop has not seen it: it decides (S9)
		}
		base = l
	}
	if e.deleting(base) {
		return base, false, false, nil
	}
	if r.cold && holder(base) == "" && e.o.ColdStart != nil {
		if err := e.o.ColdStart(ctx); err != nil {
			return nil, false, false, err
		}
	}
	l, err = e.write(ctx, base, r.acquire)
	return l, base == nil && err == nil, err == nil, err
}

// write creates the Lease (base nil) or updates base with this node as
// holder. acquireTime is set when the holder changes, and on every acquire
// (a restarted process holds it anew: renewTime - acquireTime is how long
// this process has held it).
func (e *Elector) write(ctx context.Context, base *coordinationv1.Lease, acquire bool) (*coordinationv1.Lease, error) {
	leases := e.o.Client.CoordinationV1().Leases(e.o.Namespace)
	l := e.written(base, acquire, time.Now())
	if base == nil {
		return leases.Create(ctx, l, metav1.CreateOptions{})
	}
	return leases.Update(ctx, l, metav1.UpdateOptions{})
}

// written is the Lease that write sends: base (nil: a new Lease) with this
// node as holder.
func (e *Elector) written(base *coordinationv1.Lease, acquire bool, at time.Time) *coordinationv1.Lease {
	now := metav1.NewMicroTime(at)
	dur := ptr.To(int32(e.o.LeaseDuration / time.Second))
	if base == nil {
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: e.o.Name, Namespace: e.o.Namespace, Annotations: e.annotations(), Finalizers: e.finalizers()},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: ptr.To(e.o.Identity), LeaseDurationSeconds: dur,
				AcquireTime: &now, RenewTime: &now, LeaseTransitions: ptr.To(int32(0)),
			},
		}
		e.handover(l, true)
		e.seal(l)
		return l
	}
	l := base.DeepCopy()
	if e.o.Finalizer != "" && l.DeletionTimestamp == nil && !slices.Contains(l.Finalizers, e.o.Finalizer) {
		l.Finalizers = append(l.Finalizers, e.o.Finalizer)
	}
	for k, v := range e.annotations() {
		if l.Annotations[k] != v {
			if l.Annotations == nil {
				l.Annotations = map[string]string{}
			}
			l.Annotations[k] = v
		}
	}
	if acquire {
		l.Spec.AcquireTime = &now
	}
	if !e.mine(l) {
		l.Spec.AcquireTime = &now
		t := int32(0)
		if l.Spec.LeaseTransitions != nil {
			t = *l.Spec.LeaseTransitions
		}
		if holder(l) != "" || t > 0 {
			t++
		}
		l.Spec.LeaseTransitions = &t
	}
	e.handover(l, acquire || !e.mine(l))
	l.Spec.HolderIdentity = ptr.To(e.o.Identity)
	l.Spec.LeaseDurationSeconds = dur
	l.Spec.RenewTime = &now
	e.seal(l)
	return l
}

// seal writes l's SealAnnotation for this process's next write.
func (e *Elector) seal(l *coordinationv1.Lease) {
	WriteSeal(l, e.token, e.seq.Add(1))
}

// handover sets the handover annotations of a Lease this node writes as
// holder: asking for a successor while it stands by, keeping an offer
// only while it still asks and holds on.
func (e *Elector) handover(l *coordinationv1.Lease, acquire bool) {
	if e.standing() {
		if l.Annotations == nil {
			l.Annotations = map[string]string{}
		}
		l.Annotations[HandoverAnnotation] = "cordoned"
	} else {
		delete(l.Annotations, HandoverAnnotation)
	}
	if acquire || !e.standing() {
		delete(l.Annotations, SuccessorAnnotation)
	}
}

// offered is base with this node's offer to succeed its holder.
func (e *Elector) offered(base *coordinationv1.Lease) *coordinationv1.Lease {
	l := base.DeepCopy()
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[SuccessorAnnotation] = e.o.Identity
	return l
}

// released is l given back: no holder, duration 1 s, no handover asked,
// sealed by this process (a release only counts when its holder wrote it).
func (e *Elector) released(l *coordinationv1.Lease, at time.Time) *coordinationv1.Lease {
	l = l.DeepCopy()
	now := metav1.NewMicroTime(at)
	l.Spec.HolderIdentity = ptr.To("")
	l.Spec.LeaseDurationSeconds = ptr.To(int32(1))
	l.Spec.RenewTime = &now
	delete(l.Annotations, HandoverAnnotation)
	delete(l.Annotations, SuccessorAnnotation)
	e.seal(l)
	return l
}

// releaseFresh releases through FreshClient when there is one.
func (e *Elector) releaseFresh(ctx context.Context, l *coordinationv1.Lease) error {
	if e.o.FreshClient == nil {
		return e.release(ctx, l)
	}
	c, err := e.o.FreshClient()
	if err != nil {
		return err
	}
	return e.releaseWith(ctx, c, l)
}

// release hands the Lease back (holder empty, duration 1 s) so that a
// follower watching it takes over at once. Called only after Drop returned.
func (e *Elector) release(ctx context.Context, l *coordinationv1.Lease) error {
	return e.releaseWith(ctx, e.o.Client, l)
}

func (e *Elector) releaseWith(ctx context.Context, c kubernetes.Interface, l *coordinationv1.Lease) error {
	leases := c.CoordinationV1().Leases(e.o.Namespace)
	if e.deleting(l) {
		return e.unfinalize(ctx, leases, l)
	}
	if l == nil || !e.mine(l) {
		var err error
		if l, err = leases.Get(ctx, e.o.Name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("releasing Lease: %w", err)
		}
		if !e.mine(l) {
			return nil
		}
	}
	_, err := leases.Update(ctx, e.released(l, time.Now()), metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// Renewed by an in-flight write we did not see: read and try once more.
		if l, err = leases.Get(ctx, e.o.Name, metav1.GetOptions{}); err == nil {
			if !e.mine(l) {
				return nil
			}
			return e.releaseWith(ctx, c, l)
		}
	}
	if err != nil {
		return fmt.Errorf("releasing Lease: %w", err)
	}
	e.log.Info("released Lease")
	return nil
}

// unfinalize takes this elector's finalizer off l, which is marked for
// deletion (the deletion then completes), and releases it if this node
// holds it. Called only after Drop returned, or once the holder's fence
// has provably passed.
func (e *Elector) unfinalize(ctx context.Context, leases interface {
	Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error)
	Update(context.Context, *coordinationv1.Lease, metav1.UpdateOptions) (*coordinationv1.Lease, error)
}, l *coordinationv1.Lease) error {
	for range 2 {
		n := l.DeepCopy()
		n.Finalizers = slices.DeleteFunc(n.Finalizers, func(f string) bool { return f == e.o.Finalizer })
		if e.mine(n) {
			n.Spec.HolderIdentity = ptr.To("")
			e.seal(n)
		}
		_, err := leases.Update(ctx, n, metav1.UpdateOptions{})
		switch {
		case err == nil || apierrors.IsNotFound(err):
			e.log.Info("let the Lease be deleted (kubectl delete lease)", "holder", holder(l))
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("letting the Lease be deleted: %w", err)
		}
		// Changed meanwhile: only a node that holds it may have renewed it;
		// take the finalizer off only if that is still right.
		cur, err := leases.Get(ctx, e.o.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("letting the Lease be deleted: %w", err)
		}
		if !e.deleting(cur) || rv(cur) != rv(l) && holder(cur) != "" && !e.mine(cur) {
			return nil // renewed by its holder: the next observation decides
		}
		l = cur
	}
	return nil
}

func (e *Elector) finalizers() []string {
	if e.o.Finalizer == "" {
		return nil
	}
	return []string{e.o.Finalizer}
}

// annotations are what this process writes on the Lease: Options'
// annotations and its instance token.
func (e *Elector) annotations() map[string]string {
	out := map[string]string{InstanceAnnotation: e.token}
	if e.o.Annotations != nil {
		maps.Copy(out, e.o.Annotations())
	}
	if ed := e.edited.Load(); ed != nil && ed.Held {
		out[EditedAnnotation] = ed.At.UTC().Format(time.RFC3339) + " " + ed.What
	}
	return out
}

// mine reports whether l is held by this process: it names this node, and
// it was written by this process (its instance token), or by a process that
// wrote none (kube-vip, an older vipd) under this node's name. A Lease that
// names this node but carries another process's token is another holder's:
// the previous vipd on this node (crashed: it expires within the lease
// duration), or a vipd elsewhere that has the same name.
func (e *Elector) mine(l *coordinationv1.Lease) bool {
	if holder(l) != e.o.Identity {
		return false
	}
	t := l.Annotations[InstanceAnnotation]
	return t == "" || t == e.token
}

// duplicate logs, once per other process, a Lease that names this node but
// was written by another process.
func (e *Elector) duplicate(l *coordinationv1.Lease) {
	t := l.Annotations[InstanceAnnotation]
	if holder(l) != e.o.Identity || t == "" || t == e.token {
		return
	}
	if prev := e.warned.Swap(&t); prev != nil && *prev == t {
		return
	}
	e.log.Warn("the Lease names this node but another vipd process wrote it: this node's previous vipd (it expires within the lease duration), "+
		"or a vipd on another host with the same name. Every node needs its own name: set vip_nodename from spec.nodeName (vipd manifest does) "+
		"or give the hosts distinct host names. This process waits until that Lease is released or expires",
		"identity", e.o.Identity, "otherInstance", t, "thisInstance", e.token)
}

func (e *Elector) get(ctx context.Context) (*coordinationv1.Lease, error) {
	l, err := e.o.Client.CoordinationV1().Leases(e.o.Namespace).Get(ctx, e.o.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// watch lists and watches the one Lease and sends every version it sees.
// The watch is what lets a follower react to a release at once (S6).
func (e *Elector) watch(ctx context.Context, out chan<- observation) {
	leases := e.o.Client.CoordinationV1().Leases(e.o.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", e.o.Name).String()
	send := func(o observation) {
		select {
		case out <- o:
		case <-ctx.Done():
		}
	}
	fails := 0
	for ctx.Err() == nil {
		list, err := leases.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			// Said once a few tries in (not on a single blip), with what the
			// client saw: an unreachable API server, a bad token, RBAC.
			since := e.o.Clock.Now()
			if f := e.unread.Load(); f != nil {
				since = f.since
			}
			e.unread.Store(&readFailure{err: err, since: since})
			if fails++; fails == WarnAfter {
				e.log.Warn("cannot read the Lease from the API server; this node takes no part in the election until it can (retrying every retry period)", "tries", fails, "err", err)
			}
			send(observation{err: err})
			e.sleep(ctx, e.o.RetryPeriod)
			continue
		}
		if fails >= WarnAfter {
			e.log.Info("reading the Lease from the API server again", "failedTries", fails)
		}
		e.unread.Store(nil)
		fails = 0
		if len(list.Items) == 0 {
			send(observation{})
		} else {
			send(observation{lease: &list.Items[0]})
		}
		w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			send(observation{err: err})
			e.sleep(ctx, e.o.RetryPeriod)
			continue
		}
		e.drain(ctx, w, send)
		w.Stop()
	}
}

func (e *Elector) drain(ctx context.Context, w watch.Interface, send func(observation)) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if l, ok := ev.Object.(*coordinationv1.Lease); ok {
					send(observation{lease: l})
				}
			case watch.Deleted:
				send(observation{})
			case watch.Error:
				send(observation{err: apierrors.FromObject(ev.Object)})
				return
			}
		}
	}
}

func (e *Elector) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-e.o.Clock.After(d):
	}
}

func holder(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return lease.Holder(l)
}

func rv(l *coordinationv1.Lease) string {
	if l == nil {
		return ""
	}
	return l.ResourceVersion
}
