package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/spf13/cobra"
)

// runFlags are `jmxdp run`'s overrides of the config file.
type runFlags struct {
	configPath    string
	iface         string
	ports         portList
	out           string
	defaultAction string
	allow         []string
	rotateSize    string
	rotateAge     time.Duration
	maxOpen       int
	queues        string
	xdpMode       string
	zeroCopy      bool
	keepAttached  bool
	pinDir        string
	maxStreams    uint32
	metricsAddr   string
	statusEvery   time.Duration
	checkConfig   bool
	webConfig     string
	sink          string
	natsReplicas  int
	spoolDir      string
}

func newRunCmd() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --iface IF [--port N ...] [--out DIR] [--config FILE]",
		Short: "Attach to an interface and write every captured stream to its own pcapng files",
		Long: `run attaches jmxdp's XDP program to an interface, counts every Jmirror stream in
the kernel and writes the streams whose policy is "capture" to per-stream pcapng
files under --out (see docs/output.md for the layout). Maps and the XDP link are
pinned under PIN_DIR/IFACE, so a restart continues the counters; ports, policy,
allowlist and default action are set from the config at every start (a key left
out takes its default). One run per interface: a second one is refused before it
changes anything. SIGHUP reloads the config file (docs/operating.md); SIGINT or
SIGTERM flushes and closes every file, then detaches (unless --keep-attached).
The config file is documented in docs/config.md; flags override it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config(cmd)
			if f.checkConfig {
				return reportConfig(cmd, f.configPath, cfg, err)
			}
			if err != nil {
				return err
			}
			if os.Geteuid() != 0 {
				return errors.New("run needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW, CAP_IPC_LOCK)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			// HUP reloads the config file; without this, a HUP (a reload
			// by hand, a dropped SSH session) kills the process uncleanly.
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := func() (config.Config, error) { return f.config(cmd) }
			return runDaemon(ctx, cfg, runOpts{statusEvery: f.statusEvery, configPath: f.configPath, hup: hup, reload: reload}, slog.Default())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.configPath, "config", "c", "", "YAML config file (docs/config.md)")
	fl.StringVarP(&f.iface, "iface", "i", "", "interface to attach to")
	fl.VarP(&f.ports, "port", "p", "UDP destination ports carrying Jmirror, repeatable or comma-separated (default: the config file's ports, else 30030)")
	fl.StringVarP(&f.out, "out", "o", "", "output directory for the pcapng files")
	fl.StringVar(&f.defaultAction, "default-action", "", "action for streams without a rule: capture, count or pass")
	fl.StringSliceVar(&f.allow, "allow", nil, "router prefix allowed to send Jmirror (repeatable; none: any)")
	fl.StringVar(&f.rotateSize, "rotate-size", "", "start a new file once one reaches this size (e.g. 256MiB; 0: never)")
	fl.DurationVar(&f.rotateAge, "rotate-age", 0, "start a new file once one is this old (e.g. 15m; 0: never)")
	fl.IntVar(&f.maxOpen, "max-open-files", 0, "most pcapng files open at once")
	fl.StringVar(&f.queues, "queues", "", `RX queues to capture on: "all" or a list such as 0,1`)
	fl.StringVar(&f.xdpMode, "xdp-mode", "", "auto, driver or generic")
	fl.BoolVar(&f.zeroCopy, "zero-copy", true, "use AF_XDP zero-copy where the driver offers it")
	fl.BoolVar(&f.keepAttached, "keep-attached", false, "on exit, leave the program attached and counting")
	fl.StringVar(&f.pinDir, "pin-dir", "", "bpffs directory for pinned maps and links (default /sys/fs/bpf/jmxdp)")
	fl.Uint32Var(&f.maxStreams, "max-streams", 0, "size of the kernel's stream table")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", `host:port for /metrics ("" in the file disables)`)
	fl.DurationVar(&f.statusEvery, "status-every", time.Minute, "log a status line this often (0: never)")
	fl.BoolVar(&f.checkConfig, "check-config", false, "validate the config and flags, print the effective config and exit (no root needed)")
	fl.StringVar(&f.webConfig, "web.config.file", "", "exporter-toolkit web config for /metrics: TLS, client certificates, basic auth (metrics.web_config)")
	fl.StringVar(&f.sink, "sink", "", `publish to NATS JetStream instead of files: nats://H:P[,nats://H:P...] ("": files; sink.url)`)
	fl.IntVar(&f.natsReplicas, "nats-replicas", 0, "replicas of the JetStream stream if jmxdp creates it (sink.replicas, default 1)")
	fl.StringVar(&f.spoolDir, "spool-dir", "", "the NATS sink's local spool (sink.spool_dir, default /var/spool/jmxdp)")
	return cmd
}

