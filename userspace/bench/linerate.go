package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// SectionLineRate is the frames per second jmxdp counts on a live
// interface, next to what a trivial XDP_DROP program receives.
const SectionLineRate = "line_rate"

// How long each blast lasts, and the streams it cycles over.
const (
	LineRateBlast      = 3 * time.Second
	LineRateBlastShort = 300 * time.Millisecond
	lineRateIntercepts = 8
	lineRateSessions   = 4
	// lineRateInner is the mirrored packet's size: the smallest of simple
	// IMIX, the most frames per second.
	lineRateInner = 64
)

// lineRate blasts the host end of a fresh veth lab with Jmirror frames
// from xmit, once with xdp_drop attached (driver mode) and once with jmxdp
// counting every stream, alternately, for each run. The received rate is
// xdp_drop's drops as veth counts them (the program itself counts
// nothing), or jmxdp's action_count counter, over the sender's busy time.
func lineRate(opts Options) (Section, error) {
	blast := LineRateBlast
	if opts.Short {
		blast = LineRateBlastShort
	}
	runs := opts.Runs
	if runs <= 0 {
		runs = 5
		if opts.Short {
			runs = 1
		}
	}
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	sec := Section{Name: SectionLineRate, Note: fmt.Sprintf(
		"veth lab; xmit (BPF_PROG_TEST_RUN live frames, one thread) sends %s blasts of %d-byte Jmirror frames (%d-byte mirrored packet) over %d x %d streams from the router end; "+
			"the host end runs xdp_drop or jmxdp (every stream count) in driver mode, alternating, which goes first alternating between runs; "+
			"veth runs the receiver in the sender's softirq on the same CPU, so a rate is frames per second of the sending thread's CPU time in its calls (the whole path: xmit, veth, program; not the fixed sleep that ends each call), and the ratio understates jmxdp's own cost",
		blast, lineRateFrameLen(), lineRateInner, lineRateIntercepts, lineRateSessions)}
	if !isRoot() {
		sec.Skipped = append(sec.Skipped, "not root: the veth lab, XDP attach and BPF_PROG_TEST_RUN need root")
		return sec, nil
	}

	one, err := lineRateLab(1, []lineRateSend{{threads: 1, shared: true}}, runs, blast, progress)
	if err != nil {
		return sec, err
	}
	r := one[0]
	sec.Figures = append(sec.Figures, Figure{
		Name: "counted_rate", Unit: "Mpps", Value: r.count, Baseline: r.drop, BaselineName: "xdp_drop",
		Ratio: r.count / r.drop, RatioDesc: "jmxdp/xdp_drop",
		Target: &Target{On: "ratio", Op: ">=", Bound: 0.9},
		Note:   r.note,
	})
	// The forward action's rate on the same kind of lab: one forwarded
	// stream redirected out of a second veth pair, counted where it
	// arrives, next to xdp_drop on the host end in the same run.
	fr, err := forwardRate(runs, blast, progress)
	if err != nil {
		return sec, err
	}
	sec.Figures = append(sec.Figures, Figure{
		Name: "forward_rate", Unit: "Mpps", Value: fr.fwd, Baseline: fr.drop, BaselineName: "xdp_drop",
		Ratio: fr.fwd / fr.drop, RatioDesc: "jmxdp forward/xdp_drop",
		Note: "one forwarded stream (IPv4 to an IPv4 target), each frame re-originated by the program and redirected (bpf_redirect_map) out of a second veth pair whose target end runs xdp_drop; " +
			"the rate is the frames that arrive there per second of the sender thread's CPU time, which on veth includes the redirect and the target end's XDP; " + fr.note,
	})
	// Two RX queues, one sender thread then two: veth hands each frame
	// to the RX queue of the sending CPU, so two threads on two CPUs load
	// both queues, each counted on its own CPU.
	if runtime.NumCPU() < 2 {
		sec.Skipped = append(sec.Skipped, "one CPU: no two-queue figures")
		return sec, nil
	}
	// 1 CPU; 2 CPUs each with streams of its own (as RSS keeps a flow on
	// one queue); 2 CPUs sending the same streams (every stream entry
	// written from both: the worst case for shared counters).
	two, err := lineRateLab(2, []lineRateSend{{threads: 1}, {threads: 2}, {threads: 2, shared: true}}, runs, blast, progress)
	if err != nil {
		return sec, err
	}
	for _, r := range two {
		name, how := fmt.Sprintf("counted_rate_2q_%dcpu", r.threads), "its own streams on each CPU"
		if r.threads > 1 && r.shared {
			name, how = name+"_shared", "the same streams on both CPUs"
		}
		sec.Figures = append(sec.Figures, Figure{
			Name: name, Unit: "Mpps", Value: r.count, Baseline: r.drop, BaselineName: "xdp_drop",
			Ratio: r.count / r.drop, RatioDesc: "jmxdp/xdp_drop",
			Note: fmt.Sprintf("veth with 2 RX queues, %d sender thread(s) pinned one per CPU, %s; a rate is frames per second of one sender thread's CPU time times the threads (what the CPUs count in parallel); %s", r.threads, how, r.note),
		})
	}
	for i, name := range []string{"counted_scaling_2q", "counted_scaling_2q_shared"} {
		one, two := two[0], two[1+i]
		sec.Figures = append(sec.Figures, Figure{
			Name: name, Unit: "x", Value: two.count / one.count,
			Baseline: two.drop / one.drop, BaselineName: "xdp_drop 2 CPUs / 1 CPU",
			Ratio: (two.count / one.count) / (two.drop / one.drop), RatioDesc: "jmxdp scaling/xdp_drop scaling",
			Note: "jmxdp's rate on 2 CPUs over its rate on 1 (2 is linear), next to xdp_drop's: a cache line every CPU writes would pull jmxdp's below",
		})
	}
	return sec, nil
}

