package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestLineRate runs the section in short mode: one run of each blast. It
// asserts no rate, only that both were measured.
func TestLineRate(t *testing.T) {
	testenv.RequireRoot(t)
	var progress strings.Builder
	sec, err := lineRate(Options{Short: true, Runs: 1, Progress: &progress})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if sec.Name != SectionLineRate || len(sec.Skipped) != 0 || len(sec.Figures) != 1 {
		t.Fatalf("section %+v", sec)
	}
	f := sec.Figures[0]
	for _, x := range []float64{f.Value, f.Baseline, f.Ratio} {
		if !(x > 0) || math.IsInf(x, 0) {
			t.Errorf("figure %+v: want positive, finite value, baseline and ratio", f)
		}
	}
	if f.Name != "counted_rate" || f.Unit != "Mpps" || f.Target == nil || f.Note == "" {
		t.Errorf("figure %+v", f)
	}
	t.Logf("%s: %.2f Mpps, xdp_drop %.2f Mpps, ratio %.2f; %s", f.Name, f.Value, f.Baseline, f.Ratio, f.Note)
}
