package bench

import (
	"errors"
	"fmt"
	"math"
)

// Validate reports what r lacks: a machine, every section and, in each,
// figures with positive values, baselines and ratios (or a note saying why
// a part was skipped). It asserts no timing.
func (r *Result) Validate() error {
	var errs []error
	if r.Timestamp.IsZero() || r.Machine.Kernel == "" || r.Machine.CPUs <= 0 || r.Machine.GoVersion == "" || r.Runs <= 0 {
		errs = append(errs, fmt.Errorf("incomplete header: %v %+v runs %d", r.Timestamp, r.Machine, r.Runs))
	}
	want := map[string]int{SectionProgram: 4, SectionLineRate: 1, SectionCapture: 2, SectionDecode: 2, SectionScale: 2, SectionStreamTable: 3, SectionNATS: 3}
	for _, s := range r.Sections {
		n, ok := want[s.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("unexpected section %q", s.Name))
			continue
		}
		delete(want, s.Name)
		if len(s.Figures) < n && len(s.Skipped) == 0 {
			errs = append(errs, fmt.Errorf("section %s: %d figures, want %d", s.Name, len(s.Figures), n))
		}
		for _, f := range s.Figures {
			// A loss-free rate is 0 when a system lost at the lowest rate.
			// The NATS section's too, and a loss or a short mode's CPU is 0.
			if (s.Name == SectionCapture || s.Name == SectionNATS) && f.Value >= 0 && f.Baseline >= 0 && !math.IsNaN(f.Ratio) {
				continue
			}
			if !(f.Value > 0 && f.Baseline > 0 && f.Ratio > 0) {
				errs = append(errs, fmt.Errorf("section %s figure %s: value %v baseline %v ratio %v", s.Name, f.Name, f.Value, f.Baseline, f.Ratio))
			}
			if f.Target != nil && f.Met == nil {
				errs = append(errs, fmt.Errorf("section %s figure %s: target without met", s.Name, f.Name))
			}
		}
	}
	for name := range want {
		errs = append(errs, fmt.Errorf("section %s missing", name))
	}
	return errors.Join(errs...)
}
