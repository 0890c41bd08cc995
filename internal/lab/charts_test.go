package lab

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestChartsAreSVG: a fault's timeline and a series chart are written as
// SVG with their title, from samples like a run's.
func TestChartsAreSVG(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	r := &Report{}
	for i := -20; i < 100; i++ {
		ts := at.Add(time.Duration(i) * 50 * time.Millisecond)
		switch {
		case i < 0:
			r.Samples = append(r.Samples, Sample{At: ts, Owners: []string{"n1"}})
			r.Probes = append(r.Probes, Probe{At: ts, Node: "n1"})
		case i < 60:
			r.Samples = append(r.Samples, Sample{At: ts})
			r.Probes = append(r.Probes, Probe{At: ts, Err: errors.New("timeout")})
		default:
			r.Samples = append(r.Samples, Sample{At: ts, Owners: []string{"n2"}})
			r.Probes = append(r.Probes, Probe{At: ts, Node: "n2"})
		}
	}
	tl := filepath.Join(dir, "img", "failover-sigkill.svg")
	if err := TimelineSVG(tl, "SIGKILL of n1", Caption("a test", 3), r, at, []string{"n1", "n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	sv := filepath.Join(dir, "img", "services.svg")
	if err := SeriesSVG(sv, "convergence", Caption("a test", 3), "Services", "seconds", true,
		[]Series{{Name: "vipd", X: []float64{100, 1000}, Y: []float64{1.5, 11}}, {Name: "MetalLB", X: []float64{100, 1000}, Y: []float64{5, 49}, Peer: true}}); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{tl: "SIGKILL of n1", sv: "MetalLB"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(b); !strings.Contains(s, "<svg") || !strings.Contains(s, want) {
			t.Errorf("%s: not an SVG naming %q (%d bytes)", path, want, len(b))
		}
	}
}
