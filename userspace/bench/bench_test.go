package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestKBField(t *testing.T) {
	s := "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"
	if v, ok := kbField(s, "VmRSS"); !ok || v != 1024 {
		t.Fatalf("VmRSS = %d, %v", v, ok)
	}
	if _, ok := kbField(s, "VmSwap"); ok {
		t.Fatal("found a missing field")
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatal(m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatal(m)
	}
}

// TestShortRun runs the short mode end to end and checks every section is
// there with positive figures. No timing is asserted.
func TestShortRun(t *testing.T) {
	opts := Options{Short: true, TempDir: t.TempDir()}
	if isRoot() {
		opts.Jmxdp = jmxdpBinary(t)
	}
	res, err := Run(opts)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := res.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	var tab bytes.Buffer
	if err := res.WriteTable(&tab); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(tab.String(), "peak_rss") {
		t.Fatalf("table:\n%s", tab.String())
	}
	t.Logf("\n%s", tab.String())
}

func TestValidateCatchesGaps(t *testing.T) {
	r := &Result{Runs: 1, Machine: ReadMachine()}
	if r.Validate() == nil {
		t.Fatal("empty result validated")
	}
	r.Sections = []Section{{Name: SectionScale, Figures: []Figure{{Name: "x", Value: 1, Baseline: 0, Ratio: 1}}}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), "baseline 0") {
		t.Fatalf("err = %v", err)
	}
}

// A run of some sections has those and no other.
func TestRunOnly(t *testing.T) {
	res, err := Run(Options{Short: true, TempDir: t.TempDir(), Only: []string{SectionScale}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sections) != 1 || res.Sections[0].Name != SectionScale {
		t.Fatalf("sections %+v", res.Sections)
	}
	if _, err := Run(Options{Short: true, Only: []string{"nosuch"}}); err == nil {
		t.Fatal("unknown section accepted")
	}
}

// The Met column says how far a missed target is.
func TestMetString(t *testing.T) {
	yes, no := true, false
	for _, c := range []struct {
		f    Figure
		want string
	}{
		{Figure{}, "-"},
		{Figure{Ratio: 0.5, Target: &Target{On: "ratio", Op: "<=", Bound: 1}, Met: &yes}, "met"},
		{Figure{Ratio: 1.3, Target: &Target{On: "ratio", Op: "<=", Bound: 1}, Met: &no}, "missed by 30%"},
		{Figure{Ratio: 1.05, Target: &Target{On: "ratio", Op: "<=", Bound: 1}, Met: &no}, "missed by 5.0%"},
		{Figure{Ratio: 0.1, Target: &Target{On: "ratio", Op: ">=", Bound: 3}, Met: &no}, "missed by 30.00x"},
		{Figure{Value: 1234, Unit: "frames", Target: &Target{On: "value", Op: "<=", Bound: 0}, Met: &no}, "missed by 1234 frames"},
	} {
		if got := metString(c.f); got != c.want {
			t.Errorf("%+v: %q, want %q", c.f, got, c.want)
		}
	}
}
