package services

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/vipd/vipd/internal/election"
)

// A datapath that applies holds later than the retry period is counted
// each time and said in the log at most once a minute.
func TestDatapathFallingBehindIsSaid(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	var log bytes.Buffer
	c := &Controller{o: Options{Timing: election.Timing{RetryPeriod: time.Second}, Clock: clk}, log: slog.New(slog.NewTextHandler(&log, nil))}
	warnings := func() int { return strings.Count(log.String(), "the kernel falls behind") }
	for i, s := range []struct {
		holds  int
		waited time.Duration
		step   time.Duration
		late   uint64
		warns  int
	}{
		{holds: 1000, waited: 300 * time.Millisecond, late: 0, warns: 0},
		{holds: 10000, waited: 3 * time.Second, late: 1, warns: 1},
		{holds: 10000, waited: 4 * time.Second, step: 10 * time.Second, late: 2, warns: 1},
		{holds: 10000, waited: 2 * time.Second, step: time.Minute, late: 3, warns: 2},
	} {
		clk.Step(s.step)
		c.applied(s.holds, s.waited)
		waited, late := c.DatapathLag()
		if waited != s.waited || late != s.late || warnings() != s.warns {
			t.Errorf("round %d: lag %s, %d late, %d warnings; want %s, %d, %d", i, waited, late, warnings(), s.waited, s.late, s.warns)
		}
	}
	if !strings.Contains(log.String(), "addresses=10000") {
		t.Errorf("the warning does not say how many addresses: %s", log.String())
	}
}
