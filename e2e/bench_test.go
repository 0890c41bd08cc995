package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vipd/vipd/internal/lab"
)

// BenchmarkFailover runs every fault of the matrix VIPD_BENCH_RUNS times
// (default 5) at the seed's timings (5/3/1 s) and prints, per fault, the
// median client-seen gap and the median time with two owners.
//
//	make bench-failover
func BenchmarkFailover(b *testing.B) {
	runs := 5
	if n, err := strconv.Atoi(os.Getenv("VIPD_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	l := newLab(b)
	sc := seedScenario(b, l)
	sc.Settle = time.Second
	type row struct {
		fault            string
		gaps, twos, recs []time.Duration
		fails            int
	}
	var rows []row
	for range b.N {
		rows = rows[:0]
		for _, f := range lab.Faults {
			r := row{fault: f.Name}
			for range runs {
				res, err := l.RunFault(context.Background(), sc, f)
				if err != nil {
					b.Fatalf("%s: %v", f.Name, err)
				}
				if err := res.Check(leaseDuration + 3*time.Second); err != nil {
					r.fails++
					b.Logf("%s: %v (%s)", f.Name, err, res.Report.Summary(res.FaultAt))
				}
				r.gaps = append(r.gaps, res.Gap)
				r.twos = append(r.twos, res.TwoOwners)
				r.recs = append(r.recs, res.Recovery)
			}
			rows = append(rows, r)
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\nFailover at the seed's timings (lease 5 s, renew deadline 3 s, retry 1 s), %d runs per fault, median [min-max]\n", runs)
	fmt.Fprintf(&sb, "| fault | client-seen gap (ms) | fault → new owner answers (ms) | time with two owners (ms) | runs failing a check |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %d |\n", r.fault, stats(r.gaps), stats(r.recs), stats(r.twos), r.fails)
		name := strings.ReplaceAll(strings.Fields(r.fault)[0], "-", "")
		b.ReportMetric(float64(median(r.gaps).Milliseconds()), name+"-gap-ms")
	}
	fmt.Print(sb.String())
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func stats(d []time.Duration) string {
	return fmt.Sprintf("%d [%d-%d]", median(d).Milliseconds(), slices.Min(d).Milliseconds(), slices.Max(d).Milliseconds())
}
