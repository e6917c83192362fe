package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// cpuCase is one stream count of the CPU comparison: every receiver gets
// the same frames, and the CPU it spent is divided by what it wrote.
type cpuCase struct {
	name                 string // in figure names: "100", "3000", "100k"
	intercepts, sessions int
	frames               uint64
	rate                 float64 // offered, frames/s
}

var (
	cpuCasesFull = []cpuCase{
		{"100", 50, 2, 1_500_000, 200e3},
		{"3000", 300, 10, 1_500_000, 200e3},
		{"100k", 1000, 100, 1_500_000, 200e3},
	}
	cpuCasesShort = []cpuCase{{"100", 50, 2, 20_000, 20e3}}
)

const (
	// cpuBurst is the CPU cases' burst: a router's mirror of a traffic
	// burst arrives as one.
	cpuBurst = 8192
	// cpuNofile is the RLIMIT_NOFILE every receiver of the CPU cases
	// starts with (soft and hard), so that no receiver is held back by the
	// shell's limit with 100k streams.
	cpuNofile = 1 << 20
	// cpuTarget3000 is jmxdp's CPU per frame against tcpdump -w's at 3000
	// streams (at most as much), cpuStretch3000 the stretch (half), and
	// cpuScaling its cost at 100k streams against 100.
	cpuTarget3000  = 1
	cpuStretch3000 = 0.5
	cpuScaling     = 2
)

// cpuPlan sends c in bursts of cpuBurst. xmit caps a thread's bursts at
// its share of the rate times xmitCallWorth: as many threads as leave each
// a whole burst, at least one (then a short mode's low rate gives smaller
// bursts).
func cpuPlan(c cpuCase) sendPlan {
	threads := max(1, int(c.rate*xmitCallWorth.Seconds()/cpuBurst))
	return sendPlan{rate: c.rate, frames: c.frames, burst: cpuBurst, threads: threads, intercepts: c.intercepts, sessions: c.sessions}
}

// burstOf is the burst a thread of p actually sends.
func burstOf(p sendPlan) int {
	b := p.burst
	if p.rate > 0 && p.threads > 0 {
		b = min(b, max(1, int(p.rate/float64(p.threads)*xmitCallWorth.Seconds())))
	}
	return b
}

// cpuRun is one receiver on one case: the run with traffic and the idle
// run of the same process.
type cpuRun struct {
	traffic, idle captureStep
}

// net is the CPU the traffic cost: the run's minus the idle run's.
func (r cpuRun) net() time.Duration { return max(r.traffic.CPU-r.idle.CPU, 0) }

// nsPerFrame is the CPU per frame written, 0 when nothing was written.
func (r cpuRun) nsPerFrame() float64 {
	if r.traffic.Written == 0 {
		return 0
	}
	return float64(r.net().Nanoseconds()) / float64(r.traffic.Written)
}

// cpuResult is one case, every receiver.
type cpuResult struct {
	c    cpuCase
	plan sendPlan
	runs map[string]cpuRun // by system name
}

// cpuCases runs every case against every system, writing in d.
func (cb *captureBench) cpuCases(d captureDir, systems []captureSystem) ([]cpuResult, error) {
	cases := cpuCasesFull
	if cb.opts.Short {
		cases = cpuCasesShort
	}
	cb.nofile = cpuNofile
	defer func() { cb.nofile = 0 }()
	var out []cpuResult
	for _, c := range cases {
		res := cpuResult{c: c, plan: cpuPlan(c), runs: map[string]cpuRun{}}
		for _, sys := range systems {
			r, err := cb.cpuRun(d, sys, res.plan)
			if err != nil {
				return out, fmt.Errorf("%s, %d streams: %w", sys.name(), c.intercepts*c.sessions, err)
			}
			fmt.Fprintf(cb.opts.Progress, "bench: capture CPU %d streams %s: offered %.0f kpps, sent %d, written %d, CPU %v (idle %v over %v), %.0f ns/frame%s\n",
				c.intercepts*c.sessions, sys.name(), r.traffic.Offered/1e3, r.traffic.Sent, r.traffic.Written,
				r.traffic.CPU.Round(time.Millisecond), r.idle.CPU.Round(time.Millisecond), r.idle.Lifetime.Round(time.Millisecond),
				r.nsPerFrame(), prefixed(" (lost: ", r.traffic.Lost, ")"))
			res.runs[sys.name()] = r
		}
		out = append(out, res)
	}
	return out, nil
}

// cpuRun runs sys with p's traffic, then idle for as long.
func (cb *captureBench) cpuRun(d captureDir, sys captureSystem, p sendPlan) (cpuRun, error) {
	var r cpuRun
	var err error
	cb.seq++
	out := filepath.Join(d.path, fmt.Sprintf("cpu-%s-%d", sys.name(), cb.seq))
	r.traffic, err = cb.step(sys, out, p)
	os.RemoveAll(out)
	if err != nil {
		return r, err
	}
	out += "-idle"
	r.idle, err = cb.idle(sys, out, r.traffic.Lifetime)
	os.RemoveAll(out)
	return r, err
}

