package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/lab"
	"github.com/jmxdp/jmxdp/userspace/xmit"
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

	cfg := lab.Random("jmxbench")
	l, err := lab.Up(cfg)
	if err != nil {
		return sec, err
	}
	defer func() {
		if derr := lab.Down(cfg); derr != nil {
			fmt.Fprintf(progress, "bench: line rate: %v\n", derr)
		}
	}()
	inner := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, lineRateInner-28)
	frame, err := gen.Mirror{DstMAC: l.HostMAC, Router: router, Collector: l.HostAddr.Addr(), Inner: inner}.Frame()
	if err != nil {
		return sec, err
	}
	p, err := loader.Load(loader.Options{MaxStreams: 4096, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return sec, err
	}
	defer p.Close()
	if err := p.Configure(loader.Config{DefaultAction: maps.ActionCount}); err != nil {
		return sec, err
	}
	xo := xmit.Options{
		Iface: l.RouterIface, Netns: l.Name, Templates: [][]byte{frame},
		Intercepts: lineRateIntercepts, Sessions: lineRateSessions, BaseMID: 1, BaseSID: 1,
		Duration: blast,
	}

	type tally struct{ sent, received uint64 }
	var dropRates, countRates []float64
	var drop, count tally
	// One blast against xdp_drop: frames dropped per second.
	runDrop := func() error {
		d, err := xmit.AttachDrop(l.HostIface)
		if err != nil {
			return err
		}
		defer d.Close()
		before, err := xmit.XDPDrops(l.HostIface)
		if err != nil {
			return err
		}
		st, err := xmit.Run(context.Background(), xo)
		if err != nil {
			return err
		}
		after, err := xmit.XDPDrops(l.HostIface)
		if err != nil {
			return err
		}
		drop.sent += st.Sent
		drop.received += after - before
		dropRates = append(dropRates, float64(after-before)/busySeconds(st)/1e6)
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
		n := after[maps.StatActionCount] - before[maps.StatActionCount]
		count.sent += st.Sent
		count.received += n
		countRates = append(countRates, float64(n)/busySeconds(st)/1e6)
		return nil
	}
	for i := range runs {
		fmt.Fprintf(progress, "bench: line rate: run %d/%d\n", i+1, runs)
		first, second := runDrop, runCount
		if i%2 == 1 {
			first, second = runCount, runDrop
		}
		if err := first(); err != nil {
			return sec, err
		}
		if err := second(); err != nil {
			return sec, err
		}
	}
	v, b := median(countRates), median(dropRates)
	if !(v > 0 && b > 0) || math.IsInf(v, 0) || math.IsInf(b, 0) {
		return sec, fmt.Errorf("line rate: jmxdp %.3g Mpps, xdp_drop %.3g Mpps: nothing received", v, b)
	}
	sec.Figures = append(sec.Figures, Figure{
		Name: "counted_rate", Unit: "Mpps", Value: v, Baseline: b, BaselineName: "xdp_drop",
		Ratio: v / b, RatioDesc: "jmxdp/xdp_drop",
		Target: &Target{On: "ratio", Op: ">=", Bound: 0.9},
		Note: fmt.Sprintf("over %d runs: jmxdp sent %d, counted %d; xdp_drop sent %d, dropped %d",
			runs, count.sent, count.received, drop.sent, drop.received),
	})
	return sec, nil
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
