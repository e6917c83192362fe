package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/instance"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/spf13/cobra"
)

// `jmxdp stats` reads the pinned maps of an instance: the kernel's counters
// by reason, the stream table and the untrusted sources; with --watch it
// samples them every interval and shows rates. docs/cli.md has the JSON.

type statsOpts struct {
	iface    string
	pinDir   string
	config   string // --config: the pin dir from its capture.pin_dir
	runDir   string
	dir      string // PIN_DIR/IFACE, resolved by check
	format   string
	watch    bool
	interval time.Duration
	top      int
	samples  int // hidden: stop after this many samples (tests)
	filter   string
	flt      *filter.Filter // --filter compiled; nil: every stream
}

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

func newStatsCmd() *cobra.Command {
	var o statsOpts
	cmd := &cobra.Command{
		Use:   "stats --iface IF [--watch [--interval 1s]] [--top N] [--filter EXPR] [--format table|json] [--pin-dir D]",
		Short: "Show the kernel's counters and the busiest streams of an instance (--watch: rates)",
		Long: `stats reads the maps pinned by the jmxdp instance on an interface (running, or
left attached, or stopped with its maps still pinned) and prints the frames by
reason, the Jmirror packets and bytes, the actions taken, and the top N streams
by bytes, with the untrusted sources if any. --watch samples every --interval
and redraws the screen with rates (packets/s, bits/s) computed from the last two
samples, until Ctrl-C; the first screen comes after one interval. --format json
prints one JSON document per sample (one line each with --watch). --filter EXPR
shows only the streams that match it (docs/filters.md), each entry of the
kernel's stream table (one router's share of a stream) on its own, e.g.
--filter 'mid == 0x3039 and router in 64.230.0.0/16'; --top applies after it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(cmd); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runStats(ctx, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.iface, "iface", "i", "", "interface of the instance (required)")
	f.StringVar(&o.pinDir, "pin-dir", "", "bpffs directory of pinned maps (default: the config file's capture.pin_dir, else the running instance's, else "+config.DefaultPinDir+")")
	f.StringVarP(&o.config, "config", "c", "", "the instance's config file (jmxdp run --config): its capture.pin_dir")
	addRunDirFlag(cmd, &o.runDir)
	f.StringVar(&o.format, "format", "table", "table or json")
	f.BoolVarP(&o.watch, "watch", "w", false, "sample every --interval and show rates until Ctrl-C")
	f.DurationVar(&o.interval, "interval", time.Second, "sampling interval with --watch")
	f.IntVar(&o.top, "top", 20, "streams (and untrusted sources) to show, busiest first; 0: all")
	f.StringVar(&o.filter, "filter", "", "show only the streams matching this expression, e.g. 'mid == 0x3039 and packets > 100' (docs/filters.md)")
	f.IntVar(&o.samples, "samples", 0, "with --watch, stop after this many samples (0: until Ctrl-C)")
	f.MarkHidden("samples")
	return cmd
}

func (o *statsOpts) check(cmd *cobra.Command) error {
	if err := checkIfaceName(o.iface); err != nil {
		return err
	}
	if err := checkFormat(o.format); err != nil {
		return err
	}
	if cmd.Flags().Changed("filter") {
		flt, err := filter.Compile(o.filter)
		if err != nil {
			return err
		}
		o.flt = flt
	}
	dir, _, err := instanceDir(cmd, o.iface, o.pinDir, o.config, o.runDir)
	if err != nil {
		return err
	}
	o.dir = dir
	set := cmd.Flags().Changed
	switch {
	case o.top < 0:
		return fmt.Errorf("--top %d: want 0 (all) or more", o.top)
	case set("interval") && !o.watch:
		return errors.New("--interval needs --watch")
	case o.interval <= 0:
		return fmt.Errorf("--interval %v: must be positive", o.interval)
	case o.samples < 0:
		return fmt.Errorf("--samples %d: want 0 (until Ctrl-C) or more", o.samples)
	case set("samples") && !o.watch:
		return errors.New("--samples needs --watch")
	}
	return nil
}

func runStats(ctx context.Context, w io.Writer, o statsOpts) error {
	dir := o.dir
	emit := func(s *instance.Sample, r *instance.Rates) error {
		if o.format == "json" {
			doc := statsDocument(o, dir, s, r)
			if o.watch {
				return writeJSON(w, doc)
			}
			enc := json.NewEncoder(w)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			return enc.Encode(doc)
		}
		var b bytes.Buffer
		if o.watch {
			b.WriteString(clearScreen)
		}
		writeStatsTable(&b, o, dir, s, r)
		_, err := w.Write(b.Bytes())
		return err
	}
	prev, err := o.readSample(dir)
	if err != nil {
		return err
	}
	if !o.watch {
		return emit(prev, nil)
	}
	// JSON has a document for every sample; the screen waits for rates.
	if o.format == "json" || o.samples == 1 {
		if err := emit(prev, nil); err != nil {
			return err
		}
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for n := 1; o.samples == 0 || n < o.samples; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := o.readSample(dir)
		if err != nil {
			return err
		}
		if err := emit(cur, instance.ComputeRates(prev, cur)); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// The counters in the order the table and the JSON show them; frames is
// the sum of the indented classes.
var statsOrder = []struct {
	stat   vocab.Stat
	indent bool
}{
	{vocab.StatFrames, false},
	{vocab.StatNotJmirror, true}, {vocab.StatJmirror, true}, {vocab.StatMalformedShort, true},
	{vocab.StatMalformedTruncated, true}, {vocab.StatUntrusted, true}, {vocab.StatFragTracked, true},
	{vocab.StatFragUnmatched, true},
	{vocab.StatFragDuplicate, true}, {vocab.StatFragHeld, true}, {vocab.StatIPv6ExtLong, true},
	{vocab.StatJmirrorBytes, false},
	{vocab.StatActionCapture, false}, {vocab.StatActionCount, false}, {vocab.StatActionPass, false},
	{vocab.StatCaptureFailed, false},
	{vocab.StatFragFirst, false}, {vocab.StatStreamNew, false}, {vocab.StatVersionNonzero, false},
	{vocab.StatCandidate, false}, {vocab.StatUntrustedMapped, false},
	{vocab.StatActionForward, false}, {vocab.StatFwdSent, true}, {vocab.StatFwdUserspace, true},
	{vocab.StatFwdNeighMiss, true}, {vocab.StatFwdNoRoute, true}, {vocab.StatFwdTooBig, true},
	{vocab.StatFwdFragFamily, true}, {vocab.StatFwdNoSource, true}, {vocab.StatFwdUnsupported, true},
	{vocab.StatFwdFragEarly, true},
}

// readSample reads the instance's maps and its forward sender's counts.
func (o *statsOpts) readSample(dir string) (*instance.Sample, error) {
	s, err := instance.ReadSample(o.iface, dir)
	if err == nil {
		s.ReadSenderCounts(o.runDir, o.iface)
	}
	return s, err
}
