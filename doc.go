// Package vipd gives a bare-metal Kubernetes cluster floating virtual IPs:
// one for the control plane and one per LoadBalancer Service, owned through
// Kubernetes Leases, put on the owner's interface with a kernel-enforced
// lifetime and announced with gratuitous ARP or unsolicited neighbor
// advertisements. The code is under cmd/ and internal/; this file states
// the safety invariants that the code cites as S1-S9.
//
// S1 One owner on the wire. At no time do two nodes have the same VIP on an
// interface that is up: not after a crash (SIGKILL), a freeze (SIGSTOP), a
// partition from the API server, a restart or a rolling update.
//
// S2 Kernel-enforced lease. A VIP is added with preferred_lft 0 and a finite
// valid_lft that ends no later than the holder's renew deadline (start of
// the last successful renewal + renew deadline), refreshed after every
// successful renewal; the lifetime is checked against the clock read after
// the netlink call (internal/vip.Address.Hold). If vipd dies or freezes,
// the kernel removes the address before another node may take the Lease:
// lease duration >= renew deadline + 2 s (election.FenceMargin), since the
// kernel removes an expired address up to about 1 s late.
//
// S3 Step down in order. Stop announcing, remove the address, then release
// or hand over the Lease; never the other way round (owner.VIP.Drop before
// election release; services.group.Drop before its elector releases).
//
// S4 Clean start. Before joining any election, remove what a previous run
// of vipd left: only addresses that carry vipd's mark (preferred lifetime
// 0, finite valid lifetime, full-length prefix; vip.Found.Marked), and for
// Services only addresses of Services vipd serves.
//
// S5 Local fence. A holder that has not renewed successfully within the
// renew deadline, measured on the monotonic clock from the start of the
// last successful renewal, stops announcing and removes the VIP, even while
// its renewal call still hangs (election loop.onFence).
//
// S6 Fast, not reckless. A follower notices a released Lease through a
// watch and tries at once, and schedules its next try at the moment the
// Lease it observed expires (observed time + lease duration, on its own
// clock). A deleted Lease counts as an observation of its last holder.
//
// S7 Only what is ours. vipd never puts on an interface an address that
// belongs to someone else, and never removes an address it did not add: a
// control-plane VIP that is already on the node without vipd's mark is
// refused at start (controlplane.ErrForeignAddress); a Service never gets a
// Node's address, the API server's, an address of the node's interface,
// its subnets' network or broadcast address or a gateway, nor an address in
// another namespace's dedicated pool (services.Plan, Input.Others); an
// address another host answers for on the wire when no vipd node is known
// to have held it is not claimed (announce.Probe before the first claim).
//
// S8 Hand over, never overlap. When an address changes owner for any
// reason (a new Lease holder, a Service switching externalTrafficPolicy, an
// address passing from one Service to another), the new owner claims it
// only after the old owner has written in the API that it let go, or after
// the old owner's fence has provably passed. For a Lease: takeover only of
// a released Lease, or of one unchanged for its whole duration since this
// node observed it; answers to writes started before this node's latest
// release are void. For Service VIPs (services.group): an address goes on
// the interface only after this node's Lease was written listing it
// (annotation vipd.io/holds) and a quorum read of every Lease, made after
// that write, found no other node's live (or just deleted) Lease listing
// it. Caches on different nodes disagree for seconds; safety does not
// depend on them agreeing.
//
// S9 Only the holder releases. A Lease version whose holder, holds list,
// duration or renew time changed without its holder's own write was
// changed by someone else (an operator, a script, a GitOps tool re-applying
// an old copy). Every vipd write seals those fields with its process token
// and a write number (election.SealAnnotation); a version whose seal does
// not match, or is older than one seen, is unfenced. Claimants treat it
// like a deletion: the last sealed version, its holder and holds list,
// still counts for a lease duration from when the change was seen
// (election.Trust, services.leaseView, services.beatView). A holder that
// sees such a version of its own Lease stops announcing and removes what it
// holds (S3) before it takes the Lease back (election loop.stepDownEdited).
// A node that does not know the holder's last write (it never saw the
// Lease before the change, or the change names a write of the holder it
// missed: election.LastWrite) counts the Lease as holding everything for
// a lease duration from when it saw the change (leaseView's unknown, the
// elector's afterEdit).
package vipd