// cpuCeiling is the sender's own ceiling at the CPU cases' settings: the
// same bursts and threads, as fast as it goes, into xdp_drop.
func (cb *captureBench) cpuCeiling() (captureStep, sendPlan, error) {
	c := cpuCasesFull[0]
	if cb.opts.Short {
		c = cpuCasesShort[0]
	}
	p := cpuPlan(c)
	p.rate = 0
	st, err := cb.step(&dropSystem{iface: cb.lab.HostIface}, "", p)
	if err == nil {
		fmt.Fprintf(cb.opts.Progress, "bench: capture sender ceiling, bursts of %d from %s: %.0f kpps\n", burstOf(p), threads(p.threads), st.Offered/1e3)
	}
	return st, p, err
}

// cpuNote describes the CPU cases and gives every receiver's figures.
func (cb *captureBench) cpuNote(res []cpuResult) string {
	var b strings.Builder
	nofile := fmt.Sprintf("%d", cb.nofileGot)
	if cb.nofileGot != cpuNofile {
		nofile += fmt.Sprintf(" (%d asked: the bench lacks CAP_SYS_RESOURCE to raise the hard limit)", cpuNofile)
	}
	fmt.Fprintf(&b, "CPU per frame written: the same traffic to each receiver in turn, each a process of its own pinned to the CPUs other than the sender's, started with RLIMIT_NOFILE %s soft and hard "+
		"(the shipped systemd unit's LimitNOFILE is 1048576); "+
		"jmxdp: `jmxdp run --iface HOST --out DIR --metrics-addr 127.0.0.1:PORT` (this binary, the default config otherwise: max_open_files from that limit, its hard limit less an eighth, buffer_size 16KiB, flush_interval 1s, max_streams 1M); "+
		"tcpdump: tcpdump %s (one file, not split per stream); udprecv: the bench re-executed as the recvmmsg collector, with the writer's settings of jmxdp's default config. "+
		"CPU = user + system time of the process from wait4, minus that of an idle run of the same process started the same way and stopped as long after its start, "+
		"divided by the packets found in its files afterwards (read with capfile); where jmxdp lost frames is read from outside it, costing it nothing (its pinned counters; its AF_XDP sockets' XDP_STATISTICS through pidfd_getfd), not from its metrics, whose scrape would be in the figure; "+
		"files on the tmpfs; one run per case. "+
		"The kernel's receive path (veth, XDP, AF_XDP's copy in copy mode, the socket and packet-socket queues) runs in softirq on the sender's CPU and is in no receiver's figure; "+
		"udprecv's recvmmsg copies are in its own.",
		nofile, strings.Join(TcpdumpArgs(cb.lab.HostIface, "FILE"), " "))
	for _, r := range res {
		fmt.Fprintf(&b, " [%d streams (%d x %d), %d frames asked at %s frames/s in bursts of %d from %s:", r.c.intercepts*r.c.sessions, r.c.intercepts, r.c.sessions,
			r.c.frames, rateName(r.c.rate), burstOf(r.plan), threads(r.plan.threads))
		for _, name := range []string{"jmxdp", "tcpdump", "udprecv"} {
			if run, ok := r.runs[name]; ok {
				fmt.Fprintf(&b, " %s %s;", name, run.describe())
			}
		}
		b.WriteString("]")
	}
	return b.String()
}

// describe is a run's figures in a few words.
func (r cpuRun) describe() string {
	t := r.traffic
	s := fmt.Sprintf("%.0f ns/frame (CPU %.3f s - idle %.3f s over %.1f s", r.nsPerFrame(), t.CPU.Seconds(), r.idle.CPU.Seconds(), t.Lifetime.Seconds())
	s += fmt.Sprintf("; offered %.1f kpps, %d sent, %d written to %d files, loss %.4f", t.Offered/1e3, t.Sent, t.Written, t.Streams, t.Loss)
	return s + prefixed(": ", t.Lost, "") + ")"
}

