// Package peerwire is the wire format of holding through peers (package
// peerfence, docs/safety.md): the requests and answers vipd nodes exchange
// node to node while the API server cannot be reached, each sealed with an
// HMAC-SHA256 under a key every node read from a Secret while the API was
// up. A host on the segment without the key can neither forge a promise or
// a check nor make a node accept one it recorded: a message names its
// receiver's process (its vipd.io/instance), so nothing recorded before the
// receiver started is accepted, and within a process each sender's numbers
// are accepted once (Window). Refusing a message never costs safety, only
// availability: the protocol holds whatever is lost.
package peerwire

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/vipd/vipd/internal/peerfence"
)

// Kind is what a message is.
type Kind byte

const (
	// Ask: a holder asks for a promise of Term.
	Ask Kind = 1 + iota
	// Grant answers an Ask.
	Grant
	// Check: a claimant asks whether a promise of Term is outstanding,
	// for a claim based on revision Rev.
	Check
	// Checked answers a Check.
	Checked
	// Restarted answers a message addressed to an instance of this node
	// that is gone: it names the current one (FromInstance).
	Restarted
)

func (k Kind) String() string {
	switch k {
	case Ask:
		return "ask"
	case Grant:
		return "grant"
	case Check:
		return "check"
	case Checked:
		return "checked"
	case Restarted:
		return "restarted"
	}
	return fmt.Sprintf("kind %d", byte(k))
}

// Message is one request or answer.
type Message struct {
	Kind Kind
	// From and To are node names; FromInstance and ToInstance their vipd
	// processes (vipd.io/instance).
	From, FromInstance string
	To, ToInstance     string
	// Seq numbers the sender's messages within its process, from 1 up.
	Seq uint64
	// Re is the Seq of the request an answer answers (0 in a request).
	Re     uint64
	Term   peerfence.Term
	Rev    uint64
	Answer peerfence.Answer
}

// Key is the shared secret messages are sealed with.
type Key struct{ b []byte }

// MinKey is the shortest key accepted, in bytes.
const MinKey = 32

// NewKey checks a key read from the Secret named where (for the error).
func NewKey(b []byte, where string) (Key, error) {
	if len(b) < MinKey {
		return Key{}, fmt.Errorf("the peer key in %s is %d bytes; it needs %d or more: kubectl -n kube-system create secret generic vipd-peer-key --from-literal=key=$(head -c %d /dev/urandom | base64)", where, len(b), MinKey, MinKey)
	}
	return Key{b: append([]byte(nil), b...)}, nil
}

const (
	magic   = "vpf1"
	macSize = sha256.Size
	// MaxSize bounds a message; longer input is refused unread.
	MaxSize = 1024
)

// Seal encodes m and appends its MAC.
func (k Key) Seal(m Message) []byte {
	b := []byte(magic)
	b = append(b, byte(m.Kind))
	for _, s := range []string{m.From, m.FromInstance, m.To, m.ToInstance, m.Term.Lease, m.Term.Holder, m.Term.Instance, m.Answer.Why} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	for _, v := range []uint64{m.Seq, m.Re, m.Term.Epoch, m.Rev, uint64(m.Answer.Outstanding)} {
		b = binary.AppendUvarint(b, v)
	}
	var flags byte
	if m.Answer.Granted {
		flags |= 1
	}
	if m.Answer.Blocked {
		flags |= 2
	}
	b = append(b, flags)
	mac := hmac.New(sha256.New, k.b)
	mac.Write(b)
	return mac.Sum(b)
}

// Why a message was refused, for the log and the metric's label.
var (
	ErrFormat = errors.New("not a vipd peer message")
	ErrMAC    = errors.New("bad MAC (forged, corrupted, or sealed with another key: every node must read the same Secret)")
	ErrNotMe  = errors.New("addressed to another node or to an earlier vipd process on this one")
	ErrReplay = errors.New("replayed, or older than the messages accepted since")
)

// Reason is err's label for a metric: format, mac, recipient, replay, or
// other.
func Reason(err error) string {
	switch {
	case errors.Is(err, ErrFormat):
		return "format"
	case errors.Is(err, ErrMAC):
		return "mac"
	case errors.Is(err, ErrNotMe):
		return "recipient"
	case errors.Is(err, ErrReplay):
		return "replay"
	}
	return "other"
}

