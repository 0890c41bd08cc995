package services

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vipd/vipd/internal/election"
	"github.com/vipd/vipd/internal/lease"
	"github.com/vipd/vipd/internal/vip/viptest"
)

// sealedLease is a heartbeat as node's process token writes it: holder,
// duration, renew time and holds, sealed as write seq.
func sealedLease(node, token string, seq uint64, rv, holds string, at time.Time) *coordinationv1.Lease {
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: HeartbeatName(node), ResourceVersion: rv,
			Annotations: map[string]string{HoldsAnnotation: holds}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node), LeaseDurationSeconds: ptr.To(int32(4)),
			RenewTime: &metav1.MicroTime{Time: at}},
	}
	election.WriteSeal(l, token, seq)
	return l
}

// The claim check does not take someone else's change of a Lease for a
// release (S9): a holder cleared, a holds list rewritten, a duration
// shortened or an old copy written back leaves what the holder last wrote
// blocking for a lease duration from the change; the holder's own next
// write counts at once.
func TestClaimCheckIgnoresForeignReleases(t *testing.T) {
	x := netip.MustParseAddr("198.51.100.130")
	t0 := time.Unix(1000, 0)
	me := self{name: "b", token: "tb"}
	for _, c := range []struct {
		name string
		edit func(l *coordinationv1.Lease, old *coordinationv1.Lease)
	}{
		{"holder cleared", func(l, _ *coordinationv1.Lease) { l.Spec.HolderIdentity = nil }},
		{"holds rewritten", func(l, _ *coordinationv1.Lease) { l.Annotations[HoldsAnnotation] = "" }},
		{"duration shortened", func(l, _ *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptr.To(int32(1)) }},
		{"old copy written back", func(l, old *coordinationv1.Lease) { *l = *old.DeepCopy() }},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := leaseView{}
			// An old copy from before a listed x; then a's write listing it.
			old := sealedLease("a", "ta", 1, "9", "", t0.Add(-time.Second))
			v := versionOf(sealedLease("a", "ta", 2, "10", x.String(), t0), 4*time.Second)
			w.saw(versionOf(old, 4*time.Second), t0.Add(-time.Second))
			if blocked, _, _ := w.claimed(me, []leaseVersion{v}, []netip.Addr{x}, t0); blocked[x] == "" {
				t.Fatal("a's own listing does not block")
			}
			edited := sealedLease("a", "ta", 2, "11", x.String(), t0)
			c.edit(edited, old)
			edited.ResourceVersion = "11"
			ev := versionOf(edited, 4*time.Second)
			blocked, _, by := w.claimed(me, []leaseVersion{ev}, []netip.Addr{x}, t0.Add(3*time.Second))
			if blocked[x] == "" {
				t.Fatalf("%s: taken for a release", c.name)
			}
			if w.letGo(x, map[string]string{v.key: "10"}, t0.Add(3*time.Second)) {
				t.Fatalf("%s: letGo on the watch", c.name)
			}
			// A lease duration after the change, a's last own write has run out.
			if blocked, _, _ := w.claimed(me, []leaseVersion{ev}, []netip.Addr{x}, t0.Add(7*time.Second+time.Millisecond)); blocked[x] != "" && c.name != "old copy written back" {
				t.Fatalf("%s: still blocked after the lease duration: %q", c.name, blocked[x])
			}
			_ = by
			// a writes again itself, not listing x: let go at once.
			own := versionOf(sealedLease("a", "ta", 3, "12", "", t0.Add(3*time.Second)), 4*time.Second)
			if blocked, _, _ := w.claimed(me, []leaseVersion{own}, []netip.Addr{x}, t0.Add(3*time.Second)); blocked[x] != "" {
				t.Fatalf("%s: a's own release after the edit still blocks: %q", c.name, blocked[x])
			}
		})
	}
}

// A Lease under this node's name that another process wrote (a host with
// the same name, cloned machines) blocks the claim check like any other
// holder's; this process's own, or one without a token, does not.
func TestClaimCheckCountsASameNamedProcess(t *testing.T) {
	x := netip.MustParseAddr("198.51.100.131")
	t0 := time.Unix(1000, 0)
	me := self{name: "host", token: "mine"}
	for token, want := range map[string]bool{"other": true, "mine": false, "": false} {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "plndr-svcs-lock", ResourceVersion: "5",
			Annotations: map[string]string{HoldsAnnotation: x.String()}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("host"), LeaseDurationSeconds: ptr.To(int32(4))}}
		if token != "" {
			election.WriteSeal(l, token, 1)
		}
		blocked, _, _ := leaseView{}.claimed(me, []leaseVersion{versionOf(l, 4*time.Second)}, []netip.Addr{x}, t0)
		if got := blocked[x] != ""; got != want {
			t.Errorf("token %q: blocked %v, want %v", token, got, want)
		}
	}
}

