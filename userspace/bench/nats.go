package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
)

// SectionNATS is the NATS sink's cost next to the file sink's: `jmxdp
// run --sink nats://...` to a 1-node and a 3-node (replicas 3) cluster of
// real nats-server processes, on the capture section's traffic.
const SectionNATS = "nats_sink"

// NATSServerEnv names the nats-server binary the section runs; unset, it
// is `go tool -n nats-server` (the module's tool dependency, from the
// current directory), else nats-server on PATH.
const NATSServerEnv = "JMXDP_NATS_SERVER"

// natsTarget: the NATS sink costs at most this many times the file sink
// per frame (issue 14).
const natsTarget = 2

// natsServerBinary finds nats-server; why says why there is none.
func natsServerBinary() (bin, why string) {
	if b := os.Getenv(NATSServerEnv); b != "" {
		return b, ""
	}
	if out, err := exec.Command("go", "tool", "-n", "nats-server").Output(); err == nil {
		if b := strings.TrimSpace(string(out)); b != "" {
			return b, ""
		}
	}
	if b, err := exec.LookPath("nats-server"); err == nil {
		return b, ""
	}
	return "", "no nats-server: set " + NATSServerEnv + ", run from the module (go tool nats-server) or put it on PATH"
}

// natsCluster is n nats-server processes on loopback with JetStream,
// routed to each other when n > 1, their stores under dir.
type natsCluster struct {
	procs []*exec.Cmd
	done  []chan struct{}
	urls  []string
}

