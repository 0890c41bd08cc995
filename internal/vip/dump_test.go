package vip

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

// An interrupted dump is read again; one that keeps being interrupted is an
// error, never a partial list.
func TestDumpRetriesInterrupted(t *testing.T) {
	calls := 0
	got, err := dump(func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{1}, netlink.ErrDumpInterrupted
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Errorf("got %v, %v after %d calls; want the full list on the third", got, err, calls)
	}
	calls = 0
	got, err = dump(func() ([]int, error) { calls++; return []int{1}, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || got != nil || calls != dumpTries {
		t.Errorf("always interrupted: got %v, %v after %d calls", got, err, calls)
	}
	other := errors.New("no such device")
	if _, err := dump(func() ([]int, error) { return nil, other }); !errors.Is(err, other) {
		t.Errorf("another error: %v", err)
	}
}
