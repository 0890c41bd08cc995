package health

import (
	"context"
	"errors"
	"slices"
	"testing"
)

func TestGateStates(t *testing.T) {
	down := errors.New("connection refused")
	for _, tc := range []struct {
		mode  Mode
		steps []error
		want  []bool // Open after each step
	}{
		// auto: never armed without a first success, so never closes.
		{Auto, []error{down, down, down, down}, []bool{true, true, true, true}},
		// auto: armed by a success, closes on the 3rd failure in a row, reopens on success.
		{Auto, []error{nil, down, down, down, nil}, []bool{true, true, true, false, true}},
		// a success resets the count.
		{Auto, []error{nil, down, down, nil, down, down}, []bool{true, true, true, true, true, true}},
		// on: closed until the first success.
		{On, []error{down, nil, down, down, down}, []bool{false, true, true, true, false}},
	} {
		var changes []bool
		g, err := New(Options{Mode: tc.mode, Failures: 3, Check: func(context.Context) error { return nil }, OnChange: func(b bool) { changes = append(changes, b) }})
		if err != nil {
			t.Fatal(err)
		}
		prev := g.Open()
		var wantChanges []bool
		for i, e := range tc.steps {
			g.record(e)
			if got := g.Open(); got != tc.want[i] {
				t.Errorf("%s %v: after step %d open=%v, want %v", tc.mode, tc.steps, i, got, tc.want[i])
			}
			if tc.want[i] != prev {
				wantChanges = append(wantChanges, tc.want[i])
				prev = tc.want[i]
			}
		}
		// OnChange saw exactly the changes, in order, and Changed() was
		// signalled if and only if there was one (it holds at most one).
		if !slices.Equal(changes, wantChanges) {
			t.Errorf("%s %v: OnChange saw %v, want %v", tc.mode, tc.steps, changes, wantChanges)
		}
		select {
		case <-g.Changed():
			if len(wantChanges) == 0 {
				t.Errorf("%s %v: Changed() signalled without a change", tc.mode, tc.steps)
			}
		default:
			if len(wantChanges) > 0 {
				t.Errorf("%s %v: changes %v but nothing on Changed()", tc.mode, tc.steps, wantChanges)
			}
		}
	}
}

func TestGateRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{Mode: "sometimes", Failures: 3}); err == nil {
		t.Error("bad mode accepted")
	}
	if _, err := New(Options{Mode: Auto, Failures: 0}); err == nil {
		t.Error("zero failures accepted")
	}
}