// config is the file (or the defaults) with the flags that were set
// applied on top, validated.
func (f *runFlags) config(cmd *cobra.Command) (config.Config, error) {
	cfg := config.Default()
	if f.configPath != "" {
		var err error
		if cfg, err = config.Load(f.configPath); err != nil {
			return cfg, err
		}
	}
	set := cmd.Flags().Changed
	if set("iface") {
		cfg.Interface = f.iface
	}
	if set("port") {
		cfg.Ports, cfg.PortsSet = f.ports.ports, true
	}
	if set("out") {
		cfg.Output.Dir = f.out
	}
	if set("default-action") {
		a, err := vocab.ParseAction(f.defaultAction)
		if err != nil {
			return cfg, fmt.Errorf("--default-action: %w", err)
		}
		cfg.DefaultAction, cfg.DefaultActionSet = a, true
	}
	if set("allow") {
		cfg.Allowlist, cfg.AllowlistSet = nil, true
		for _, s := range f.allow {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return cfg, fmt.Errorf("--allow: %w", err)
			}
			cfg.Allowlist = append(cfg.Allowlist, p)
		}
	}
	if set("rotate-size") {
		n, err := config.ParseSize(f.rotateSize)
		if err != nil {
			return cfg, fmt.Errorf("--rotate-size: %w", err)
		}
		cfg.Output.RotateSize = n
	}
	if set("rotate-age") {
		cfg.Output.RotateAge = f.rotateAge
	}
	if set("max-open-files") {
		cfg.Output.MaxOpenFiles = f.maxOpen
	}
	if set("queues") {
		q, err := parseQueues(f.queues)
		if err != nil {
			return cfg, fmt.Errorf("--queues: %w", err)
		}
		cfg.Capture.Queues = q
	}
	if set("xdp-mode") {
		cfg.Capture.XDPMode = f.xdpMode
	}
	if set("zero-copy") {
		cfg.Capture.ZeroCopy = f.zeroCopy
	}
	if set("keep-attached") {
		cfg.Capture.KeepAttached = f.keepAttached
	}
	if set("pin-dir") {
		cfg.Capture.PinDir = f.pinDir
	}
	if set("max-streams") {
		cfg.Capture.MaxStreams = f.maxStreams
	}
	if set("metrics-addr") {
		cfg.Metrics.Addr = f.metricsAddr
	}
	if set("web.config.file") {
		cfg.Metrics.WebConfig = f.webConfig
	}
	if set("sink") {
		cfg.Sink.URL = f.sink
	}
	if set("nats-replicas") {
		cfg.Sink.Replicas = f.natsReplicas
	}
	if set("spool-dir") {
		cfg.Sink.SpoolDir = f.spoolDir
	}
	if cfg.Interface == "" {
		return cfg, errors.New("no interface: set --iface or `interface:` in the config file")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func parseQueues(s string) ([]uint32, error) {
	if s == "all" {
		return nil, nil
	}
	var out []uint32
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%q is not a queue number", f)
		}
		out = append(out, uint32(n))
	}
	return out, nil
}

// runOpts are runDaemon's: the status period, and the reload on HUP.
type runOpts struct {
	statusEvery time.Duration
	configPath  string
	hup         <-chan os.Signal
	// reload reads the config file again, with the command line's flags
	// over it, and validates it.
	reload func() (config.Config, error)
}

// runDaemon runs until ctx ends, logging a status line every statusEvery
// and reloading the config file on HUP.
func runDaemon(ctx context.Context, cfg config.Config, o runOpts, log *slog.Logger) error {
	notify := newNotifier(log)
	d, err := daemon.Start(cfg, log, daemon.WithBuild(buildVersion()), daemon.WithConfigPath(o.configPath))
	if err != nil {
		return err
	}
	// Attached and capturing: systemd (Type=notify) starts what is ordered
	// after jmxdp only now.
	notifyErr(log, notify.Ready(readyStatus(cfg)))
	var tick <-chan time.Time
	if o.statusEvery > 0 {
		t := time.NewTicker(o.statusEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-o.hup:
			notifyErr(log, notify.Reloading("reloading "+o.configPath))
			reloadDaemon(d, o, log)
			// Whether applied or refused, the daemon runs on a config.
			notifyErr(log, notify.Ready(readyStatus(d.Config())))
		case <-ctx.Done():
			log.Info("stopping: flushing and closing files")
			notifyErr(log, notify.Stopping("stopping: flushing and closing files"))
			if err := d.Stop(); err != nil {
				return fmt.Errorf("stop: %w", err)
			}
			st := d.Writer().Stats()
			log.Info("stopped", "packets_written", st.Packets, "files_completed", st.FilesCompleted)
			return nil
		case <-tick:
			logStatus(d, log)
			notifyErr(log, notify.Status(statusLine(d, d.Config())))
		}
	}
}

