package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestLineRate runs the section in short mode: one run of each blast. It
// asserts no rate, only that every one was measured: one queue, the
// forward rate, then two queues with one and two sender threads (own or
// shared streams), and the scaling of both.
func TestLineRate(t *testing.T) {
	testenv.RequireRoot(t)
	var progress strings.Builder
	sec, err := lineRate(Options{Short: true, Runs: 1, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if sec.Name != SectionLineRate || len(sec.Skipped) != 0 || len(sec.Figures) != 7 {
		t.Fatalf("section %+v", sec)
	}
	for i, name := range []string{"counted_rate", "forward_rate", "counted_rate_2q_1cpu", "counted_rate_2q_2cpu", "counted_rate_2q_2cpu_shared", "counted_scaling_2q", "counted_scaling_2q_shared"} {
		f := sec.Figures[i]
		for _, x := range []float64{f.Value, f.Baseline, f.Ratio} {
			if !(x > 0) || math.IsInf(x, 0) {
				t.Errorf("figure %+v: want positive, finite value, baseline and ratio", f)
			}
		}
		if f.Name != name || f.Note == "" || (i == 0) != (f.Target != nil) {
			t.Errorf("figure %d: %+v, want %s", i, f, name)
		}
		if i > 1 && i < 5 && !strings.Contains(f.Note, "per RX queue: q0 ") {
			t.Errorf("figure %s: no per-queue split in %q", f.Name, f.Note)
		}
		t.Logf("%s: %.2f %s, %s %.2f, ratio %.2f; %s", f.Name, f.Value, f.Unit, f.BaselineName, f.Baseline, f.Ratio, f.Note)
	}
}