// cpuFigures: per case, jmxdp's CPU per frame against tcpdump -w's,
// udprecv's against jmxdp's, and jmxdp's loss; then jmxdp's cost at 100k
// streams against 100.
func cpuFigures(res []cpuResult) []Figure {
	var figs []Figure
	perCase := map[string]float64{}
	for _, r := range res {
		jm, ok := r.runs["jmxdp"]
		if !ok {
			continue
		}
		v := jm.nsPerFrame()
		perCase[r.c.name] = v
		streams := fmt.Sprintf("%d streams", r.c.intercepts*r.c.sessions)
		f := Figure{Name: "cpu_" + r.c.name + "_jmxdp", Unit: "ns/frame", Value: v, BaselineName: "tcpdump -w", RatioDesc: "jmxdp/tcpdump",
			Note: streams + ": jmxdp " + jm.describe()}
		if td, ok := r.runs["tcpdump"]; ok {
			f.Baseline = td.nsPerFrame()
			f.Note += "; tcpdump " + td.describe()
			if f.Baseline > 0 {
				f.Ratio = v / f.Baseline
				if r.c.name == "3000" {
					f.Target = &Target{On: "ratio", Op: "<=", Bound: cpuTarget3000}
					f.Note += fmt.Sprintf("; stretch target ratio <= %g: %s", cpuStretch3000, metWord(f.Ratio <= cpuStretch3000))
				}
			}
		}
		figs = append(figs, f)
		if ur, ok := r.runs["udprecv"]; ok {
			g := Figure{Name: "cpu_" + r.c.name + "_udprecv", Unit: "ns/frame", Value: ur.nsPerFrame(), Baseline: v, BaselineName: "jmxdp",
				RatioDesc: "udprecv/jmxdp", Note: streams + ": udprecv " + ur.describe()}
			if v > 0 {
				g.Ratio = g.Value / v
			}
			figs = append(figs, g)
		}
		t := jm.traffic
		l := Figure{Name: "loss_" + r.c.name + "_jmxdp", Unit: "frames", Value: float64(t.Sent - min(t.Written, t.Sent)), Baseline: float64(t.Sent), BaselineName: "sent",
			Ratio: t.Loss, RatioDesc: "loss (1 - written/sent)",
			Note: fmt.Sprintf("%s at %.0f kpps offered, bursts of %d: frames sent and not in jmxdp's files%s; tcpdump's loss %s, udprecv's %s",
				streams, t.Offered/1e3, burstOf(r.plan), prefixed(" (", t.Lost, ")"), lossOf(r.runs, "tcpdump"), lossOf(r.runs, "udprecv"))}
		if r.c.name == "3000" {
			l.Target = &Target{On: "value", Op: "<=", Bound: 0}
		}
		figs = append(figs, l)
	}
	lo, okLo := perCase["100"]
	hi, okHi := perCase["100k"]
	if okLo && okHi {
		f := Figure{Name: "cpu_scaling_jmxdp", Unit: "ns/frame", Value: hi, Baseline: lo, BaselineName: "jmxdp at 100 streams",
			RatioDesc: "100k streams/100 streams", Note: "jmxdp's CPU per frame written with 100k streams (1000 x 100) against 100 (50 x 2), the same frames and rate; with more streams than max_open_files (RLIMIT_NOFILE's hard limit less an eighth), files are closed and reopened, once a buffer"}
		if lo > 0 {
			f.Ratio = hi / lo
			f.Target = &Target{On: "ratio", Op: "<=", Bound: cpuScaling}
		}
		figs = append(figs, f)
	}
	return figs
}

func lossOf(runs map[string]cpuRun, name string) string {
	r, ok := runs[name]
	if !ok {
		return "not measured"
	}
	return fmt.Sprintf("%.4f", r.traffic.Loss) + prefixed(" (", r.traffic.Lost, ")")
}

func threads(n int) string {
	if n == 1 {
		return "1 thread"
	}
	return fmt.Sprintf("%d threads", n)
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "missed"
}

// ceilingFigures are the sender's own ceilings into xdp_drop: at the CPU
// cases' bursts, against the rate those cases offer, and at the ladders'
// settings as fast as it goes, against their highest paced rate.
func ceilingFigures(cpu captureStep, cpuPlan sendPlan, asked float64, ladder *captureLadders, rates []float64) []Figure {
	f := Figure{Name: fmt.Sprintf("sender_ceiling_burst%d", cpuPlan.burst), Unit: "kpps", Value: cpu.Offered / 1e3, Baseline: asked / 1e3,
		BaselineName: "offered in the CPU cases", RatioDesc: "ceiling/offered",
		Note: fmt.Sprintf("not a receiver: xmit as fast as it goes into xdp_drop on the host end, bursts of %d from %s, %d frames sent, %d reached the host end: above 1, the CPU cases' offered rate is not the sender's limit",
			burstOf(cpuPlan), threads(cpuPlan.threads), cpu.Sent, cpu.Written)}
	if asked > 0 {
		f.Ratio = cpu.Offered / asked
	}
	top := 0.0
	for _, r := range rates {
		top = max(top, r)
	}
	last := 0.0
	if ladder != nil && len(ladder.byRate) > 0 {
		last = ladder.offeredAt(len(ladder.byRate) - 1)
	}
	g := Figure{Name: "sender_ceiling", Unit: "kpps", Value: last / 1e3, Baseline: top / 1e3, BaselineName: "highest paced rate asked",
		RatioDesc: "ceiling/asked",
		Note:      "not a receiver: the ladders' sends (same rates, bursts and threads) into xdp_drop on the host end; the value is its last step's achieved rate (as fast as it goes in full mode): a receiver that loses well below it is not held back by the sender. Paced steps read lower into xdp_drop than into the receivers (docs/bench.md): compare those with the asked rate. " + ladder.summary()}
	if top > 0 {
		g.Ratio = last / top
	}
	return []Figure{f, g}
}
