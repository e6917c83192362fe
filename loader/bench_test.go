package loader_test

import (
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// BenchmarkProgram measures the program's per-frame cost in the kernel
// (BPF_PROG_TEST_RUN) next to a trivial XDP_PASS program, alternating the
// two in the same run so the ratio holds on a noisy machine. Metrics:
// ns/frame for jmxdp and for xdp_pass, and x_pass, their ratio.
func BenchmarkProgram(b *testing.B) {
	echo := ipv4Echo()
	counted := mirror(1, 1, echo)
	captured := mirror(2, 2, echo)
	cases := []struct {
		name  string
		frame func(b *testing.B) []byte
		want  vocab.Verdict
	}{
		{"not_jmirror", func(*testing.B) []byte { return gen.NotJmirrorTCPSyn(router1, collector, 40000, 22) }, pass},
		{"counted", func(b *testing.B) []byte { return mustFrame(b, counted) }, drop},
		// Captured frames fall back to XDP_PASS here: no AF_XDP socket is
		// registered, so this measures the redirect lookup and fallback.
		{"captured", func(b *testing.B) []byte { return mustFrame(b, captured) }, pass},
		// A 9000-byte frame: BPF_PROG_TEST_RUN puts it in fragments.
		{"counted_9000", func(b *testing.B) []byte {
			return mustFrame(b, mirror(1, 3, gen.InnerIPv4UDP(subA, subB, 1, 2, make([]byte, 9000-14-20-16-28))))
		}, drop},
	}
	p := loadProgram(b, loader.Config{Policies: []vocab.PolicyRule{
		{MID: 1, AnySID: true, Action: vocab.ActionCount},
		{MID: 2, AnySID: true, Action: vocab.ActionCapture},
	}})
	bl := loadBaselines(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := c.frame(b)
			const chunk = 10000
			var prog, base time.Duration
			var runs int
			for b.Loop() {
				// Alternate chunks of both programs, so drift hits both.
				v, d, err := p.Benchmark(f, chunk)
				if err != nil {
					b.Fatal(err)
				}
				if v != c.want {
					b.Fatalf("verdict %v, want %v", v, c.want)
				}
				_, db, err := bl.Pass(f, chunk)
				if err != nil {
					b.Fatal(err)
				}
				prog += d
				base += db
				runs++
			}
			b.ReportMetric(float64(prog.Nanoseconds())/float64(runs), "ns/frame")
			b.ReportMetric(float64(base.Nanoseconds())/float64(runs), "pass-ns/frame")
			b.ReportMetric(float64(prog)/float64(base), "x_pass")
		})
	}
}

// BenchmarkHeaderPaths measures what parsing headers that are not in the
// linear part costs on a 9000-byte counted frame whose linear part holds
// only its Ethernet header (14 bytes), side by side in one run:
//   - linear: the frame as BPF_PROG_TEST_RUN lays it out by default (the
//     headers linear), the baseline;
//   - pull: split, on a program that pulls the headers in
//     (bpf_xdp_pull_data; the pull stays for later repeats, so this is the
//     linear parse over a split frame's buffers);
//   - copy: split, on a program forced to copy them (bpf_xdp_load_bytes
//     into the scratch buffer) on every frame, as older kernels do.
//
// Metrics: ns/frame of each, and x_linear, copy over linear.
func BenchmarkHeaderPaths(b *testing.B) {
	cfg := loader.Config{DefaultAction: vocab.ActionCount}
	pull := loadProgram(b, cfg)
	cp := loadProgramWith(b, loader.Options{MaxStreams: 4096, ForceHeaderCopy: true}, cfg)
	f := mustFrame(b, mirror(1, 3, gen.InnerIPv4UDP(subA, subB, 1, 2, make([]byte, 9000-14-20-16-28))))
	const chunk, linear = 10000, 14
	var dLinear, dPull, dCopy time.Duration
	var runs int
	for b.Loop() {
		// Alternate the three, so drift hits all.
		for _, r := range []struct {
			run func() (vocab.Verdict, time.Duration, error)
			sum *time.Duration
		}{
			{func() (vocab.Verdict, time.Duration, error) { return pull.Benchmark(f, chunk) }, &dLinear},
			{func() (vocab.Verdict, time.Duration, error) { return pull.BenchmarkSplit(f, linear, chunk) }, &dPull},
			{func() (vocab.Verdict, time.Duration, error) { return cp.BenchmarkSplit(f, linear, chunk) }, &dCopy},
		} {
			v, d, err := r.run()
			if err != nil {
				b.Fatal(err)
			}
			if v != drop {
				b.Fatalf("verdict %v, want %v", v, drop)
			}
			*r.sum += d
		}
		runs++
	}
	b.ReportMetric(float64(dLinear.Nanoseconds())/float64(runs), "linear-ns/frame")
	b.ReportMetric(float64(dPull.Nanoseconds())/float64(runs), "pull-ns/frame")
	b.ReportMetric(float64(dCopy.Nanoseconds())/float64(runs), "copy-ns/frame")
	b.ReportMetric(float64(dCopy)/float64(dLinear), "x_linear")
}

func mustFrame(b *testing.B, m gen.Mirror) []byte {
	b.Helper()
	f, err := m.Frame()
	if err != nil {
		b.Fatal(err)
	}
	return f
}
