package peerwire

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/peerfence"
)

func key(t testing.TB, fill byte) Key {
	k, err := NewKey(bytes.Repeat([]byte{fill}, MinKey), "Secret kube-system/vipd-peer-key")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func grant() Message {
	return Message{Kind: Grant, From: "n2", FromInstance: "i-b", To: "n1", ToInstance: "i-a", Seq: 7, Re: 3,
		Term:   peerfence.Term{Holder: "n1", Instance: "i-a", Epoch: 42},
		Answer: peerfence.Answer{Granted: true}}
}

func TestSealOpen(t *testing.T) {
	k := key(t, 1)
	for _, m := range []Message{
		grant(),
		{Kind: Checked, From: "n2", FromInstance: "i-b", To: "n3", ToInstance: "i-c", Seq: 1, Re: 1, Rev: 12345,
			Term: peerfence.Term{Holder: "n1", Instance: "i-a", Epoch: 9}, Answer: peerfence.Answer{Outstanding: 2500 * time.Millisecond, Why: "a promise runs"}},
		{Kind: Check, From: "n3", FromInstance: "i-c", To: "n2", ToInstance: "i-b", Seq: 1 << 60, Rev: 1, Term: peerfence.Term{Holder: "n1", Instance: "i-a", Epoch: 9}},
	} {
		got, err := k.Open(k.Seal(m), m.To, m.ToInstance)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Errorf("%s: got %+v, %v; want %+v", m.Kind, got, err, m)
		}
	}
}

func TestNewKeyNamesTheSecretAndTheFix(t *testing.T) {
	_, err := NewKey([]byte("short"), "Secret kube-system/vipd-peer-key")
	if err == nil || !strings.Contains(err.Error(), "Secret kube-system/vipd-peer-key is 5 bytes") || !strings.Contains(err.Error(), "create secret") {
		t.Errorf("got %v", err)
	}
}

// A host without the key cannot make a message: every byte changed, a
// message sealed with another key, and one cut short are all refused, and
// none of them yields a message.
func TestForgedRefused(t *testing.T) {
	k := key(t, 1)
	b := k.Seal(grant())
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if m, err := k.Open(c, "n1", "i-a"); err == nil || m != (Message{}) {
			t.Fatalf("byte %d changed: accepted %+v, %v", i, m, err)
		}
	}
	if _, err := k.Open(key(t, 2).Seal(grant()), "n1", "i-a"); !errors.Is(err, ErrMAC) || Reason(err) != "mac" {
		t.Errorf("another key: got %v", err)
	}
	for n := range b {
		if _, err := k.Open(b[:n], "n1", "i-a"); err == nil {
			t.Fatalf("cut to %d bytes: accepted", n)
		}
	}
	if _, err := k.Open(append(bytes.Clone(b), 0), "n1", "i-a"); err == nil {
		t.Error("a byte appended: accepted")
	}
}

// A message is for one process of one node: recorded for another node, or
// before the receiver restarted, it is refused; the latter with the
// message, so that the receiver can say it restarted.
func TestNotForThisProcess(t *testing.T) {
	k := key(t, 1)
	b := k.Seal(grant())
	if m, err := k.Open(b, "n3", "i-a"); !errors.Is(err, ErrNotMe) || m != (Message{}) || !strings.Contains(err.Error(), `to node "n1", this is "n3"`) {
		t.Errorf("another node: got %+v, %v", m, err)
	}
	m, err := k.Open(b, "n1", "i-new")
	if !errors.Is(err, ErrNotMe) || Reason(err) != "recipient" || m.FromInstance != "i-b" || !strings.Contains(err.Error(), `which is now "i-new"`) {
		t.Errorf("an earlier process: got %+v, %v", m, err)
	}
}

// Sealed with the key but not what this version reads: an error, no
// message.
func TestSealedGarbage(t *testing.T) {
	k := key(t, 1)
	for name, m := range map[string]Message{
		"kind 0":            {Kind: 0, Seq: 1},
		"kind 9":            {Kind: 9, Seq: 1},
		"seq 0":             {Kind: Ask, Seq: 0},
		"a promise of days": {Kind: Checked, Seq: 1, Answer: peerfence.Answer{Outstanding: 48 * time.Hour}},
	} {
		if got, err := k.Open(k.Seal(m), "", ""); !errors.Is(err, ErrFormat) || got != (Message{}) {
			t.Errorf("%s: got %+v, %v", name, got, err)
		}
	}
	big := grant()
	big.Answer.Why = strings.Repeat("x", MaxSize)
	if _, err := k.Open(k.Seal(big), "n1", "i-a"); !errors.Is(err, ErrFormat) {
		t.Errorf("%d bytes: got %v", len(k.Seal(big)), err)
	}
}

func TestWindow(t *testing.T) {
	var w Window
	m := func(inst string, seq uint64) Message {
		return Message{From: "n2", FromInstance: inst, Seq: seq}
	}
	steps := []struct {
		m    Message
		want string // "" accepted, else the error's words
	}{
		{m("i-b", 5), ""},
		{m("i-b", 5), "replayed"},
		{m("i-b", 3), ""}, // late, within the window
		{m("i-b", 3), "replayed"},
		{m("i-b", 70), ""},
		{m("i-b", 7), ""}, // 63 below: still inside
		{m("i-b", 7), "replayed"},
		{m("i-b", 6), "newest accepted 70"}, // 64 below: out of the window
		{m("i-b2", 1), ""},                  // n2 restarted
		{m("i-b", 71), `which "i-b2" replaced`},
		{m("i-b3", 1), ""},
		{m("i-b2", 2), `which "i-b3" replaced`},
		{Message{From: "n3", FromInstance: "i-c", Seq: 1}, ""}, // another sender: its own numbers
	}
	for i, s := range steps {
		err := w.Accept(s.m)
		if s.want == "" && err != nil || s.want != "" && (!errors.Is(err, ErrReplay) || !strings.Contains(err.Error(), s.want)) {
			t.Errorf("step %d (%+v): got %v, want %q", i, s.m, err, s.want)
		}
	}
}

func TestWindowForgetsOnlyAfterManyRestarts(t *testing.T) {
	var w Window
	for i := range Retired + 1 {
		if err := w.Accept(Message{From: "n2", FromInstance: string(rune('A' + i)), Seq: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Accept(Message{From: "n2", FromInstance: "B", Seq: 2}); !errors.Is(err, ErrReplay) {
		t.Errorf("a process retired %d restarts ago: got %v", Retired-1, err)
	}
}

func FuzzOpen(f *testing.F) {
	k := key(f, 1)
	f.Add(k.Seal(grant()))
	f.Add([]byte(magic))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := k.Open(b, "n1", "i-a")
		if err == nil && !bytes.Equal(k.Seal(m), b) {
			t.Errorf("accepted %x, which is not the seal of what it decoded to", b)
		}
	})
}