// Placement counts only what a heartbeat's holder wrote: an edit that
// clears the holder keeps the node live, and one that rewrites the holds
// list gives nobody else its addresses, until a lease duration after it.
// An address listed by two heartbeats goes to the one that listed it first.
func TestPlacementIgnoresEditsAndPrefersTheOlderListing(t *testing.T) {
	x, y := netip.MustParseAddr("198.51.100.132"), netip.MustParseAddr("198.51.100.133")
	t0 := time.Unix(1000, 0)
	v := beatView{}
	obs := func(l *coordinationv1.Lease, at time.Time) {
		v.observe(l.Name, beat{rv: l.ResourceVersion, holder: lease.Holder(l), ready: true, dur: 4 * time.Second, holds: l.Annotations[HoldsAnnotation],
			instance: l.Annotations[election.InstanceAnnotation], seal: election.ReadSeal(l)}, false, at)
	}
	obs(sealedLease("a", "ta", 1, "10", x.String(), t0), t0)
	obs(sealedLease("b", "tb", 1, "11", y.String(), t0), t0)
	obs(sealedLease("z", "tz", 1, "12", "", t0), t0)
	// z's heartbeat edited to list x and y (someone copies a's and b's).
	e := sealedLease("z", "tz", 1, "13", "", t0)
	e.Annotations[HoldsAnnotation] = x.String() + "," + y.String()
	obs(e, t0.Add(time.Second))
	h := v.holders("c", t0.Add(2*time.Second))
	if h[x] != "a" || h[y] != "b" {
		t.Fatalf("holders after z's heartbeat was edited: %v, want x on a, y on b", h)
	}
	// a's heartbeat's holder cleared: a stays live for a lease duration.
	c := sealedLease("a", "ta", 1, "14", x.String(), t0)
	c.Spec.HolderIdentity = nil
	obs(c, t0.Add(2*time.Second))
	live, _ := v.live("c", t0.Add(5*time.Second))
	if !strings.Contains(fmt.Sprint(live), "{a ") {
		t.Fatalf("a not live 3 s after its holder was cleared by someone else: %v", live)
	}
	if h := v.holders("c", t0.Add(5*time.Second)); h[x] != "a" {
		t.Fatalf("x placed on %q after a's holder was cleared by someone else", h[x])
	}
	// b lists x too (a move under way): x stays with a, which listed it first.
	obs(sealedLease("b", "tb", 2, "15", x.String()+","+y.String(), t0.Add(3*time.Second)), t0.Add(3*time.Second))
	if h := v.holders("c", t0.Add(5*time.Second)); h[x] != "a" {
		t.Fatalf("x listed by a, then by b: given to %q, want a", h[x])
	}
}