// reloadDaemon is a HUP: read the config file again and apply it. An
// invalid file changes nothing: the daemon keeps running on the old one
// and the log names the file, line and key.
func reloadDaemon(d *daemon.Daemon, o runOpts, log *slog.Logger) {
	if o.configPath == "" {
		log.Warn("SIGHUP: started without --config, nothing to reload")
		return
	}
	log.Info("SIGHUP: reloading the config file", "file", o.configPath)
	cfg, err := o.reload()
	if err != nil {
		log.Error("reload refused: keeping the running configuration", "file", o.configPath, "err", err)
		return
	}
	changes, err := d.Reload(cfg)
	if err != nil {
		log.Error("reload failed: keeping the running configuration", "file", o.configPath, "err", err)
		return
	}
	if len(changes) == 0 {
		log.Info("reloaded: no change", "file", o.configPath)
		return
	}
	log.Info("reloaded", "file", o.configPath, "changes", strings.Join(changes, "; "))
}

func logStatus(d *daemon.Daemon, log *slog.Logger) {
	c, err := d.Counters()
	if err != nil {
		log.Warn("read counters", "err", err)
		return
	}
	ws := d.Writer().Stats()
	cs := d.Capture().Stats()
	var ringFull, fillEmpty, rxDropped uint64
	for _, q := range cs.Queues {
		ringFull += q.Kernel.RxRingFull
		fillEmpty += q.Kernel.RxFillRingEmptyDescs
		rxDropped += q.Kernel.RxDropped
	}
	var drops uint64
	for _, n := range ws.Drops {
		drops += n
	}
	r := cs.Reassembly
	log.Info("status",
		"jmirror", c[vocab.StatJmirror], "captured", c[vocab.StatActionCapture],
		"capture_failed", c[vocab.StatCaptureFailed], "written", ws.Packets,
		"writer_drops", drops, "queue_drops", cs.QueueDrops,
		"xsk_rx_ring_full", ringFull, "xsk_fill_ring_empty", fillEmpty, "xsk_rx_dropped", rxDropped,
		"reassembly_failed", r.Timeouts+r.Evicted+r.Overlaps+r.TooBig+r.Malformed,
		"open_files", ws.OpenFiles, "streams", ws.Streams)
}

// newDetachCmd removes what `run --keep-attached` leaves behind.
func newDetachCmd() *cobra.Command {
	var iface, pinDir, runDir string
	var purge bool
	cmd := &cobra.Command{
		Use:   "detach --iface IF",
		Short: "Detach a program left attached (run --keep-attached), optionally removing its pinned maps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if iface == "" {
				return errors.New("--iface is required")
			}
			if err := checkIfaceName(iface); err != nil {
				return fmt.Errorf("--iface: %w", err)
			}
			dir, _, err := instanceDir(cmd, iface, pinDir, "", runDir)
			if err != nil {
				return err
			}
			detached, err := loader.DetachPinned(pins.Link(dir))
			if err != nil {
				return err
			}
			if detached {
				fmt.Fprintf(cmd.OutOrStdout(), "detached from %s\n", iface)
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "nothing to detach on %s: no pinned link in %s\n", iface, dir)
			}
			if purge {
				removed, err := loader.PurgePinned(dir)
				if err != nil {
					return fmt.Errorf("remove pinned maps: %w", err)
				}
				if len(removed) == 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "no pinned maps in %s\n", dir)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "removed %d pinned objects in %s: counters start from zero next run\n", len(removed), dir)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&iface, "iface", "i", "", "interface")
	cmd.Flags().StringVar(&pinDir, "pin-dir", "", "bpffs directory of pinned maps and links (default: the running or last instance's, from its state file, else "+config.DefaultPinDir+")")
	addRunDirFlag(cmd, &runDir)
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the pinned maps (counters and policy)")
	return cmd
}
