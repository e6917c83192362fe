package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
)

// The capture section's loss-free ladder: each receiver is offered one rate
// after another, each step measured (sent, written, CPU from wait4), until
// a step loses frames; captureLadders gathers the runs into figures.

// captureStep is one run of a receiver: what was offered and what ended up
// in files.
type captureStep struct {
	Rate    float64 // asked for, frames/s; 0: as fast as possible
	Offered float64 // achieved, frames/s
	Sent    uint64
	Written uint64
	Loss    float64 // 1 - Written/Sent
	Elapsed time.Duration
	// Lost says where the system counted its losses.
	Lost string
	// SplitRate is tcpdump's split per stream, frames/s (0 otherwise).
	SplitRate float64
	Streams   int // files with packets
	// CPU is the receiver process's user + system time (wait4), Lifetime
	// the time from its start to the signal that stopped it.
	CPU, Lifetime time.Duration
}

// ladder offers each rate in turn to sys writing in d, until a step loses
// packets.
func (cb *captureBench) ladder(d captureDir, sys captureSystem, run int) ([]captureStep, error) {
	var steps []captureStep
	for _, rate := range cb.rates {
		cb.seq++
		out := filepath.Join(d.path, fmt.Sprintf("%s-%d", sys.name(), cb.seq))
		st, err := cb.step(sys, out, cb.ladderPlan(rate))
		os.RemoveAll(out)
		if err != nil {
			return steps, err
		}
		fmt.Fprintf(cb.opts.Progress, "bench: capture run %d %s %s: offered %.0f kpps (asked %s), sent %d, written %d, loss %.4f%s\n",
			run+1, d.name, sys.name(), st.Offered/1e3, rateName(rate), st.Sent, st.Written, st.Loss, prefixed(" (", st.Lost, ")"))
		if captureStepHook != nil {
			captureStepHook(d.name, sys.name(), st)
		}
		steps = append(steps, st)
		if st.Written < st.Sent {
			break
		}
	}
	return steps, nil
}

func prefixed(pre, s, post string) string {
	if s == "" {
		return ""
	}
	return pre + s + post
}

// sendPlan is what the sender sends in one step.
type sendPlan struct {
	rate                 float64 // frames/s; 0: as fast as possible
	frames               uint64
	burst, threads       int // 0: xmit's defaults (no cap, one thread)
	intercepts, sessions int
}

// ladderPlan is a ladder step at rate: pacing is by bursts, and each
// live-frames call sleeps tens of ms after its burst, so many threads,
// each with its share of the rate, in bursts of captureBurst or
// 1/captureCalls s worth.
func (cb *captureBench) ladderPlan(rate float64) sendPlan {
	p := sendPlan{rate: rate, frames: uint64(rate * cb.stepTime.Seconds()), intercepts: cb.intercepts, sessions: cb.sessions}
	switch {
	case rate > 0:
		p.burst, p.threads = max(captureBurst, int(rate/captureCalls)), captureThreads
	case cb.opts.Short:
		p.frames = captureFastFramesShort
	default:
		p.frames = captureFastFrames
	}
	return p
}

// options are xmit's options for p.
func (cb *captureBench) options(p sendPlan) xmit.Options {
	return xmit.Options{
		Iface: cb.lab.RouterIface, Netns: cb.lab.Name, Templates: cb.templates,
		Intercepts: p.intercepts, Sessions: p.sessions, BaseMID: 1, BaseSID: 1,
		Rate: p.rate, Packets: p.frames, MaxBurst: p.burst, Threads: p.threads,
	}
}

// sendLimit bounds a send: twice its nominal time plus slack for a slow
// box, or 30 s as fast as possible.
func sendLimit(p sendPlan) time.Duration {
	if p.rate <= 0 {
		return 30 * time.Second
	}
	return 2*time.Duration(float64(p.frames)/p.rate*float64(time.Second)) + 10*time.Second
}

// startSystem attaches xdp_pass for a system that needs it and starts the
// system with cb.nofile. release detaches; call it once the system stopped.
func (cb *captureBench) startSystem(sys captureSystem, out string) (release func(), err error) {
	release = func() {}
	if sys.passThrough() {
		pass, err := xmit.AttachPass(cb.lab.HostIface)
		if err != nil {
			return release, err
		}
		release = func() { pass.Close() }
	}
	got, err := withNofile(cb.nofile, func() error { return sys.start(out) })
	if err != nil {
		release()
		return func() {}, err
	}
	if cb.nofile > 0 {
		cb.nofileGot = got
	}
	return release, nil
}