// TestSpreadHeartbeatEditedBySomeoneElse drives the real controllers: 9
// Services on 3 spread nodes; someone else clears a node's heartbeat
// holder, rewrites its holds list, shortens its duration, or writes an old
// copy back, while n2's watch lags by 500 ms. Never an address on two
// nodes (sampled every 2 ms); every address held again, on the node that
// held it before (no oscillation).
func TestSpreadHeartbeatEditedBySomeoneElse(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(cur, old *coordinationv1.Lease) // (kubectl edit: get, change, update)
	}{
		{"holder cleared", func(cur, _ *coordinationv1.Lease) { cur.Spec.HolderIdentity = nil }},
		{"holds rewritten", func(cur, _ *coordinationv1.Lease) { cur.Annotations[HoldsAnnotation] = "" }},
		{"duration shortened", func(cur, _ *coordinationv1.Lease) { cur.Spec.LeaseDurationSeconds = ptr.To(int32(1)) }},
		{"old copy written back", func(cur, old *coordinationv1.Lease) {
			rv := cur.ResourceVersion
			*cur = *old.DeepCopy()
			cur.ResourceVersion = rv
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs, addrs := spreadServices(9)
			api, client := newCluster(objs...)
			ks := map[string]*viptest.Kernel{}
			for _, n := range []string{"n1", "n2", "n3"} {
				lag := time.Duration(0)
				if n == "n2" {
					lag = 500 * time.Millisecond // it sees the edit late: the others first
				}
				ks[n], _ = spreadNode(t, api, n, lag)
			}
			owners := func() (map[string]string, error) {
				out := map[string]string{}
				for _, a := range addrs {
					for n, k := range ks {
						if k.Has(a + "/32") {
							out[a] = n
						}
					}
					if out[a] == "" {
						return nil, fmt.Errorf("%s on no node", a)
					}
				}
				return out, nil
			}
			waitFor(t, "3 VIPs on each node", func() error {
				c, err := heldBy(ks, addrs)
				if err == nil && (c["n1"] != 3 || c["n2"] != 3 || c["n3"] != 3) {
					err = fmt.Errorf("split %v", c)
				}
				return err
			})
			before, _ := owners()
			leases := client.CoordinationV1().Leases("kube-system")
			ctx := context.Background()
			old, err := leases.Get(ctx, HeartbeatName("n2"), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // a few renewals later
			overlap := watchOverlap(ks, addrs)
			for {
				cur, err := leases.Get(ctx, HeartbeatName("n2"), metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				c.edit(cur, old)
				if _, err = leases.Update(ctx, cur, metav1.UpdateOptions{}); err == nil {
					break
				} else if !apierrors.IsConflict(err) {
					t.Fatal(err)
				}
			}
			var after map[string]string
			waitFor(t, "every VIP held again, where it was", func() error {
				var err error
				if after, err = owners(); err == nil && fmt.Sprint(after) != fmt.Sprint(before) {
					err = fmt.Errorf("owners %v, before %v", after, before)
				}
				return err
			})
			time.Sleep(2 * time.Second) // and it stays so
			if now, err := owners(); err != nil || fmt.Sprint(now) != fmt.Sprint(before) {
				t.Fatalf("after settling: owners %v (%v), before %v", now, err, before)
			}
			if bad := overlap(); len(bad) > 0 {
				t.Fatalf("an address on two nodes: %v", bad[:min(5, len(bad))])
			}
			l, err := leases.Get(ctx, HeartbeatName("n2"), metav1.GetOptions{})
			if err != nil || l.Annotations[election.EditedAnnotation] == "" {
				t.Fatalf("n2's heartbeat does not say it was edited: %v %v", err, l.Annotations)
			}
		})
	}
}

// A node whose first sight of another node's Lease is a version someone
// else changed (it started, or its watch relisted, after the edit) does
// not know what the holder last wrote: every address it wants is blocked
// for a lease duration from then, whatever the edited version lists or
// says its duration is, and the watch alone never lets it go.
func TestClaimCheckBlocksOnAnEditSeenFirst(t *testing.T) {
	x := netip.MustParseAddr("198.51.100.10")
	t0 := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	me := self{name: "b", token: "tb"}
	for _, v := range []leaseVersion{
		{holder: "", holds: x.String(), dur: 4 * time.Second, seal: election.Seal{Token: "ta", Seq: 3, Changed: "spec.holderIdentity", OK: true, Present: true}},
		{holder: "a", holds: "", dur: 4 * time.Second, seal: election.Seal{Token: "ta", Seq: 3, Changed: "annotation " + HoldsAnnotation, OK: true, Present: true}},
		{holder: "a", holds: "", dur: time.Second, seal: election.Seal{Token: "ta", Seq: 3, Changed: "spec.leaseDurationSeconds", OK: true, Present: true}},
	} {
		v.key, v.rv, v.instance, v.def = "kube-system/vipd-node-a", "7", "ta", 4*time.Second
		w := leaseView{}
		blocked, _, by := w.claimed(me, []leaseVersion{v}, []netip.Addr{x}, t0)
		if blocked[x] == "" {
			t.Errorf("%s seen first: %s not blocked", v.seal.Changed, x)
		}
		// A newer edit keeps the block to the same end; the watch does not let go.
		w.saw(leaseVersion{key: v.key, rv: "8", holder: "", dur: time.Second, instance: "ta", def: 4 * time.Second,
			seal: election.Seal{Token: "ta", Seq: 3, Changed: "spec.holderIdentity", OK: true, Present: true}}, t0.Add(time.Second))
		if w.letGo(x, by[x], t0.Add(2*time.Second)) {
			t.Errorf("%s seen first: let go on the watch", v.seal.Changed)
		}
		if blocked, _, _ := w.claimed(me, nil, []netip.Addr{x}, t0.Add(3900*time.Millisecond)); blocked[x] == "" {
			t.Errorf("%s seen first: not blocked 3.9 s later (deleted since)", v.seal.Changed)
		}
		if blocked, _, _ := w.claimed(me, nil, []netip.Addr{x}, t0.Add(4*time.Second)); blocked[x] != "" {
			t.Errorf("%s seen first: still blocked a lease duration later: %s", v.seal.Changed, blocked[x])
		}
	}
}
