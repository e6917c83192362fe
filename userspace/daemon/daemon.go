// Package daemon is `jmxdp run`: it loads the XDP program with its maps
// pinned per interface, applies the configuration as a diff, attaches (or
// takes over an attachment left by an earlier run), and captures the
// streams the policy selects into per-stream pcapng files.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/handoff"
	"github.com/jmxdp/jmxdp/userspace/logid"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/natsink"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/retention"
	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Daemon is a running capture on one interface.
type Daemon struct {
	cfg     config.Config
	log     *slog.Logger
	prog    *loader.Program
	sink    *writer.Group
	capture *capture.Capture
	// forward sends the forwarded streams' frames the program handed to
	// userspace (docs/forward.md).
	forward *forward.Sender
	// keepStop ends forward.Keep, which keeps the forward paths ready.
	keepStop context.CancelFunc
	keepDone chan struct{}
	metrics  *metrics.Server
	ids      *logid.Namer // nil: logs show ids
	keeper   *retention.Keeper
	handoff  *handoff.Runner
	// collector is the metrics collector, for a reload's new options.
	collector *metrics.Collector
	version   string
	revision  string
	mode      loader.Mode
	reused    bool
	stopped   bool
	// runDir holds the per-interface lock and state file (runstate).
	runDir string
	lock   *runstate.Lock
	// pins is the pin dir before this start, undone if the start fails.
	pins   *loader.PinSnapshot
	failed bool // Start failed: teardown undoes pins
	// The accounting checkpoints (checkpoint.go).
	redirectedAtStart                uint64
	cpStop, cpDone                   chan struct{}
	checkpointFailed, checkpointsRan bool
	// fullSeen is the stream_full counter at the last retireIfFull.
	fullSeen uint64
	// configPath is the file cfg came from, for the state file.
	configPath string
	// final is the Account taken at Stop, before the maps closed.
	final *Account
	// nats is the NATS sink (sink.url), nil with files (natsink.go).
	nats *natsink.Sink
}

// Option adjusts Start.
type Option func(*Daemon)

// WithBuild sets what jmxdp_build_info reports (default "dev").
func WithBuild(version, revision string) Option {
	return func(d *Daemon) { d.version, d.revision = version, revision }
}

// WithRunDir puts the per-interface lock and state file in dir instead of
// runstate.DefaultDir (tests).
func WithRunDir(dir string) Option { return func(d *Daemon) { d.runDir = dir } }

// WithConfigPath records the config file the configuration came from, so
// that `stats`, `policy` and `allowlist` find it through the state file.
func WithConfigPath(path string) Option {
	return func(d *Daemon) {
		if abs, err := filepath.Abs(path); err == nil && path != "" {
			path = abs
		}
		d.configPath = path
	}
}