// step runs one step: start sys, send p, let it finish, stop, count.
func (cb *captureBench) step(sys captureSystem, out string, p sendPlan) (captureStep, error) {
	st := captureStep{Rate: p.rate}
	t0 := time.Now()
	release, err := cb.startSystem(sys, out)
	defer release()
	if err != nil {
		return st, err
	}
	refused0 := cb.vethRefused()
	ctx, cancel := context.WithTimeout(context.Background(), sendLimit(p))
	rep, err := sendFromChild(ctx, cb.options(p), []int{captureSenderCPU})
	cancel()
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		sys.abort()
		return st, fmt.Errorf("send: %w", err)
	}
	st.Sent, st.Elapsed = rep.Sent, rep.Elapsed
	if rep.Elapsed > 0 {
		st.Offered = float64(rep.Sent) / rep.Elapsed.Seconds()
	}
	sys.drain(rep.Sent)
	st.Lifetime = time.Since(t0)
	if err := sys.stop(&st); err != nil {
		sys.abort()
		return st, err
	}
	// Frames the host end's veth ring had no room for: the receiving
	// host's kernel did not keep up (a NIC's RX ring overflowing).
	if r := cb.vethRefused() - refused0; r > 0 {
		st.Lost = prefixed("", st.Lost, ", ") + fmt.Sprintf("veth ring %d", r)
	}
	if st.Sent > 0 {
		st.Loss = 1 - float64(min(st.Written, st.Sent))/float64(st.Sent)
	}
	if st.Written > st.Sent {
		return st, fmt.Errorf("%s: %d packets in the files, %d sent: traffic from elsewhere on the lab?", sys.name(), st.Written, st.Sent)
	}
	return st, nil
}

// idle runs sys as step does, without traffic, until lifetime has passed
// since its start, and stops it: the CPU it spends doing nothing.
func (cb *captureBench) idle(sys captureSystem, out string, lifetime time.Duration) (captureStep, error) {
	var st captureStep
	t0 := time.Now()
	release, err := cb.startSystem(sys, out)
	defer release()
	if err != nil {
		return st, err
	}
	time.Sleep(lifetime - time.Since(t0))
	st.Lifetime = time.Since(t0)
	if err := sys.stop(&st); err != nil {
		sys.abort()
		return st, err
	}
	if st.Written > 0 {
		return st, fmt.Errorf("%s: %d packets in the files of an idle run: traffic from elsewhere on the lab?", sys.name(), st.Written)
	}
	return st, nil
}

// waitQuiet polls progress every 20 ms until it reaches want, or has not
// moved for quiet, or captureMaxWait has passed.
func waitQuiet(want uint64, quiet time.Duration, progress func() uint64) {
	end := time.Now().Add(captureMaxWait)
	last, since := progress(), time.Now()
	for last < want && time.Now().Before(end) && time.Since(since) < quiet {
		time.Sleep(20 * time.Millisecond)
		if p := progress(); p != last {
			last, since = p, time.Now()
		}
	}
}

// captureLadders gathers one system's ladders on one directory.
type captureLadders struct {
	lossFree []float64 // per run: frames/s
	topClean []bool    // per run: the whole ladder was loss-free
	byRate   map[int][]captureStep
	split    []float64
}

func (c *captureLadders) add(steps []captureStep) {
	if c.byRate == nil {
		c.byRate = map[int][]captureStep{}
	}
	best, clean := 0.0, true
	for i, st := range steps {
		c.byRate[i] = append(c.byRate[i], st)
		if st.SplitRate > 0 {
			c.split = append(c.split, st.SplitRate)
		}
		if st.Written < st.Sent {
			clean = false
			break
		}
		best = max(best, st.Offered)
	}
	c.lossFree = append(c.lossFree, best)
	c.topClean = append(c.topClean, clean)
}

// lossFreeRate is the median loss-free rate, and whether the runs mostly
// never lost (then the rate is only a lower bound).
func (c *captureLadders) lossFreeRate() (float64, bool) {
	if c == nil {
		return 0, false
	}
	clean := 0
	for _, b := range c.topClean {
		if b {
			clean++
		}
	}
	return median(c.lossFree), 2*clean > len(c.topClean)
}