// startNATS starts the cluster and waits (30 s at most) until JetStream
// answers, which in a cluster needs a meta leader.
func startNATS(bin string, n int, dir string) (*natsCluster, error) {
	c := &natsCluster{}
	var ports, cports []int
	for range n {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		cp, err := freePort()
		if err != nil {
			return nil, err
		}
		ports, cports = append(ports, p), append(cports, cp)
		c.urls = append(c.urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	for i := range n {
		sd := filepath.Join(dir, fmt.Sprintf("n%d", i+1))
		if err := os.MkdirAll(sd, 0o700); err != nil {
			c.stop()
			return nil, fmt.Errorf("nats-server directory: %w", err)
		}
		var b strings.Builder
		// max_file_store above the stream's default limit (8 GiB), which
		// JetStream reserves when jmxdp creates the stream.
		fmt.Fprintf(&b, "server_name: n%d\nlisten: 127.0.0.1:%d\njetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 16GB\n}\n", i+1, ports[i], filepath.Join(sd, "js"))
		if n > 1 {
			var routes []string
			for j := range n {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", cports[j]))
				}
			}
			fmt.Fprintf(&b, "cluster {\n  name: jmxdp-bench\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n", cports[i], strings.Join(routes, ", "))
		}
		conf := filepath.Join(sd, "server.conf")
		if err := os.WriteFile(conf, []byte(b.String()), 0o600); err != nil {
			c.stop()
			return nil, fmt.Errorf("nats-server config: %w", err)
		}
		log, err := os.OpenFile(filepath.Join(sd, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("nats-server log: %w", err)
		}
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		// Started from a thread held until the server exits, as the
		// receivers are: the parent-death signal follows the thread that
		// forked, and the bench's locked threads (netns) do exit.
		done := make(chan struct{})
		if err := startPinned(cmd, receiverCPUs(), done); err != nil {
			log.Close()
			c.stop()
			return nil, fmt.Errorf("start nats-server: %w", err)
		}
		go func() { cmd.Wait(); log.Close(); close(done) }()
		c.procs, c.done = append(c.procs, cmd), append(c.done, done)
	}
	if err := c.waitReady(30 * time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

func (c *natsCluster) connect() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(c.url(), nats.Timeout(2*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.url(), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (c *natsCluster) waitReady(limit time.Duration) error {
	end := time.Now().Add(limit)
	var last error
	for time.Now().Before(end) {
		last = func() error {
			nc, js, err := c.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		}()
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nats cluster of %d not ready within %v: %w", len(c.procs), limit, last)
}

// stop SIGTERMs every server and waits (bounded) for it.
func (c *natsCluster) stop() {
	for i, p := range c.procs {
		p.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done[i]:
		case <-time.After(15 * time.Second):
			p.Process.Kill()
			<-c.done[i]
		}
	}
	c.procs, c.done = nil, nil
}

// deleteStream removes the stream, if any, so that a run counts only
// what it stored (jmxdp creates it again).
func (c *natsCluster) deleteStream(name string) error {
	nc, js, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("delete stream %s: %w", name, err)
	}
	return nil
}

// storedPackets counts what the stream holds: its messages (from the
// stream's state), the packets in them (the sum of their Jmxdp-Packets
// headers, read with a headers-only ordered consumer) and the subjects
// (jmxdp streams) they are on. No stream is nothing stored.
func (c *natsCluster) storedPackets(stream string) (msgs, packets uint64, subjects int, err error) {
	nc, js, err := c.connect()
	if err != nil {
		return 0, 0, 0, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, 0, 0, nil
	}
	if err != nil {
		return 0, 0, 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	msgs = info.State.Msgs
	if msgs == 0 {
		return 0, 0, 0, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return msgs, 0, 0, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	seen := map[string]struct{}{}
	var read uint64
	empties := 0
	for read < msgs {
		// A consumer just made on a replicated stream may not answer yet
		// (no responders): a few tries.
		var batch jetstream.MessageBatch
		for try := 0; ; try++ {
			batch, err = cons.Fetch(4096, jetstream.FetchMaxWait(5*time.Second))
			if err == nil || try == 20 || ctx.Err() != nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			return msgs, packets, len(seen), fmt.Errorf("read %s: %w", stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			h := m.Headers().Get(natsink.HeaderPackets)
			n, err := strconv.ParseUint(h, 10, 64)
			if err != nil {
				return msgs, packets, len(seen), fmt.Errorf("message on %s: %s %q: %w", m.Subject(), natsink.HeaderPackets, h, err)
			}
			packets += n
			seen[m.Subject()] = struct{}{}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
			return msgs, packets, len(seen), fmt.Errorf("read %s: %w", stream, err)
		}
		if got == 0 && empties < 20 {
			empties++
			time.Sleep(250 * time.Millisecond)
			continue
		}
		if got == 0 {
			return msgs, packets, len(seen), fmt.Errorf("read %s: %d of %d messages, then nothing", stream, read, msgs)
		}
		read += uint64(got)
	}
	return msgs, packets, len(seen), nil
}

// natsSystem is `jmxdp run --sink` to a cluster: jmxdpSystem with the
// sink's flags, the stream deleted before each start and the packets
// counted in the stream instead of files.
type natsSystem struct {
	*jmxdpSystem
	cluster  *natsCluster
	replicas int
	baseArgs []string
	spool    string
}

func newNATSSystem(l *lab.Lab, exe, label string, c *natsCluster, replicas int, ladder bool) *natsSystem {
	s := &natsSystem{cluster: c, replicas: replicas, baseArgs: []string{"--sink", c.url(), "--nats-replicas", strconv.Itoa(replicas)}}
	j := &jmxdpSystem{lab: l, exe: exe, label: label, scrape: ladder}
	if ladder {
		j.maxOpen = captureMaxOpen
	}
	j.stored = func() (uint64, int, error) {
		_, n, subjects, err := c.storedPackets(natsink.DefaultStream)
		return n, subjects, err
	}
	j.sinkSummary = natsSinkSummary
	s.jmxdpSystem = j
	return s
}

// start deletes the stream and gives the run a spool of its own: a spool
// an earlier run left would be re-sent into this run's stream.
func (s *natsSystem) start(out string) error {
	if err := s.cluster.deleteStream(natsink.DefaultStream); err != nil {
		return err
	}
	if s.spool != "" {
		os.RemoveAll(s.spool)
	}
	spool, err := os.MkdirTemp("", "jmxdp-bench-spool-")
	if err != nil {
		return err
	}
	s.spool = spool
	s.jmxdpSystem.args = append(s.baseArgs, "--spool-dir", spool)
	return s.jmxdpSystem.start(out)
}

func (s *natsSystem) stop(st *captureStep) error {
	defer os.RemoveAll(s.spool)
	return s.jmxdpSystem.stop(st)
}

// natsSinkSummary reads the sink's counts from its "nats sink stopped"
// line: what went through the spool, what was left there and what was
// dropped, by reason; nothing when none was.
func natsSinkSummary(stderr *lineBuffer) []string {
	line := stderr.lastLine("nats sink stopped")
	if line == "" {
		return []string{"sink: no stop line"}
	}
	var out []string
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "0" {
			continue
		}
		switch {
		case k == "spooled", k == "left_in_spool_batches", k == "unacked_at_deadline", strings.HasPrefix(k, "dropped_"):
			out = append(out, "sink "+k+" "+v)
		}
	}
	return out
}

// natsSink measures the section in a lab of its own: the CPU cases and a
// loss-free ladder, for the file sink and the two clusters, on the tmpfs.
func natsSink(opts Options, tmp string) (Section, error) {
	sec := Section{Name: SectionNATS}
	if !isRoot() {
		sec.Skipped = append(sec.Skipped, "not root: the lab (namespaces, veth) and XDP need root")
		return sec, nil
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	exe, why := jmxdpExecutable(opts)
	if why != "" {
		sec.Skipped = append(sec.Skipped, "jmxdp: "+why)
		return sec, nil
	}
	bin, why := natsServerBinary()
	if why != "" {
		sec.Skipped = append(sec.Skipped, why)
		return sec, nil
	}
	rates, streams, stepTime := captureRates, captureStreams, captureStepTime
	if opts.Short {
		rates, streams, stepTime = captureRatesShort, captureStreamsShort, captureStepTimeShort
	}
	cb, down, err := newCaptureBench(opts, "jmxnats", streams, rates, stepTime)
	if err != nil {
		return sec, err
	}
	defer down()
	l := cb.lab

	// As in the capture section: the sender on its CPU, this process and
	// what it starts (jmxdp, and here the nats-servers) on the others.
	unpin, err := pinProcess(receiverCPUs())
	if err != nil {
		return sec, err
	}
	defer unpin()
	dirs, undo, skipped, err := captureDirs(tmp)
	defer undo()
	if err != nil {
		return sec, err
	}
	sec.Skipped = append(sec.Skipped, skipped...)
	// The servers' stores on the disk (3 replicas of the biggest step do
	// not fit the tmpfs); jmxdp's files on the tmpfs, as in the capture
	// section's CPU cases.
	store := dirs[len(dirs)-1]
	one, err := startNATS(bin, 1, filepath.Join(store.path, "nats1"))
	if err != nil {
		return sec, err
	}
	defer one.stop()
	three, err := startNATS(bin, 3, filepath.Join(store.path, "nats3"))
	if err != nil {
		return sec, err
	}
	defer three.stop()

	systems := func(ladder bool) []captureSystem {
		file := &jmxdpSystem{lab: l, exe: exe, scrape: ladder}
		if ladder {
			file.maxOpen = captureMaxOpen
		}
		return []captureSystem{file, newNATSSystem(l, exe, "nats-1", one, 1, ladder), newNATSSystem(l, exe, "nats-3", three, 3, ladder)}
	}
	cpuRes, err := cb.cpuCases(dirs[0], systems(false))
	if err != nil {
		return sec, fmt.Errorf("CPU per frame: %w", err)
	}
	lads := map[string]*captureLadders{}
	ladSystems := systems(true)
	for _, sys := range ladSystems {
		steps, err := cb.ladder(dirs[0], sys, 0)
		if err != nil {
			return sec, fmt.Errorf("%s ladder: %w", sys.name(), err)
		}
		lads[sys.name()] = &captureLadders{}
		lads[sys.name()].add(steps)
	}
	sec.Note = fmt.Sprintf("The capture section's CPU cases and one loss-free ladder (%d streams, offered %s frames/s, about %v each, stopped at the first lossy step), "+
		"each with `jmxdp run` to files (jmxdp), and with `--sink nats://... --nats-replicas N` to a 1-node (nats-1, replicas 1) and a 3-node cluster (nats-3, replicas 3) of real nats-server processes (%s) on loopback, started by the bench, "+
		"their stores on %s (%s), pinned like jmxdp to the CPUs other than the sender's (so on a 2-CPU machine they share jmxdp's one CPU); the stream is deleted before each run. "+
		"CPU per frame = jmxdp's wait4 user+system minus an idle run's, divided by the packets stored: for files those in its files, for NATS the sum of the Jmxdp-Packets headers of the stream's messages once jmxdp has stopped (SIGTERM waits for every ack). "+
		"The servers' own CPU is in no figure. %s",
		streams, rateList(rates), stepTime, bin, store.name, store.fs, natsCPUNote(cpuRes))
	sec.Figures = append(sec.Figures, natsFigures(cpuRes, lads)...)
	return sec, nil
}

// natsCPUNote is every case's runs in a few words.
func natsCPUNote(res []cpuResult) string {
	var b strings.Builder
	for _, r := range res {
		fmt.Fprintf(&b, "[%d streams, %d frames at %s frames/s:", r.c.intercepts*r.c.sessions, r.c.frames, rateName(r.c.rate))
		for _, name := range []string{"jmxdp", "nats-1", "nats-3"} {
			if run, ok := r.runs[name]; ok {
				fmt.Fprintf(&b, " %s %s;", name, run.describe())
			}
		}
		b.WriteString("] ")
	}
	return strings.TrimSpace(b.String())
}

// natsFigures: per case, each cluster's CPU per frame against the file
// sink's (target: at most natsTarget times) and its loss; then each
// system's loss-free rate, the clusters' against the file sink's.
func natsFigures(res []cpuResult, lads map[string]*captureLadders) []Figure {
	var figs []Figure
	for _, r := range res {
		file, ok := r.runs["jmxdp"]
		if !ok {
			continue
		}
		streams := fmt.Sprintf("%d streams", r.c.intercepts*r.c.sessions)
		for _, name := range []string{"nats-1", "nats-3"} {
			run, ok := r.runs[name]
			if !ok {
				continue
			}
			key := strings.ReplaceAll(name, "-", "")
			f := Figure{Name: "nats_cpu_" + r.c.name + "_" + key, Unit: "ns/frame", Value: run.nsPerFrame(), Baseline: file.nsPerFrame(),
				BaselineName: "file sink", RatioDesc: name + "/files",
				Note: streams + ": " + name + " " + run.describe() + "; files " + file.describe()}
			if f.Baseline > 0 && f.Value > 0 {
				f.Ratio = f.Value / f.Baseline
				f.Target = &Target{On: "ratio", Op: "<=", Bound: natsTarget}
			}
			t := run.traffic
			l := Figure{Name: "nats_loss_" + r.c.name + "_" + key, Unit: "frames", Value: float64(t.Sent - min(t.Written, t.Sent)), Baseline: float64(t.Sent),
				BaselineName: "sent", Ratio: t.Loss, RatioDesc: "loss (1 - stored/sent)",
				Note: fmt.Sprintf("%s at %.0f kpps offered: frames sent and not in the stream%s; the file sink's loss %s", streams, t.Offered/1e3, prefixed(" (", t.Lost, ")"), lossOf(r.runs, "jmxdp"))}
			figs = append(figs, f, l)
		}
	}
	fileRate, _ := lads["jmxdp"].lossFreeRate()
	for _, name := range []string{"jmxdp", "nats-1", "nats-3"} {
		lad, ok := lads[name]
		if !ok {
			continue
		}
		v, clean := lad.lossFreeRate()
		key := "files"
		if name != "jmxdp" {
			key = strings.ReplaceAll(name, "-", "")
		}
		g := Figure{Name: "nats_lossfree_" + key, Unit: "kpps", Value: v / 1e3, Baseline: fileRate / 1e3, BaselineName: "file sink",
			RatioDesc: "this/files", Note: lad.summary()}
		if clean {
			g.Note = "≥: never lost a packet, this is the most the sender offered. " + g.Note
		}
		if fileRate > 0 {
			g.Ratio = v / fileRate
		}
		figs = append(figs, g)
	}
	return figs
}
