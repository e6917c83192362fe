// Package bench measures jmxdp next to baselines run on the same machine in
// the same run, and reports ratios: the program's per-frame cost against a
// trivial XDP_PASS program, counting at line rate against XDP_DROP, live
// capture to disk (CPU per frame written, loss-free rates) against tcpdump
// -w and a recvmmsg collector, offline decoding against tshark, and the
// writer's memory and open files with many concurrent streams. See
// docs/bench.md.
package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Options control a run.
type Options struct {
	// Short is the quick mode (CI): smaller inputs, one run by default.
	Short bool
	// Runs is how many times each figure is measured; the median is kept.
	// 0 means 5 (1 in short mode).
	Runs int
	// TempDir holds the generated capture and the writer's files; "" means
	// os.TempDir(). Everything created there is removed.
	TempDir string
	// Tshark is the tshark binary; "" looks it up in PATH.
	Tshark string
	// Progress, if set, receives a line as each step starts.
	Progress io.Writer
	// Only, if not empty, names the sections to run (Sections); the others
	// are left out of the result.
	Only []string
	// Jmxdp is the jmxdp binary the capture section runs as `jmxdp run`;
	// "" means this executable, when it is jmxdp (SetMain).
	Jmxdp string
}

// Sections are the section names, in the order of a report.
var Sections = []string{SectionProgram, SectionLineRate, SectionCapture, SectionDecode, SectionScale, SectionStreamTable, SectionNATS}

// CheckOnly refuses names in only that are not sections.
func CheckOnly(only []string) error {
	for _, n := range only {
		if !slices.Contains(Sections, n) {
			return fmt.Errorf("no section %q (sections: %s)", n, strings.Join(Sections, ", "))
		}
	}
	return nil
}

// Sizes of the inputs.
const (
	DecodeFrames      = 1_000_000
	DecodeFramesShort = 20_000
	ScaleStreams      = 100_000
	ScaleStreamsShort = 5_000
	// ScaleMaxOpen is the writer's MaxOpen in the scale section.
	ScaleMaxOpen = 512
	// chunk is the repeat count of one BPF_PROG_TEST_RUN call.
	chunk = 10_000
)

// TsharkArgs are tshark's arguments before the file: decode every frame as
// Jmirror on the default port and print its mid and sid (discarded), the
// same per-frame work as jmxdp decode's per-stream counting.
var TsharkArgs = []string{"-n", "-d", "udp.port==30030,jmirror", "-T", "fields", "-e", "jmirror.mid", "-e", "jmirror.sid", "-r"}

// Target is a bound a figure should meet: On ("ratio" or "value") Op
// ("<=", "<", ">=") Bound.
type Target struct {
	On    string  `json:"on"`
	Op    string  `json:"op"`
	Bound float64 `json:"bound"`
}

func (t Target) String() string { return fmt.Sprintf("%s %s %g", t.On, t.Op, t.Bound) }

func (t Target) met(value, ratio float64) bool {
	x := ratio
	if t.On == "value" {
		x = value
	}
	switch t.Op {
	case "<=":
		return x <= t.Bound
	case "<":
		return x < t.Bound
	case ">=":
		return x >= t.Bound
	}
	return false
}

// Figure is one measurement next to its baseline.
type Figure struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Value    float64 `json:"value"`
	Baseline float64 `json:"baseline"`
	// BaselineName says what the baseline is.
	BaselineName string `json:"baseline_name"`
	// Ratio is RatioDesc, e.g. "value/baseline".
	Ratio     float64 `json:"ratio"`
	RatioDesc string  `json:"ratio_desc"`
	Target    *Target `json:"target,omitempty"`
	Met       *bool   `json:"met,omitempty"`
	Note      string  `json:"note,omitempty"`
}

func (f *Figure) check() {
	if f.Target != nil {
		ok := f.Target.met(f.Value, f.Ratio)
		f.Met = &ok
	}
}