// summary is "rate: loss (written kpps)" for every rate offered.
func (c *captureLadders) summary() string {
	if c == nil {
		return ""
	}
	var parts []string
	for i := 0; i < len(c.byRate); i++ {
		steps := c.byRate[i]
		var off, loss, wr []float64
		streams := 0
		for _, st := range steps {
			off = append(off, st.Offered)
			loss = append(loss, st.Loss)
			if st.Elapsed > 0 {
				wr = append(wr, float64(st.Written)/st.Elapsed.Seconds())
			}
			streams = max(streams, st.Streams)
		}
		p := fmt.Sprintf("%s→%.0fk loss %.4f, %.0fk pkt/s written", rateName(steps[0].Rate), median(off)/1e3, median(loss), median(wr)/1e3)
		if streams > 0 {
			p += fmt.Sprintf(" to %d streams", streams)
		}
		if len(steps) > 1 {
			p += fmt.Sprintf(" (%d runs)", len(steps))
		}
		if lost := steps[len(steps)-1].Lost; lost != "" {
			p += " [last run: " + lost + "]"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

func rateName(r float64) string {
	if r == 0 {
		return "max"
	}
	return fmt.Sprintf("%gk", r/1e3)
}

func rateList(rs []float64) string {
	var s []string
	for _, r := range rs {
		if r == 0 {
			s = append(s, "as fast as possible")
		} else {
			s = append(s, rateName(r))
		}
	}
	return strings.Join(s, ", ")
}

// captureTable is the loss at each offered rate, per directory and system,
// then what the sender offered into xdp_drop.
func captureTable(dirs []captureDir, systems []captureSystem, res map[string]map[string]*captureLadders, sender *captureLadders) string {
	var b strings.Builder
	b.WriteString("Asked rate→achieved offered rate, median loss, written packets/s:")
	for _, d := range dirs {
		for _, s := range systems {
			lad := res[d.name][s.name()]
			fmt.Fprintf(&b, " [%s %s] %s.", d.name, s.name(), lad.summary())
			if lad != nil && len(lad.split) > 0 {
				fmt.Fprintf(&b, " Split per stream: %.0fk frames/s.", median(lad.split)/1e3)
			}
		}
	}
	fmt.Fprintf(&b, " [sender into xdp_drop, the sender's ceiling; written = reached the host end] %s.", sender.summary())
	return b.String()
}

// offeredAt is the median achieved offered rate of the ladders' i-th
// step.
func (c *captureLadders) offeredAt(i int) float64 {
	if c == nil {
		return 0
	}
	var off []float64
	for _, st := range c.byRate[i] {
		off = append(off, st.Offered)
	}
	return median(off)
}

// captureFigures are a directory's figures: jmxdp's loss-free rate against
// the better baseline, then each baseline's against jmxdp.
func captureFigures(dir string, res map[string]*captureLadders, systems []captureSystem, sender *captureLadders) []Figure {
	jm, jmClean := res["jmxdp"].lossFreeRate()
	var bestName string
	var best float64
	for _, s := range systems {
		if s.name() == "jmxdp" {
			continue
		}
		if v, _ := res[s.name()].lossFreeRate(); bestName == "" || v > best {
			best, bestName = v, s.name()
		}
	}
	ceiling := 0.0
	if sender != nil {
		ceiling = sender.offeredAt(len(sender.byRate) - 1)
	}
	bound := func(sys string, clean bool) string {
		if clean {
			return fmt.Sprintf("≥: %s never lost a packet; this is the most the sender offered (into xdp_drop it reaches %.0f kpps as fast as it goes). ", sys, ceiling/1e3)
		}
		return sys + ": the highest offered rate before the first loss. "
	}
	f := Figure{
		Name: "capture_lossfree_" + dir, Unit: "kpps", Value: jm / 1e3, Baseline: best / 1e3, BaselineName: bestName,
		RatioDesc: "jmxdp/" + bestName, Note: bound("jmxdp", jmClean) + res["jmxdp"].summary(),
	}
	if best > 0 && res["jmxdp"] != nil {
		f.Ratio = jm / best
		f.Target = &Target{On: "ratio", Op: ">=", Bound: 3}
	}
	figs := []Figure{f}
	for _, s := range systems {
		if s.name() == "jmxdp" {
			continue
		}
		v, clean := res[s.name()].lossFreeRate()
		g := Figure{
			Name: "capture_lossfree_" + dir + "_" + s.name(), Unit: "kpps", Value: v / 1e3, Baseline: jm / 1e3, BaselineName: "jmxdp",
			RatioDesc: s.name() + "/jmxdp", Note: bound(s.name(), clean) + res[s.name()].summary(),
		}
		if jm > 0 {
			g.Ratio = v / jm
		}
		figs = append(figs, g)
	}
	return figs
}