// Start brings the daemon up. cfg must have passed Validate. On error,
// whatever was set up is undone, except that pinned maps stay.
//
// A start that is refused because another `jmxdp run` holds the interface
// changes nothing: the per-interface lock is taken before the maps are
// opened, so the running instance's ports, policy and settings are never
// touched by a second start.
func Start(cfg config.Config, log *slog.Logger, opts ...Option) (*Daemon, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Interface == "" {
		return nil, errors.New("no interface: set --iface or `interface:` in the config")
	}
	// Before anything is pinned or created: a mistyped name must leave
	// no maps under the pin dir and no output directory behind.
	if _, err := net.InterfaceByName(cfg.Interface); err != nil {
		return nil, fmt.Errorf("interface %q: %w (nothing was pinned or created)", cfg.Interface, err)
	}
	if cfg.Metrics.Addr != "" {
		if err := metrics.CheckWebConfig(cfg.Metrics.WebConfig); err != nil {
			return nil, fmt.Errorf("metrics.web_config: %w (nothing was pinned or created)", err)
		}
	}
	hide := cfg.Metrics.ChooseHideIDs()
	cfg.Metrics.HideIDs = hide.Hide
	if hide.Warn {
		log.Warn("intercept ids are shown", "why", hide.Why)
	} else {
		log.Info("intercept ids in metrics and logs", "hidden", hide.Hide, "why", hide.Why)
	}
	d := &Daemon{cfg: cfg, log: log, version: "dev", runDir: runstate.DefaultDir}
	for _, o := range opts {
		o(d)
	}
	lock, err := runstate.Acquire(d.runDir, cfg.Interface)
	if err != nil {
		if errors.Is(err, runstate.ErrBusy) {
			return nil, fmt.Errorf("%s is already captured by a running jmxdp: %w; nothing was changed (stop it first, or change it live with jmxdp policy/allowlist)", cfg.Interface, err)
		}
		return nil, err
	}
	d.lock = lock
	fail := func(err error) (*Daemon, error) {
		d.failed = true
		d.teardown(false)
		return nil, err
	}
	if err := writer.RaiseNoFile(); err != nil {
		log.Warn("keeping the open-file limit", "err", err)
	}
	if err := cfg.CheckOutputDir(); err != nil {
		return fail(err)
	}
	gid, err := cfg.Output.GID()
	if err != nil {
		return fail(err)
	}
	if hide.Hide {
		if d.ids, err = logid.Open(cfg.Output.Dir); err != nil {
			return fail(err)
		}
		// Whatever a package logs (a path, an error carrying one) names
		// streams by their hash from here on.
		log = slog.New(logid.Handler(d.ids, log.Handler()))
		d.log = log
	}
	pinDir := pins.Dir(cfg.Capture.PinDir, cfg.Interface)
	// A start that fails must not leave maps behind (up to 180 MiB of
	// kernel memory with a 1M-stream table): what it pinned goes, what an
	// earlier instance pinned stays.
	snap, err := loader.SnapshotPins(pinDir)
	if err != nil {
		return fail(err)
	}
	d.pins = &snap
	prog, err := loader.Load(loader.Options{MaxStreams: cfg.Capture.MaxStreams, PinDir: pinDir, Logger: log})
	if err != nil {
		return fail(err)
	}
	d.prog = prog
	d.checkPreviousRun()
	lc, err := d.effectiveConfig()
	if err != nil {
		return fail(err)
	}
	if err := prog.Configure(lc); err != nil {
		return fail(fmt.Errorf("configure the program: %w", err))
	}
	log.Info("configured", "ports", lc.Ports, "default_action", lc.DefaultAction,
		"policy_rules", len(lc.Policies), "allowlist_prefixes", len(lc.Allowlist), "pin_dir", pinDir)
	if len(lc.Allowlist) == 0 {
		if ifc, err := net.InterfaceByName(cfg.Interface); err == nil && ifc.Flags&net.FlagLoopback == 0 {
			// Anyone who can send to the port makes streams: files,
			// memory and table entries.
			log.Warn("no allowlist: any host that reaches this interface on a Jmirror port is taken for a router and gets its streams written; set allowlist: to the routers' addresses",
				"iface", cfg.Interface, "ports", lc.Ports)
		}
	}

	queues, err := capture.Queues(cfg.Interface, cfg.Capture.Queues)
	if err != nil {
		return fail(err)
	}
	writers := d.writers(len(queues))
	if err := d.startRetention(); err != nil {
		return fail(err)
	}
	d.sink, err = writer.NewGroup(writer.Config{
		Dir:        cfg.Output.Dir,
		RotateSize: cfg.Output.RotateSize,
		RotateAge:  cfg.Output.RotateAge,
		MaxOpen:    cfg.Output.MaxOpenFiles,
		MaxStreams: int(cfg.Capture.MaxStreamMemory / writer.StreamBytes),
		// Checked by the writer, which refuses an untrusted Dir.
		AllowUntrustedDir: cfg.Output.AllowUntrustedDir,
		FlushInterval:     cfg.Output.FlushInterval,
		BufferSize:        int(cfg.Output.BufferSize),
		BufferMemory:      cfg.Output.BufferMemory,
		PacketComments:    cfg.Output.PacketComments,
		Group:             gid,
		IDs:               d.ids,
		Logger:            log,
		OnComplete:        d.onComplete(),
	}, writers)
	if err != nil {
		return fail(err)
	}
	d.startKeeper()
	var sinks []capture.Sink
	for _, m := range d.sink.Shards() {
		sinks = append(sinks, m)
	}
	if sinks, err = d.startNATS(sinks); err != nil {
		return fail(err)
	}
	// Sockets first, attachment second: a frame the program redirects
	// before its queue has a socket only falls back to the stack.
	d.forward = forward.NewSender(prog.Maps)
	d.capture, err = capture.Start(capture.Config{
		Ifname:         cfg.Interface,
		Forward:        d.forward,
		Queues:         queues,
		ZeroCopy:       cfg.Capture.ZeroCopy,
		FramesPerQueue: cfg.Capture.FramesPerQueue,
		FrameSize:      cfg.Capture.FrameSize,
		QueueMemory:    cfg.Capture.QueueMemory,
		Reassembly: reasm.Config{
			MaxDatagrams: cfg.Reassembly.MaxDatagrams,
			MaxBytes:     int(cfg.Reassembly.MaxMemory),
			Timeout:      cfg.Reassembly.Timeout,
		},
		Logger: log,
	}, prog.Maps, sinks...)
	if err != nil {
		return fail(err)
	}
	d.mode, d.reused, err = prog.AttachPinned(cfg.Interface, loader.Mode(cfg.Capture.XDPMode), pins.Link(pinDir))
	if err != nil {
		return fail(err)
	}
	if cfg.Metrics.Addr != "" {
		if err := d.serveMetrics(); err != nil {
			return fail(err)
		}
	}
	if err := d.lock.Write(runstate.State{PID: os.Getpid(), Iface: cfg.Interface, PinDir: pinDir, Config: d.configPath,
		Out: cfg.Output.Dir, Metrics: d.MetricsAddr(), Started: time.Now().UTC()}); err != nil {
		log.Warn("cannot write the run-state file: stats, policy and allowlist need --pin-dir or --config to find this instance", "err", err)
	}
	d.startCheckpoints()
	keepCtx, keepStop := context.WithCancel(context.Background())
	d.keepStop, d.keepDone = keepStop, make(chan struct{})
	go func() {
		defer close(d.keepDone)
		// The sender's per-stream counts, for `jmxdp stats` (another
		// process): published to the run-state directory.
		published := make(chan struct{})
		go func() {
			defer close(published)
			d.forward.Publish(keepCtx, forward.StreamsPath(d.runDir, cfg.Interface), forward.PublishEvery, d.log)
		}()
		forward.Keep(keepCtx, d.prog.Maps, forward.KeepEvery, d.log)
		<-published
	}()
	log.Info("capturing", "iface", cfg.Interface, "mode", d.mode, "took_over_pinned_link", d.reused, "out", cfg.Output.Dir,
		"writers", writers, "max_open_files", cfg.Output.MaxOpenFiles, "flush_interval", cfg.Output.FlushInterval)
	return d, nil
}