// lineRateSend is how one set of blasts sends: threads sender threads,
// every CPU sending the same streams (shared) or each its own.
type lineRateSend struct {
	threads int
	shared  bool
}

// lineRateResult is one lab's medians for one lineRateSend.
type lineRateResult struct {
	lineRateSend
	count, drop float64 // Mpps
	note        string
}

// lineRateLab brings up a fresh veth lab with queues RX queues per end
// and, for each number of sender threads, blasts its host end runs times
// with xdp_drop attached and with jmxdp counting every stream,
// alternating. The received rate is xdp_drop's drops as veth counts them
// (the program itself counts nothing), or jmxdp's action_count counter,
// over the sender threads' busy time, times the threads.
func lineRateLab(queues int, sends []lineRateSend, runs int, blast time.Duration, progress io.Writer) (_ []lineRateResult, err error) {
	cfg := lab.Random("jmxbench")
	cfg.Queues = queues
	l, err := lab.Up(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if derr := lab.Down(cfg); derr != nil {
			fmt.Fprintf(progress, "bench: line rate: %v\n", derr)
		}
	}()
	inner := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, lineRateInner-28)
	frame, err := gen.Mirror{DstMAC: l.HostMAC, Router: router, Collector: l.HostAddr.Addr(), Inner: inner}.Frame()
	if err != nil {
		return nil, err
	}
	p, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		return nil, err
	}
	var out []lineRateResult
	for _, snd := range sends {
		xo := xmit.Options{
			Iface: l.RouterIface, Netns: l.Name, Templates: [][]byte{frame},
			Intercepts: lineRateIntercepts, Sessions: lineRateSessions, BaseMID: 1, BaseSID: 1,
			Duration: blast, Threads: snd.threads, StreamsPerCPU: !snd.shared,
		}
		if queues > 1 {
			// One thread per CPU, from CPU 0: one RX queue each.
			for c := range snd.threads {
				xo.CPUs = append(xo.CPUs, c)
			}
		}
		r, err := blastBoth(l, p, xo, runs, progress)
		if err != nil {
			return nil, err
		}
		r.lineRateSend = snd
		out = append(out, r)
	}
	return out, nil
}