// Section is one group of figures. Skipped says why it (or part of it) was
// not measured.
type Section struct {
	Name    string   `json:"name"`
	Figures []Figure `json:"figures"`
	Skipped []string `json:"skipped,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// Result is a whole run.
type Result struct {
	Timestamp time.Time `json:"timestamp"`
	Mode      string    `json:"mode"` // "full" or "short"
	Runs      int       `json:"runs"`
	Machine   Machine   `json:"machine"`
	Sections  []Section `json:"sections"`
	Elapsed   float64   `json:"elapsed_seconds"`
}

// Section names.
const (
	SectionProgram = "program_cost"
	SectionDecode  = "offline_decode"
	SectionScale   = "scale"
)

// Run measures every section. Parts that need root are skipped with a note
// when not root, and the tshark comparison when tshark is missing.
func Run(opts Options) (*Result, error) {
	start := time.Now()
	if err := CheckOnly(opts.Only); err != nil {
		return nil, err
	}
	if opts.Runs <= 0 {
		opts.Runs = 5
		if opts.Short {
			opts.Runs = 1
		}
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	tmp, err := os.MkdirTemp(opts.TempDir, "jmxdp-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	res := &Result{Timestamp: start.UTC(), Mode: "full", Runs: opts.Runs, Machine: ReadMachine()}
	if opts.Short {
		res.Mode = "short"
	}
	want := func(name string) bool { return len(opts.Only) == 0 || slices.Contains(opts.Only, name) }
	// The order they run in: scale first, while the process is at its
	// smallest, so its peak RSS is the writer's and not the decode
	// section's capture. Capture next: every receiver it measures is a
	// process of its own, but this process still starts them and splits
	// tcpdump's files, better done before the heap has grown.
	order := []struct {
		name, progress string
		run            func() (Section, error)
	}{
		{SectionScale, "scale", func() (Section, error) {
			defer os.RemoveAll(filepath.Join(tmp, "streams"))
			return scale(opts, filepath.Join(tmp, "streams"))
		}},
		{SectionCapture, "capture to disk", func() (Section, error) { return captureToDisk(opts, tmp) }},
		{SectionNATS, "nats sink", func() (Section, error) { return natsSink(opts, tmp) }},
		{SectionStreamTable, "stream table", func() (Section, error) { return streamTable(opts) }},
		{SectionProgram, "program cost", func() (Section, error) { return programCost(opts) }},
		{SectionLineRate, "line rate", func() (Section, error) { return lineRate(opts) }},
		{SectionDecode, "offline decode", func() (Section, error) { return offlineDecode(opts, tmp) }},
	}
	got := map[string]Section{}
	for _, o := range order {
		if !want(o.name) {
			continue
		}
		fmt.Fprintln(opts.Progress, "bench: "+o.progress)
		sec, err := o.run()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.progress, err)
		}
		got[o.name] = sec
		runtime.GC()
		debug.FreeOSMemory()
	}
	for _, name := range Sections {
		if sec, ok := got[name]; ok {
			res.Sections = append(res.Sections, sec)
		}
	}
	for i := range res.Sections {
		for j := range res.Sections[i].Figures {
			res.Sections[i].Figures[j].check()
		}
	}
	res.Elapsed = time.Since(start).Seconds()
	return res, nil
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func isRoot() bool { return os.Geteuid() == 0 }

var (
	router    = netip.MustParseAddr("192.0.2.1")
	collector = netip.MustParseAddr("198.51.100.1")
)

// counterVariantNotes says what each counter variant is (bpf/bench/countbench.c).
var counterVariantNotes = map[loader.CounterVariant]string{
	loader.CounterLRUAtomicCoarse: "count floor as jmxdp counted before issue 17: shared LRU hash, atomic adds, bpf_ktime_get_coarse_ns per frame",
	loader.CounterLRUAtomicKtime:  "the same with bpf_ktime_get_ns per frame",
	loader.CounterLRUAtomicLazy:   "the same, last-seen written once per 64 packets of the stream",
	loader.CounterLRUAtomicJiffy:  "the same, the coarse clock read once per jiffy per CPU (bpf_jiffies64, inlined, and a per-CPU copy): jmxdp's counter now",
	loader.CounterLRUPercpuLazy:   "LRU_PERCPU_HASH, plain adds, lazy last-seen",
	loader.CounterHashPercpuFold:  "PERCPU_HASH (no LRU), plain adds, lazy last-seen; a stream finding the table full is folded into its router's total",
	loader.CounterCacheFold:       "a per-CPU direct-mapped cache of streams (1024 slots) in front of the per-CPU hash: a hit is an inlined array lookup and plain adds; a slot's stream is flushed into the table when another takes it",
}

// programCost: ns/frame of jmxdp and of xdp_pass on the same frame,
// alternating chunks of both, for three frames.
func programCost(opts Options) (Section, error) {
	sec := Section{Name: SectionProgram, Note: "BPF_PROG_TEST_RUN, chunks of 10000 repeats alternating jmxdp and xdp_pass; captured frames have no AF_XDP socket and fall back to XDP_PASS"}
	if !isRoot() {
		sec.Skipped = append(sec.Skipped, "not root: loading the XDP program needs CAP_BPF")
		return sec, nil
	}
	p, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return sec, err
	}
	defer p.Close()
	bl, err := loader.LoadBaselines(4096)
	if err != nil {
		return sec, err
	}
	defer bl.Close()
	if err := p.Configure(loader.Config{Policies: []vocab.PolicyRule{
		{MID: 1, AnySID: true, Action: vocab.ActionCount},
		{MID: 2, AnySID: true, Action: vocab.ActionCapture},
	}}); err != nil {
		return sec, err
	}
	echo := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 32)
	counted, err := gen.Mirror{Router: router, Collector: collector, MID: 1, SID: 1, Inner: echo}.Frame()
	if err != nil {
		return sec, err
	}
	captured, err := gen.Mirror{Router: router, Collector: collector, MID: 2, SID: 2, Inner: echo}.Frame()
	if err != nil {
		return sec, err
	}
	// A 9000-byte frame, as a jumbo-MTU link carries: BPF_PROG_TEST_RUN
	// splits it into fragments, as the NIC does.
	jumboInner := gen.InnerIPv4UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1000, 2000,
		make([]byte, 9000-14-20-16-28))
	jumbo, err := gen.Mirror{Router: router, Collector: collector, MID: 1, SID: 3, Inner: jumboInner}.Frame()
	if err != nil {
		return sec, err
	}
	type benchFunc func([]byte, int) (vocab.Verdict, time.Duration, error)
	type costCase struct {
		name   string
		frame  []byte
		target *Target
		prog   benchFunc
		desc   string
		note   string
	}
	cases := []costCase{
		{"not_jmirror", gen.NotJmirrorTCPSyn(router, collector, 40000, 22), nil, p.Benchmark, "jmxdp/xdp_pass", ""},
		{"counted", counted, &Target{On: "ratio", Op: "<=", Bound: 3}, p.Benchmark, "jmxdp/xdp_pass", ""},
		{"captured", captured, nil, p.Benchmark, "jmxdp/xdp_pass", ""},
		{"counted_9000", jumbo, nil, p.Benchmark, "jmxdp/xdp_pass", "a 9000-byte counted frame, in fragments (multi-buffer XDP)"},
		{"count_floor", counted, nil, bl.CountFloor, "xdp_count_floor/xdp_pass",
			"not jmxdp: xdp_count_floor, the least a per-stream counter costs (one stream-table lookup, two atomic adds, a timestamp; no parsing), on the counted frame: the part of counted's cost no parser or policy change removes"},
	}
	// The counter variants of issue 17 (bpf/bench/countbench.c), each the count
	// floor with one way of counting, on the same frame.
	cb, err := loader.LoadCountBench(loader.CountBenchOptions{})
	if err != nil {
		return sec, err
	}
	defer cb.Close()
	for _, v := range loader.CounterVariants() {
		cases = append(cases, costCase{"counter_" + string(v), counted, nil,
			func(f []byte, n int) (vocab.Verdict, time.Duration, error) { return cb.Benchmark(v, f, n) },
			"variant/xdp_pass", "not jmxdp: " + counterVariantNotes[v]})
	}
	pairs := 20 // chunk pairs per run
	if opts.Short {
		pairs = 5
	}
	for _, c := range cases {
		var progs, passes []float64
		for range opts.Runs {
			var prog, pass time.Duration
			for range pairs {
				_, d, err := c.prog(c.frame, chunk)
				if err != nil {
					return sec, err
				}
				_, db, err := bl.Pass(c.frame, chunk)
				if err != nil {
					return sec, err
				}
				prog += d
				pass += db
			}
			progs = append(progs, float64(prog.Nanoseconds())/float64(pairs))
			passes = append(passes, float64(pass.Nanoseconds())/float64(pairs))
		}
		v, b := median(progs), median(passes)
		sec.Figures = append(sec.Figures, Figure{
			Name: c.name, Unit: "ns/frame", Value: v, Baseline: b, BaselineName: "xdp_pass",
			Ratio: v / b, RatioDesc: c.desc, Target: c.target, Note: c.note,
		})
	}
	return sec, nil
}

// offlineDecode times decode.Files with both engines and tshark over the
// same generated capture.
func offlineDecode(opts Options, tmp string) (Section, error) {
	n := DecodeFrames
	if opts.Short {
		n = DecodeFramesShort
	}
	sec := Section{Name: SectionDecode}
	cfg := gen.DefaultTraffic()
	cfg.Packets = n
	pkts, _, err := gen.Traffic(cfg)
	if err != nil {
		return sec, err
	}
	nframes := len(pkts)
	pcap := filepath.Join(tmp, "traffic.pcap")
	f, err := os.OpenFile(pcap, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return sec, err
	}
	if err := gen.WritePcap(f, pkts); err != nil {
		f.Close()
		return sec, err
	}
	if err := f.Close(); err != nil {
		return sec, err
	}
	pkts = nil
	runtime.GC()
	debug.FreeOSMemory()

	tshark := opts.Tshark
	if tshark == "" {
		tshark, _ = exec.LookPath("tshark")
	}
	sec.Note = fmt.Sprintf("%d frames (%d Jmirror datagrams, gen.DefaultTraffic mix); tshark: tshark %s FILE > /dev/null; ratio = tshark time / jmxdp time",
		nframes, n, joinArgs(TsharkArgs))
	if tshark == "" {
		sec.Skipped = append(sec.Skipped, "tshark not found: no baseline")
		return sec, nil
	}
	engines := []struct {
		name   string
		engine decode.Engine
		target float64
	}{{"go", decode.EngineGo, 50}, {"bpf", decode.EngineBPF, 10}}
	if !isRoot() {
		engines = engines[:1]
		sec.Skipped = append(sec.Skipped, "not root: BPF engine (BPF_PROG_TEST_RUN needs CAP_BPF)")
	}
	times := make([][]float64, len(engines))
	var tsh []float64
	log := slog.New(slog.DiscardHandler)
	for range opts.Runs {
		// Alternate tshark and the engines in every run.
		for i, e := range engines {
			t0 := time.Now()
			rep, err := decode.Files([]string{pcap}, decode.Options{Engine: e.engine, MaxStreams: 1 << 16, Logger: log})
			if err != nil {
				return sec, fmt.Errorf("%s engine: %w", e.name, err)
			}
			times[i] = append(times[i], time.Since(t0).Seconds())
			if rep.StreamsTotal == 0 {
				return sec, fmt.Errorf("%s engine found no stream", e.name)
			}
		}
		t0 := time.Now()
		cmd := exec.Command(tshark, append(slices.Clone(TsharkArgs), pcap)...)
		cmd.Stdout = io.Discard
		var stderr limitedBuffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return sec, fmt.Errorf("tshark: %w: %s", err, stderr.b)
		}
		tsh = append(tsh, time.Since(t0).Seconds())
	}
	tm := median(tsh)
	for i, e := range engines {
		v := median(times[i])
		sec.Figures = append(sec.Figures, Figure{
			Name: e.name, Unit: "s", Value: v, Baseline: tm, BaselineName: "tshark",
			Ratio: tm / v, RatioDesc: "tshark/jmxdp",
			Target: &Target{On: "ratio", Op: ">=", Bound: e.target},
			Note:   fmt.Sprintf("%.0f frames/s", float64(nframes)/v),
		})
	}
	return sec, nil
}

func joinArgs(a []string) string {
	s := ""
	for i, x := range a {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// scale writes one packet to each of n streams, then a second round, with
// a writer.Manager in this process, and reads its RSS and open files.
func scale(opts Options, dir string) (Section, error) {
	n := ScaleStreams
	if opts.Short {
		n = ScaleStreamsShort
	}
	sec := Section{Name: SectionScale, Note: fmt.Sprintf("%d streams, one packet each, twice, through writer.Manager (MaxOpen %d) in the bench process itself, measured once before the other sections; RSS from /proc/self/status, files from /proc/self/fd",
		n, ScaleMaxOpen)}
	runtime.GC()
	debug.FreeOSMemory()
	before, err := procStatus("VmRSS")
	if err != nil {
		return sec, err
	}
	fdsBefore, err := countFDs()
	if err != nil {
		return sec, err
	}
	m, err := writer.New(writer.Config{Dir: dir, MaxOpen: ScaleMaxOpen})
	if err != nil {
		return sec, err
	}
	pkt := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 32)
	ts := time.Now()
	maxFDs := 0
	t0 := time.Now()
	for round := range 2 {
		for i := range n {
			k := writer.Key{MID: uint32(i/100 + 1), SID: uint32(i%100 + 1)}
			m.Write(k, ts.Add(time.Duration(round*n+i)*time.Microsecond), router, pcapng.LinkRawIP, pkt)
			if i%1000 == 999 {
				fds, err := countFDs()
				if err != nil {
					m.Close()
					return sec, err
				}
				maxFDs = max(maxFDs, fds-fdsBefore)
			}
		}
	}
	elapsed := time.Since(t0)
	st := m.Stats()
	peak, err := procStatus("VmHWM")
	if err != nil {
		m.Close()
		return sec, err
	}
	if err := m.Close(); err != nil {
		return sec, err
	}
	if st.Streams != n {
		return sec, fmt.Errorf("writer remembers %d streams, want %d", st.Streams, n)
	}
	if drops := sumDrops(st.Drops[:]); drops > 0 {
		return sec, fmt.Errorf("writer dropped %d packets", drops)
	}
	mib := func(kib uint64) float64 { return float64(kib) / 1024 }
	sec.Figures = append(sec.Figures,
		Figure{Name: "peak_rss", Unit: "MiB", Value: mib(peak), Baseline: mib(before), BaselineName: "RSS before the writer",
			Ratio: float64(peak) / float64(before), RatioDesc: "peak/before",
			Target: &Target{On: "value", Op: "<", Bound: 512},
			Note:   fmt.Sprintf("VmHWM of the process; %.0f B/stream above the baseline; %d packets in %.1fs", float64(peak-min(before, peak))*1024/float64(n), 2*n, elapsed.Seconds())},
		Figure{Name: "open_files", Unit: "files", Value: float64(maxFDs), Baseline: ScaleMaxOpen, BaselineName: "MaxOpen",
			Ratio: float64(maxFDs) / ScaleMaxOpen, RatioDesc: "open/MaxOpen",
			Target: &Target{On: "value", Op: "<=", Bound: ScaleMaxOpen + 1},
			Note:   fmt.Sprintf("most descriptors open above the starting count, sampled every 1000 writes (MaxOpen + the lock file at most); %d evictions, %d reopens", st.Evictions, st.Reopens)},
	)
	return sec, nil
}

func sumDrops(d []uint64) uint64 {
	var s uint64
	for _, x := range d {
		s += x
	}
	return s
}

func countFDs() (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	return len(ents) - 1, nil // the directory being read
}

// procStatus reads a kB field of /proc/self/status.
func procStatus(field string) (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	v, ok := kbField(string(b), field)
	if !ok {
		return 0, errors.New("no " + field + " in /proc/self/status")
	}
	return v, nil
}