// writers is how many writer goroutines to run for queues RX queues:
// capture.writers, or one per queue, at most one per CPU.
func (d *Daemon) writers(queues int) int {
	if d.cfg.Capture.Writers > 0 {
		return d.cfg.Capture.Writers
	}
	return max(1, min(queues, runtime.NumCPU()))
}

// serveMetrics starts /metrics, /healthz and /readyz. The collector reads
// the maps and the pipeline's counters at scrape time.
func (d *Daemon) serveMetrics() error {
	srv, col, err := d.newMetrics(d.cfg)
	if err != nil {
		return err
	}
	d.metrics, d.collector = srv, col
	return nil
}

// metricsOptions are the collector's options for cfg.
func (d *Daemon) metricsOptions(cfg config.Config) metrics.Options {
	opts := metrics.FromConfig(cfg.Metrics)
	opts.Version, opts.Revision = d.version, d.revision
	return opts
}

// forwardStats are the forward sender's counters, 0 before it exists.
func (d *Daemon) forwardStats() forward.SenderStats {
	if d.forward == nil {
		return forward.SenderStats{}
	}
	return d.forward.Stats()
}

// newMetrics makes a collector and an endpoint for cfg.Metrics.
func (d *Daemon) newMetrics(cfg config.Config) (*metrics.Server, *metrics.Collector, error) {
	col := metrics.NewCollector(metrics.Source{
		Maps:          d.prog.Maps,
		Iface:         cfg.Interface,
		Capture:       d.capture.Stats,
		Writer:        d.writerStats,
		WriterStreams: d.sink.Streams,
		Retention:     d.retentionStats,
		Handoff:       d.handoffStats,
		Forward:       d.forwardStats,
	}, d.metricsOptions(cfg))
	reg, err := metrics.NewRegistry(col, natsink.NewCollector(d.sinkStats()))
	if err != nil {
		return nil, nil, err
	}
	srv, err := metrics.NewServer(cfg.Metrics.Addr, reg, d.ready,
		metrics.WithWebConfig(cfg.Metrics.WebConfig), metrics.WithLogger(d.log))
	if err != nil {
		return nil, nil, fmt.Errorf("metrics endpoint: %w", err)
	}
	d.log.Info("serving metrics", "addr", srv.Addr())
	return srv, col, nil
}

