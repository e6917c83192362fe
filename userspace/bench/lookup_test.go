package bench

import (
	"math"
	"strings"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// TestStreamTable runs the section in short mode. It asserts no time, only
// that every figure was measured.
func TestStreamTable(t *testing.T) {
	testenv.RequireRoot(t)
	sec, err := streamTable(Options{Short: true, Runs: 1})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Name != SectionStreamTable || len(sec.Skipped) != 0 {
		t.Fatalf("section %+v", sec)
	}
	var names []string
	for _, f := range sec.Figures {
		names = append(names, f.Name)
		for _, x := range []float64{f.Value, f.Baseline, f.Ratio} {
			if !(x > 0) || math.IsInf(x, 0) {
				t.Errorf("figure %+v: want positive, finite value, baseline and ratio", f)
			}
		}
		if f.Unit != "ns/frame" || f.BaselineName != "xdp_pass" || f.Target != nil {
			t.Errorf("figure %+v", f)
		}
		t.Logf("%-12s %7.1f ns  xdp_pass %6.1f ns  x%.2f  %s", f.Name, f.Value, f.Baseline, f.Ratio, f.Note)
	}
	if got, want := strings.Join(names, " "), "hit_empty hit1_empty hit_full hit1_full spread_full new_full"; got != want {
		t.Errorf("figures %q, want %q", got, want)
	}
}
