package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/spf13/cobra"
)

// demoPinDir keeps the demo's maps apart from a real instance's, and is
// removed before and after so every demo counts from zero.
const demoPinDir = "/sys/fs/bpf/jmxdp-demo"

func newDemoCmd() *cobra.Command {
	var out string
	var duration time.Duration
	var rate float64
	var metricsAddr string
	cmd := &cobra.Command{
		Use:   "demo [--out DIR]",
		Short: "Live demo: capture generated Jmirror traffic on a veth lab into per-stream pcapng files",
		Long: `demo brings up the veth lab (jmxdp lab up), runs the capture daemon on the lab's
host end, sends a few seconds of generated Jmirror traffic from the lab's router
namespace (several intercepts, every inner kind, two routers sharing an id, outer
IPv6, VLAN tags, fragments, non-Jmirror noise), stops the daemon, prints the
per-stream table and the files written, and removes the lab. The files stay in
--out. Needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return errors.New("demo needs root (XDP, AF_XDP, network namespaces); `make demo` falls back to the offline demo")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), out, duration, rate, metricsAddr)
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "demo-out", "output directory")
	cmd.Flags().DurationVar(&duration, "duration", 3*time.Second, "how long to send")
	cmd.Flags().Float64Var(&rate, "rate", 2000, "frames per second")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve /metrics on this host:port while the demo runs (dashboards/screenshot.sh scrapes it)")
	return cmd
}

func runDemo(ctx context.Context, w io.Writer, out string, duration time.Duration, rate float64, metricsAddr string) (err error) {
	log := slog.Default()
	lc := lab.Default()
	if err := lab.Down(lc); err != nil {
		return fmt.Errorf("remove an earlier lab: %w", err)
	}
	l, err := lab.Up(lc)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(); derr != nil && err == nil {
			err = fmt.Errorf("remove the lab: %w", derr)
		}
		os.RemoveAll(demoPinDir)
	}()
	fmt.Fprintf(w, "lab up: jmxdp attaches to %s (%s); routers send from %s in namespace %s\n\n",
		l.HostIface, l.HostAddr, l.RouterIface, l.Name)

	os.RemoveAll(demoPinDir)
	cfg := config.Default()
	cfg.Interface = l.HostIface
	cfg.Output.Dir = filepath.Join(out, "streams")
	cfg.Capture.PinDir = demoPinDir
	cfg.Capture.MaxStreams = 1 << 16
	cfg.Metrics.Addr = metricsAddr
	if err := cfg.Validate(); err != nil {
		return err
	}
	d, err := daemon.Start(cfg, log)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			d.Stop()
		}
	}()

	pkts, sum, err := gen.Demo(gen.DefaultDemo())
	if err != nil {
		return err
	}
	frames := make([][]byte, len(pkts))
	for i, p := range pkts {
		frames[i] = p.Data
	}
	s, err := l.Sender()
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(w, "sending %d intercepts x %d sessions (%d frames a pass: %d Jmirror datagrams, %d fragmented, %d noise) at %.0f frames/s for %s\n",
		gen.DefaultDemo().Intercepts, gen.DefaultDemo().SessionsPer, len(frames), sum.JmirrorDatagrams, sum.Fragmented, sum.NotJmirror, rate, duration)
	rep, err := s.Run(ctx, frames, send.Options{Rate: rate, Duration: duration})
	if err != nil {
		return fmt.Errorf("send: %w", err)
	}
	fmt.Fprintf(w, "sent %d frames in %s\n\n", rep.Sent, rep.Elapsed.Round(time.Millisecond))
	waitDrained(ctx, d, rep.Sent)

	streams, err := d.Program().Maps.Streams()
	if err != nil {
		return err
	}
	counters, err := d.Counters()
	if err != nil {
		return err
	}
	stopped = true
	if err := d.Stop(); err != nil {
		return err
	}
	ws := d.Writer().Stats()
	printStreams(w, streams)
	fmt.Fprintf(w, "\n%s\n", kernelLine(counters))
	fmt.Fprintf(w, "writers: %d packets in %d files\n\n", ws.Packets, ws.FilesCompleted)
	return printFiles(w, cfg.Output.Dir)
}

// kernelLine sums up the kernel's counters. Captured counts frames, every
// fragment of a datagram, while Jmirror counts each datagram once (at its
// first fragment): with fragments, captured exceeds Jmirror, and the line
// says by what.
func kernelLine(c vocab.Counters) string {
	line := fmt.Sprintf("kernel: %d frames, %d Jmirror, %d not Jmirror (passed to the host), %d captured",
		c[vocab.StatFrames], c[vocab.StatJmirror], c[vocab.StatNotJmirror], c[vocab.StatActionCapture])
	if n := c[vocab.StatFragTracked]; n > 0 {
		line += fmt.Sprintf(" (frames: the %d later fragments of fragmented datagrams count here, not in Jmirror, which counts each datagram once)", n)
	}
	return line + fmt.Sprintf(", %d capture failures", c[vocab.StatCaptureFailed])
}

// waitDrained waits (up to 5 s) until the pipeline has taken every frame
// the kernel redirected.
func waitDrained(ctx context.Context, d *daemon.Daemon, sent uint64) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := d.Counters()
		if err != nil {
			return
		}
		var got uint64
		for _, q := range d.Capture().Stats().Queues {
			got += q.Frames
		}
		if c[vocab.StatFrames] >= sent && got >= c[vocab.StatActionCapture]-c[vocab.StatCaptureFailed] {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func printStreams(w io.Writer, streams []vocab.Stream) {
	slices.SortFunc(streams, func(a, b vocab.Stream) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), a.Router.Compare(b.Router))
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mid\tsid\trouter\tpackets\tbytes\tinner\t")
	for _, s := range streams {
		var kinds []string
		for k, n := range s.Inner {
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s:%d", vocab.Inner(k), n))
			}
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%d\t%d\t%s\t\n", s.MID, s.SID, s.Router, s.Packets, s.Bytes, strings.Join(kinds, " "))
	}
	tw.Flush()
}

func printFiles(w io.Writer, dir string) error {
	fmt.Fprintf(w, "files in %s:\n", dir)
	return filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasPrefix(de.Name(), ".") {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(w, "  %-60s %8d bytes  %s\n", rel, info.Size(), info.Mode().Perm())
		return nil
	})
}