// ready is /readyz: the program is attached and the capture running.
func (d *Daemon) ready() error {
	ifc, err := net.InterfaceByName(d.cfg.Interface)
	if err != nil {
		return fmt.Errorf("interface %s: %w", d.cfg.Interface, err)
	}
	mode, err := loader.LinkMode(ifc.Index)
	if err != nil {
		return err
	}
	if mode == "" {
		return fmt.Errorf("no XDP program attached to %s", d.cfg.Interface)
	}
	return nil
}

// MetricsAddr is where the metrics endpoint listens ("" if off).
func (d *Daemon) MetricsAddr() string {
	if d.metrics == nil {
		return ""
	}
	return d.metrics.Addr()
}

// effectiveConfig is the program configuration: what the config file and
// the flags set, and for every key they leave out, its documented default.
// Nothing is inherited from the pinned maps: a value a stale instance left
// there (a default_action set by a refused start, a port from another
// config) must not silently outlive it. What the pinned maps held and the
// config does not is logged, so a live change that was never saved to the
// file is not lost without a word.
func (d *Daemon) effectiveConfig() (loader.Config, error) {
	m := d.prog.Maps
	cfg := d.cfg
	lc := loader.Config{Ports: cfg.Ports, DefaultAction: cfg.DefaultAction, Policies: cfg.Policy, Allowlist: cfg.Allowlist,
		ForwardLookupInterface: cfg.ForwardLookupInterface}
	pinnedPorts, err := m.Ports()
	if err != nil {
		return lc, err
	}
	if gone, added := diffCount(pinnedPorts, lc.Ports); gone > 0 && len(pinnedPorts) > 0 {
		d.log.Warn("the pinned maps listened on ports the config does not name: they are removed",
			"pinned", pinnedPorts, "config", lc.Ports, "removed", gone, "added", added)
	}
	settings, err := m.Settings()
	if err != nil {
		return lc, err
	}
	// A fresh map holds the zero Settings; only a value someone set is
	// worth a word.
	if settings != (vocab.Settings{}) && settings.DefaultAction != lc.DefaultAction {
		d.log.Warn("the pinned default_action differs from the config's: the config's applies",
			"pinned", settings.DefaultAction, "config", lc.DefaultAction)
	}
	pinnedPolicy, err := m.Policies()
	if err != nil {
		return lc, err
	}
	if gone, added := diffCount(pinnedPolicy, lc.Policies); gone > 0 {
		d.log.Warn("pinned policy rules that the config does not have are removed (rules set live without --config)",
			"removed", gone, "added", added)
	}
	pinnedAllow, err := m.Allowlist()
	if err != nil {
		return lc, err
	}
	if gone, added := diffCount(pinnedAllow, lc.Allowlist); gone > 0 {
		d.log.Warn("pinned allowlist prefixes that the config does not have are removed (prefixes added live without --config)",
			"removed", gone, "added", added)
	}
	return lc, nil
}

// diffCount counts what going from old to new removes and adds.
func diffCount[T comparable](old, new []T) (removed, added int) {
	in := make(map[T]bool, len(new))
	for _, v := range new {
		in[v] = true
	}
	was := make(map[T]bool, len(old))
	for _, v := range old {
		was[v] = true
		if !in[v] {
			removed++
		}
	}
	for _, v := range new {
		if !was[v] {
			added++
		}
	}
	return removed, added
}

// Stop captures what is in flight, closes every file, and detaches the
// program unless keep_attached is set (then the pinned link keeps it
// counting, and the next Start takes it over). Pinned maps always stay.
func (d *Daemon) Stop() error {
	if d.stopped {
		return nil
	}
	return d.teardown(d.cfg.Capture.KeepAttached)
}

func (d *Daemon) teardown(keepAttached bool) error {
	d.stopped = true
	d.haltCheckpoints()
	if d.keepStop != nil {
		d.keepStop()
		<-d.keepDone
		d.keepStop = nil
	}
	var errs []error
	if d.metrics != nil {
		errs = append(errs, d.metrics.Close())
	}
	if d.capture != nil {
		errs = append(errs, d.capture.Stop())
		if d.forward != nil {
			errs = append(errs, d.forward.Close())
		}
	}
	errs = append(errs, d.stopNATS())
	if d.sink != nil {
		errs = append(errs, d.sink.Close())
	}
	errs = append(errs, d.stopRetention())
	if d.capture != nil && d.sink != nil && d.prog != nil {
		d.logAccount()
		if d.checkpointsRan {
			d.checkpoint(true) // everything is accounted
		}
	}
	if d.prog != nil {
		if !keepAttached {
			errs = append(errs, d.prog.Detach())
		} else {
			d.log.Info("leaving the program attached: it keeps counting; captured streams fall back to the host's stack until jmxdp runs again",
				"iface", d.cfg.Interface)
		}
		errs = append(errs, d.prog.Close())
	}
	if d.failed && d.pins != nil {
		// Closed above: now the pins are the only references.
		if removed, err := d.pins.Undo(); err != nil {
			d.log.Warn("a failed start could not remove what it pinned", "err", err)
		} else if len(removed) > 0 {
			d.log.Info("a failed start removed the maps it had pinned", "objects", len(removed))
		}
	}
	// Last: the next start must not begin while this one still holds
	// the interface.
	errs = append(errs, d.lock.Release())
	// The writer's errors name the files left unfinished.
	return d.ids.Error(errors.Join(errs...))
}

