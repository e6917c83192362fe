// Package daemon is `jmxdp run`: it loads the XDP program with its maps
// pinned per interface, applies the configuration as a diff, attaches (or
// takes over an attachment left by an earlier run), and captures the
// streams the policy selects into per-stream pcapng files.
package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/logid"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Daemon is a running capture on one interface.
type Daemon struct {
	cfg      config.Config
	log      *slog.Logger
	prog     *loader.Program
	sink     *writer.Group
	capture  *capture.Capture
	metrics  *metrics.Server
	ids      *logid.Namer // nil: logs show ids
	version  string
	revision string
	mode     loader.Mode
	reused   bool
	stopped  bool
	// final is the Account taken at Stop, before the maps closed.
	final *Account
}

// Option adjusts Start.
type Option func(*Daemon)

// WithBuild sets what jmxdp_build_info reports (default "dev").
func WithBuild(version, revision string) Option {
	return func(d *Daemon) { d.version, d.revision = version, revision }
}

// PinDir is where the maps and the link of ifname are pinned.
func PinDir(base, ifname string) string { return filepath.Join(base, ifname) }

// LinkPin is the pinned XDP link's path in a pin directory.
func LinkPin(pinDir string) string { return filepath.Join(pinDir, "link") }

// Start brings the daemon up. cfg must have passed Validate. On error,
// whatever was set up is undone, except that pinned maps stay.
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
	if err := writer.RaiseNoFile(); err != nil {
		log.Warn("keeping the open-file limit", "err", err)
	}
	if err := cfg.CheckOutputDir(); err != nil {
		return nil, err
	}
	gid, err := cfg.Output.GID()
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, log: log, version: "dev"}
	if hide.Hide {
		if d.ids, err = logid.Open(cfg.Output.Dir); err != nil {
			return nil, err
		}
	}
	for _, o := range opts {
		o(d)
	}
	pinDir := PinDir(cfg.Capture.PinDir, cfg.Interface)
	prog, err := loader.Load(loader.Options{MaxStreams: cfg.Capture.MaxStreams, PinDir: pinDir, Logger: log})
	if err != nil {
		return nil, err
	}
	d.prog = prog
	fail := func(err error) (*Daemon, error) {
		d.teardown(false)
		return nil, err
	}
	lc, err := d.effectiveConfig()
	if err != nil {
		return fail(err)
	}
	if err := prog.Configure(lc); err != nil {
		return fail(fmt.Errorf("configure the program: %w", err))
	}
	log.Info("configured", "ports", lc.Ports, "default_action", lc.DefaultAction,
		"policy_rules", len(lc.Policies), "allowlist_prefixes", len(lc.Allowlist), "pin_dir", pinDir)

	queues, err := capture.Queues(cfg.Interface, cfg.Capture.Queues)
	if err != nil {
		return fail(err)
	}
	writers := d.writers(len(queues))
	d.sink, err = writer.NewGroup(writer.Config{
		Dir:            cfg.Output.Dir,
		RotateSize:     cfg.Output.RotateSize,
		RotateAge:      cfg.Output.RotateAge,
		MaxOpen:        cfg.Output.MaxOpenFiles,
		FlushInterval:  cfg.Output.FlushInterval,
		BufferSize:     int(cfg.Output.BufferSize),
		BufferMemory:   cfg.Output.BufferMemory,
		PacketComments: cfg.Output.PacketComments,
		Group:          gid,
		IDs:            d.ids,
		Logger:         log,
	}, writers)
	if err != nil {
		return fail(err)
	}
	var sinks []capture.Sink
	for _, m := range d.sink.Shards() {
		sinks = append(sinks, m)
	}
	// Sockets first, attachment second: a frame the program redirects
	// before its queue has a socket only falls back to the stack.
	d.capture, err = capture.Start(capture.Config{
		Ifname:         cfg.Interface,
		Queues:         queues,
		ZeroCopy:       cfg.Capture.ZeroCopy,
		FramesPerQueue: cfg.Capture.FramesPerQueue,
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
	d.mode, d.reused, err = prog.AttachPinned(cfg.Interface, loader.Mode(cfg.Capture.XDPMode), LinkPin(pinDir))
	if err != nil {
		return fail(err)
	}
	if cfg.Metrics.Addr != "" {
		if err := d.serveMetrics(); err != nil {
			return fail(err)
		}
	}
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
	opts := metrics.FromConfig(d.cfg.Metrics)
	opts.Version, opts.Revision = d.version, d.revision
	col := metrics.NewCollector(metrics.Source{
		Maps:          d.prog.Maps,
		Iface:         d.cfg.Interface,
		Capture:       d.capture.Stats,
		Writer:        d.sink.Stats,
		WriterStreams: d.sink.Streams,
	}, opts)
	reg, err := metrics.NewRegistry(col)
	if err != nil {
		return err
	}
	d.metrics, err = metrics.NewServer(d.cfg.Metrics.Addr, reg, d.ready,
		metrics.WithWebConfig(d.cfg.Metrics.WebConfig), metrics.WithLogger(d.log))
	if err != nil {
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	d.log.Info("serving metrics", "addr", d.metrics.Addr())
	return nil
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

// effectiveConfig is the program configuration: what the config sets, and
// for what it leaves unset, what the pinned maps already hold (a fresh
// map holds the defaults), so a restart keeps live changes.
func (d *Daemon) effectiveConfig() (loader.Config, error) {
	m := d.prog.Maps
	cfg := d.cfg
	var lc loader.Config
	var err error
	if cfg.PortsSet {
		lc.Ports = cfg.Ports
	} else if lc.Ports, err = m.Ports(); err != nil {
		return lc, err
	}
	if len(lc.Ports) == 0 {
		lc.Ports = cfg.Ports // fresh map: the default
	}
	settings, err := m.Settings()
	if err != nil {
		return lc, err
	}
	lc.DefaultAction = settings.DefaultAction
	if cfg.DefaultActionSet {
		lc.DefaultAction = cfg.DefaultAction
	}
	pinnedPolicy, err := m.Policies()
	if err != nil {
		return lc, err
	}
	lc.Policies = pinnedPolicy
	if cfg.PolicySet {
		lc.Policies = cfg.Policy
		if gone, added := diffCount(pinnedPolicy, cfg.Policy); gone > 0 {
			// Rules set live without --config are undone: say so.
			d.log.Warn("the config file's policy replaces the pinned one: rules set live and not in the file are removed",
				"removed", gone, "added", added)
		}
	}
	pinnedAllow, err := m.Allowlist()
	if err != nil {
		return lc, err
	}
	lc.Allowlist = pinnedAllow
	if cfg.AllowlistSet {
		lc.Allowlist = cfg.Allowlist
		if gone, added := diffCount(pinnedAllow, cfg.Allowlist); gone > 0 {
			d.log.Warn("the config file's allowlist replaces the pinned one: prefixes added live and not in the file are removed",
				"removed", gone, "added", added)
		}
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
	var errs []error
	if d.metrics != nil {
		errs = append(errs, d.metrics.Close())
	}
	if d.capture != nil {
		errs = append(errs, d.capture.Stop())
	}
	if d.sink != nil {
		errs = append(errs, d.sink.Close())
	}
	if d.capture != nil && d.sink != nil && d.prog != nil {
		d.logAccount()
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
	cs, ws := d.capture.Stats(), d.sink.Stats()
	a := Account{
		Redirected:  c[maps.StatActionCapture] - c[maps.StatCaptureFailed],
		Written:     ws.Packets,
		Fragments:   cs.Fragments,
		RingDrops:   cs.RingDrops,
		QueueDrops:  cs.QueueDrops,
		WriterDrops: map[string]uint64{},
	}
	for _, q := range cs.Queues {
		a.Received += q.Frames
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
	for r := writer.DropReason(0); r < writer.NumDropReasons; r++ {
		if n, ok := a.WriterDrops[r.String()]; ok {
			args = append(args, "dropped_"+r.String(), n)
		}
	}
	d.log.Info("capture stopped", args...)
}

// Program is the loaded program and its maps.
func (d *Daemon) Program() *loader.Program { return d.prog }

// Writer is the per-stream file writers.
func (d *Daemon) Writer() *writer.Group { return d.sink }

// Capture is the AF_XDP pipeline.
func (d *Daemon) Capture() *capture.Capture { return d.capture }

// Mode is how the program is attached.
func (d *Daemon) Mode() loader.Mode { return d.mode }

// Counters reads the kernel's counters.
func (d *Daemon) Counters() (maps.Counters, error) { return d.prog.Maps.Counters() }
