package main

import (
	"os"
	"testing"
)

// Colour only on a terminal, and never with NO_COLOR set.
func TestColourOnlyOnATerminalWithoutNoColor(t *testing.T) {
	for _, c := range []struct {
		noColor  string
		terminal bool
		want     bool
	}{{"", true, true}, {"1", true, false}, {"", false, false}, {"1", false, false}} {
		if got := colour(c.noColor, c.terminal); got != c.want {
			t.Errorf("NO_COLOR=%q terminal=%t: colour %t, want %t", c.noColor, c.terminal, got, c.want)
		}
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a file counts as a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Error("a pipe counts as a terminal")
	}
}