// Account is where every frame the program redirected to AF_XDP went:
// written, or dropped under a named reason. Frames and packets are the
// same but for fragments: a fragmented datagram is several frames and one
// packet.
type Account struct {
	// Redirected: frames the program handed to AF_XDP (capture actions,
	// less those with no socket on their queue), since the pinned
	// counters began: across restarts, unlike the rest.
	Redirected uint64
	// Received: frames taken off the RX rings by this run.
	Received uint64
	// Written: packets in files. Fragments: frames of fragmented
	// datagrams (their outcome is the reassembler's).
	Written, Fragments uint64
	// Drops by reason: ring (the kernel found the RX ring full or no
	// fill buffer: XDP_STATISTICS), queue (capture.queue_memory full),
	// and the writers' reasons (disk, invalid, closed, ...).
	RingDrops, QueueDrops uint64
	WriterDrops           map[string]uint64
	// Spooled: with the NATS sink, packets accepted and not stored in
	// the stream (after Stop: in the spool, for the next start).
	Spooled uint64
}

// Account reads the conservation figures (after Stop, those Stop took).
// After Stop, Received =
// Written + QueueDrops + the writer drops + Fragments (less what
// reassembly made of them), exactly.
func (d *Daemon) Account() (Account, error) {
	if d.final != nil {
		return *d.final, nil
	}
	c, err := d.prog.Maps.Counters()
	if err != nil {
		return Account{}, err
	}
	cs, ws := d.capture.Stats(), d.writerStats()
	a := Account{
		Redirected:  c[vocab.StatActionCapture] - c[vocab.StatCaptureFailed],
		Written:     ws.Packets,
		Fragments:   cs.Fragments,
		RingDrops:   cs.RingDrops,
		QueueDrops:  cs.QueueDrops,
		WriterDrops: map[string]uint64{},
	}
	for _, q := range cs.Queues {
		a.Received += q.Frames
	}
	if d.nats != nil {
		a.Spooled = ws.Buffered
	}
	for r := writer.DropReason(0); r < writer.NumDropReasons; r++ {
		if r != writer.DropQueue && ws.Drops[r] > 0 {
			a.WriterDrops[r.String()] = ws.Drops[r]
		}
	}
	return a, nil
}

// logAccount is the stop line: where the frames went, by reason.
func (d *Daemon) logAccount() {
	a, err := d.Account()
	if err != nil {
		d.log.Warn("cannot read the counters for the stop summary", "err", err)
		return
	}
	d.final = &a
	args := []any{"redirected_since_pinned", a.Redirected, "received", a.Received, "written", a.Written,
		"fragments", a.Fragments, "dropped_ring", a.RingDrops, "dropped_queue", a.QueueDrops}
	if d.nats != nil {
		args = append(args, "spooled", a.Spooled)
	}
	for r := writer.DropReason(0); r < writer.NumDropReasons; r++ {
		if n, ok := a.WriterDrops[r.String()]; ok {
			args = append(args, "dropped_"+r.String(), n)
		}
	}
	d.log.Info("capture stopped", args...)
}

// Config is the configuration the daemon runs on (after any Reload).
func (d *Daemon) Config() config.Config { return d.cfg }

// Program is the loaded program and its maps.
func (d *Daemon) Program() *loader.Program { return d.prog }

// Writer is the per-stream file writers.
func (d *Daemon) Writer() *writer.Group { return d.sink }

// Capture is the AF_XDP pipeline.
func (d *Daemon) Capture() *capture.Capture { return d.capture }

// Mode is how the program is attached.
func (d *Daemon) Mode() loader.Mode { return d.mode }

// Counters reads the kernel's counters.
func (d *Daemon) Counters() (vocab.Counters, error) { return d.prog.Maps.Counters() }