// Open checks b's MAC and decodes it. A message addressed to an earlier
// process of node me (not instance) returns ErrNotMe with the message, so
// that the caller can answer Restarted; any other error returns no
// message. Open does not check for replays: see Window.
func (k Key) Open(b []byte, me, instance string) (Message, error) {
	if len(b) > MaxSize || len(b) < len(magic)+macSize || string(b[:len(magic)]) != magic {
		return Message{}, fmt.Errorf("%w (%d bytes)", ErrFormat, len(b))
	}
	body, sum := b[:len(b)-macSize], b[len(b)-macSize:]
	mac := hmac.New(sha256.New, k.b)
	mac.Write(body)
	if !hmac.Equal(mac.Sum(nil), sum) {
		return Message{}, ErrMAC
	}
	m, err := decode(body[len(magic):])
	if err != nil {
		// Sealed with the key but unreadable: a vipd of another version.
		return Message{}, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if m.To != me {
		return Message{}, fmt.Errorf("%w: to node %q, this is %q", ErrNotMe, m.To, me)
	}
	if m.ToInstance != instance {
		return m, fmt.Errorf("%w: to process %q of node %s, which is now %q", ErrNotMe, m.ToInstance, me, instance)
	}
	return m, nil
}

func decode(b []byte) (Message, error) {
	var m Message
	if len(b) < 1 {
		return m, errors.New("empty")
	}
	m.Kind, b = Kind(b[0]), b[1:]
	if m.Kind < Ask || m.Kind > Restarted {
		return m, fmt.Errorf("unknown %s", m.Kind)
	}
	for _, s := range []*string{&m.From, &m.FromInstance, &m.To, &m.ToInstance, &m.Term.Lease, &m.Term.Holder, &m.Term.Instance, &m.Answer.Why} {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			return m, errors.New("truncated string")
		}
		*s, b = string(b[w:w+int(n)]), b[w+int(n):]
	}
	var out uint64
	for _, v := range []*uint64{&m.Seq, &m.Re, &m.Term.Epoch, &m.Rev, &out} {
		n, w := binary.Uvarint(b)
		if w <= 0 {
			return m, errors.New("truncated number")
		}
		*v, b = n, b[w:]
	}
	if out > uint64(time.Hour) {
		return m, fmt.Errorf("an outstanding promise of %s", time.Duration(out))
	}
	m.Answer.Outstanding = time.Duration(out)
	if len(b) != 1 || b[0]&^3 != 0 {
		return m, errors.New("bad flags or trailing bytes")
	}
	m.Answer.Granted, m.Answer.Blocked = b[0]&1 != 0, b[0]&2 != 0
	if m.Seq == 0 {
		return m, errors.New("sequence number 0")
	}
	return m, nil
}

// Window accepts each sender's messages once, within the receiver's
// process: per sending node, the numbers of its current process (a
// message of a newer process retires the older one for good) in a window
// of the last 64.
type Window struct {
	peers map[string]*peer
}

type peer struct {
	instance string
	top      uint64
	seen     uint64 // bit i: top-i was accepted
	retired  []string
}

// Retired bounds the retired processes remembered per sending node; an
// older one is accepted again only after this many restarts of that node
// while this process runs.
const Retired = 64

// Accept records m and reports ErrReplay if it was accepted before, is
// older than the window, or comes from a retired process of its sender.
func (w *Window) Accept(m Message) error {
	if w.peers == nil {
		w.peers = map[string]*peer{}
	}
	p := w.peers[m.From]
	switch {
	case p == nil:
		p = &peer{instance: m.FromInstance}
		w.peers[m.From] = p
	case p.instance != m.FromInstance:
		for _, r := range p.retired {
			if r == m.FromInstance {
				return fmt.Errorf("%w: from process %q of node %s, which %q replaced", ErrReplay, m.FromInstance, m.From, p.instance)
			}
		}
		p.retired = append(p.retired, p.instance)
		if len(p.retired) > Retired {
			p.retired = p.retired[1:]
		}
		p.instance, p.top, p.seen = m.FromInstance, 0, 0
	}
	if m.Seq > p.top {
		if shift := m.Seq - p.top; shift >= 64 {
			p.seen = 0
		} else {
			p.seen <<= shift
		}
		p.top, p.seen = m.Seq, p.seen|1
		return nil
	}
	d := p.top - m.Seq
	if d >= 64 || p.seen&(1<<d) != 0 {
		return fmt.Errorf("%w: message %d from %s (process %q), newest accepted %d", ErrReplay, m.Seq, m.From, m.FromInstance, p.top)
	}
	p.seen |= 1 << d
	return nil
}