// blastBoth runs blasts against xdp_drop and jmxdp, alternating which goes
// first between runs, and returns the medians.
func blastBoth(l *lab.Lab, p *loader.Program, xo xmit.Options, runs int, progress io.Writer) (lineRateResult, error) {
	type tally struct{ sent, received uint64 }
	var dropRates, countRates []float64
	var drop, count tally
	cpus := map[int]bool{}
	rate := func(n uint64, st xmit.Stats) float64 {
		for c, k := range st.PerCPU {
			if k > 0 {
				cpus[c] = true
			}
		}
		return float64(n) / busySeconds(st) * float64(max(xo.Threads, 1)) / 1e6
	}
	// One blast against xdp_drop: frames dropped per second.
	runDrop := func() error {
		st, dropped, err := dropBlast(l, xo)
		if err != nil {
			return err
		}
		drop.sent += st.Sent
		drop.received += dropped
		dropRates = append(dropRates, rate(dropped, st))
		return nil
	}
	// One blast against jmxdp: frames counted per second.
	runCount := func() (err error) {
		if _, err := p.Attach(l.HostIface, loader.ModeDriver); err != nil {
			return err
		}
		defer func() { err = errors.Join(err, p.Detach()) }()
		before, err := p.Maps.Counters()
		if err != nil {
			return err
		}
		st, err := xmit.Run(context.Background(), xo)
		if err != nil {
			return err
		}
		after, err := p.Maps.Counters()
		if err != nil {
			return err
		}
		n := after[vocab.StatActionCount] - before[vocab.StatActionCount]
		count.sent += st.Sent
		count.received += n
		countRates = append(countRates, rate(n, st))
		return nil
	}
	queuesBefore, _ := xmit.DeviceStats(l.HostIface)
	if err := alternate(runs, runDrop, runCount, func(i int) {
		fmt.Fprintf(progress, "bench: line rate: %d thread(s), run %d/%d\n", max(xo.Threads, 1), i+1, runs)
	}); err != nil {
		return lineRateResult{}, err
	}
	v, b := median(countRates), median(dropRates)
	if !(v > 0 && b > 0) || math.IsInf(v, 0) || math.IsInf(b, 0) {
		return lineRateResult{}, fmt.Errorf("line rate: jmxdp %.3g Mpps, xdp_drop %.3g Mpps: nothing received", v, b)
	}
	queuesAfter, _ := xmit.DeviceStats(l.HostIface)
	return lineRateResult{count: v, drop: b, note: fmt.Sprintf(
		"over %d runs: jmxdp sent %d, counted %d; xdp_drop sent %d, dropped %d; frames sent from %d CPU(s); per RX queue: %s",
		runs, count.sent, count.received, drop.sent, drop.received, len(cpus), queueSplit(queuesBefore, queuesAfter))}, nil
}

// alternate runs a and b, runs times, which goes first alternating
// between runs; each is told the run's index first.
func alternate(runs int, a, b func() error, each func(run int)) error {
	for i := range runs {
		each(i)
		first, second := a, b
		if i%2 == 1 {
			first, second = b, a
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
	}
	return nil
}

// dropBlast runs one blast with xdp_drop on l's host end: what xmit sent,
// and the frames xdp_drop dropped as veth counts them (the program itself
// counts nothing).
func dropBlast(l *lab.Lab, xo xmit.Options) (xmit.Stats, uint64, error) {
	d, err := xmit.AttachDrop(l.HostIface)
	if err != nil {
		return xmit.Stats{}, 0, err
	}
	defer d.Close()
	before, err := xmit.XDPDrops(l.HostIface)
	if err != nil {
		return xmit.Stats{}, 0, err
	}
	st, err := xmit.Run(context.Background(), xo)
	if err != nil {
		return xmit.Stats{}, 0, err
	}
	after, err := xmit.XDPDrops(l.HostIface)
	if err != nil {
		return xmit.Stats{}, 0, err
	}
	return st, after - before, nil
}

// queueSplit is how many frames each RX queue's XDP program saw
// (veth's rx_queue_N_xdp_packets) between two readings of its statistics.
func queueSplit(before, after map[string]uint64) string {
	var parts []string
	for q := 0; q < lab.MaxQueues; q++ {
		k := fmt.Sprintf("rx_queue_%d_xdp_packets", q)
		a, ok := after[k]
		if !ok {
			break
		}
		parts = append(parts, fmt.Sprintf("q%d %d", q, a-before[k]))
	}
	if len(parts) == 0 {
		return "not reported by the driver"
	}
	return strings.Join(parts, ", ")
}

// busySeconds is the time a blast kept the path busy: the sender's CPU
// time in its calls, which includes the receiver (veth receives in the
// sender's softirq) but not the fixed sleep each live-frames call ends with,
// which would pull both rates, and so the ratio, towards each other.
func busySeconds(st xmit.Stats) float64 {
	if st.Busy > 0 {
		return st.Busy.Seconds()
	}
	return st.Elapsed.Seconds()
}

// lineRateFrameLen is the blast's frame length: Ethernet, outer IPv4, UDP,
// Jmirror, then the mirrored packet.
func lineRateFrameLen() int { return 14 + 20 + 8 + gen.HeaderLen + lineRateInner }
