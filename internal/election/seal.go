package election

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/vipd/vipd/internal/lease"
)

// HoldsAnnotation on a Lease lists the Service VIPs its holder has on its
// interface or is about to add (package services writes it); the seal
// covers it.
const HoldsAnnotation = lease.Holds

// SealAnnotation on a Lease says what its holder's own write set: the
// writing process's token (InstanceAnnotation), the number of that
// process's write, and the holder, duration, renew time and holds list it
// wrote. Anyone else who changes one of those fields (kubectl edit or
// patch, a script, a GitOps tool re-applying an old object) leaves a seal
// that does not match, or one older than a seal already seen: such a
// version is unfenced (S9). Claimants treat it like a deletion, and a
// holder that sees one steps down before it competes again.
const SealAnnotation = lease.Seal

// seal is the SealAnnotation of l as written by the process token at write
// number seq.
func seal(l *coordinationv1.Lease, token string, seq uint64) string {
	s := sealOf(l)
	return fmt.Sprintf("%s/%d/%s/%d/%d/%s", token, seq, s.holder, s.dur, s.renew, s.holds)
}

// WriteSeal seals l as process token's write number seq, as every write
// of an Elector does (for tests that write Leases as vipd would).
func WriteSeal(l *coordinationv1.Lease, token string, seq uint64) {
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[InstanceAnnotation] = token
	l.Annotations[SealAnnotation] = seal(l, token, seq)
}

// sealed are the fields a seal covers, as they are in a Lease.
type sealed struct {
	holder string
	dur    int64 // leaseDurationSeconds (0: unset)
	renew  int64 // renewTime in Unix microseconds (0: unset)
	holds  string
}

func sealOf(l *coordinationv1.Lease) sealed {
	var s sealed
	s.holder = holder(l)
	if l.Spec.LeaseDurationSeconds != nil {
		s.dur = int64(*l.Spec.LeaseDurationSeconds)
	}
	if l.Spec.RenewTime != nil {
		s.renew = l.Spec.RenewTime.UnixMicro()
	}
	s.holds = "-"
	if h, ok := l.Annotations[HoldsAnnotation]; ok {
		sum := sha256.Sum256([]byte(h))
		s.holds = hex.EncodeToString(sum[:8])
	}
	return s
}

// Seal is a Lease's seal, read back (ReadSeal).
type Seal struct {
	Token string
	Seq   uint64
	// Changed names the fields that differ from what the seal says ("":
	// none).
	Changed string
	// OK: the Lease has a seal that can be read; Present: it has one.
	OK, Present bool
}

// ReadSeal checks l's seal against l: which fields someone else changed
// since its holder wrote it.
func ReadSeal(l *coordinationv1.Lease) Seal {
	v, has := l.Annotations[SealAnnotation]
	if !has {
		return Seal{}
	}
	f := strings.Split(v, "/")
	if len(f) != 6 {
		return Seal{Present: true}
	}
	seq, err1 := strconv.ParseUint(f[1], 10, 64)
	dur, err2 := strconv.ParseInt(f[3], 10, 64)
	renew, err3 := strconv.ParseInt(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || f[0] == "" {
		return Seal{Present: true}
	}
	s := Seal{Token: f[0], Seq: seq, OK: true, Present: true}
	now := sealOf(l)
	var diff []string
	if now.holder != f[2] {
		diff = append(diff, fmt.Sprintf("spec.holderIdentity (%q, written %q)", now.holder, f[2]))
	}
	if now.dur != dur {
		diff = append(diff, fmt.Sprintf("spec.leaseDurationSeconds (%d, written %d)", now.dur, dur))
	}
	if now.renew != renew {
		diff = append(diff, "spec.renewTime")
	}
	if now.holds != f[5] {
		diff = append(diff, "annotation "+HoldsAnnotation)
	}
	if t := l.Annotations[InstanceAnnotation]; t != "" && t != s.Token {
		diff = append(diff, "annotation "+InstanceAnnotation)
	}
	s.Changed = strings.Join(diff, ", ")
	return s
}

// LastWrite reports whether changed, the seal of a version someone else
// changed, names own, the seal of a version its holder wrote, as that
// holder's last write: a change leaves the seal of the write it changed,
// an old copy written back carries its own older one, and a reader that
// missed writes (a relist, a read past a lagging watch) knows an older
// one.
func LastWrite(changed, own Seal) bool {
	return changed.OK && own.OK && changed.Token == own.Token && changed.Seq == own.Seq
}

// Trust tells, version by version of one Lease, which versions their
// holder's own write made. The zero value is ready to use; it is not safe
// for concurrent use.
type Trust struct {
	// seqs is the highest write number seen for each process token.
	seqs map[string]uint64
	// sealed: a version with a seal was seen, so one without is foreign.
	sealed bool
}

// trustKept bounds Trust.seqs: the tokens of the last processes that held
// the Lease.
const trustKept = 16

// Check classifies version l (it must be newer than every version checked
// before): "" when its holder's own write made it, otherwise what someone
// else changed, in words for a log line or an Event. A Lease without a seal
// that never had one (kube-vip's, an older vipd's) is its holder's.
func (t *Trust) Check(l *coordinationv1.Lease) string { return t.Judge(ReadSeal(l)) }

// Judge is Check of a version whose seal was read already.
func (t *Trust) Judge(s Seal) string {
	switch {
	case !s.OK && s.Present:
		return "annotation " + SealAnnotation + " (not a seal vipd wrote)"
	case !s.OK && t.sealed:
		return "annotation " + SealAnnotation + " (removed)"
	case !s.OK:
		return ""
	}
	t.sealed = true
	if s.Changed != "" {
		return s.Changed
	}
	if t.seqs == nil {
		t.seqs = map[string]uint64{}
	}
	if top, seen := t.seqs[s.Token]; seen && s.Seq < top {
		return fmt.Sprintf("the whole Lease (write %d of process %s written back after its write %d: a re-applied old copy)", s.Seq, s.Token, top)
	}
	if _, seen := t.seqs[s.Token]; !seen && len(t.seqs) >= trustKept {
		for k := range t.seqs {
			delete(t.seqs, k)
			break
		}
	}
	t.seqs[s.Token] = max(t.seqs[s.Token], s.Seq)
	return ""
}

// Clone returns a copy of t that does not share its state.
func (t Trust) Clone() Trust {
	c := Trust{sealed: t.sealed}
	if t.seqs != nil {
		c.seqs = make(map[string]uint64, len(t.seqs))
		for k, v := range t.seqs {
			c.seqs[k] = v
		}
	}
	return c
}

// DescribeEdits says, for each Lease whose holder saw it changed by
// someone else (EditedAnnotation), what was changed and when.
func DescribeEdits(leases []coordinationv1.Lease) []string {
	var out []string
	for _, l := range leases {
		ed := l.Annotations[EditedAnnotation]
		if ed == "" {
			continue
		}
		at, what, _ := strings.Cut(ed, " ")
		out = append(out, fmt.Sprintf("Lease %s/%s: its holder %s saw it changed by someone other than vipd at %s (%s), removed its addresses and took it back", l.Namespace, l.Name, holder(&l), at, what))
	}
	return out
}
