package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/jmxdp/jmxdp/userspace/send"
	"github.com/spf13/cobra"
)

func newGenCmd() *cobra.Command {
	cfg := gen.DefaultDemo()
	var out, iface, netnsName string
	var rate float64
	var duration time.Duration
	var loops int
	cmd := &cobra.Command{
		Use:   "gen (--out FILE.pcap | --iface IF [--netns NS]) [flags]",
		Short: "Generate Jmirror traffic (several intercepts, every inner kind): to a pcap, or sent on an interface",
		Long: `gen makes Jmirror traffic: intercepts x sessions streams, every inner kind, two
routers sharing an id, outer IPv6, VLAN tags, fragments and non-Jmirror noise, the
same bytes for the same seed. --out writes it as a pcap; --iface sends it from an
interface (in --netns if given), --loops times or for --duration, at --rate
frames/s (0: as fast as it goes). The frames are addressed to the lab's host end
(203.0.113.10, see jmxdp lab up).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (out == "") == (iface == "") {
				return errors.New("give one of --out FILE or --iface IF")
			}
			if rate < 0 || loops < 0 || duration < 0 {
				return errors.New("--rate, --loops and --duration cannot be negative")
			}
			pkts, sum, err := gen.Demo(cfg)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			if iface != "" {
				return transmit(cmd, pkts, iface, netnsName, send.Options{Rate: rate, Duration: duration, Loops: loops})
			}
			f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("create capture: %w", err)
			}
			if err := gen.WritePcap(f, pkts); err != nil {
				f.Close()
				return fmt.Errorf("write %s: %w", out, err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("close %s: %w", out, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d frames, %d Jmirror datagrams in %d streams, %d non-Jmirror, %d later fragments (port %d)\n",
				out, sum.Frames, sum.JmirrorDatagrams, len(sum.Streams), sum.NotJmirror, sum.Fragments, cfg.Port)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&out, "out", "o", "", "pcap file to write")
	f.StringVarP(&iface, "iface", "i", "", "send on this interface instead")
	f.StringVar(&netnsName, "netns", "", "network namespace of --iface")
	f.Float64Var(&rate, "rate", 1000, "frames per second when sending (0: as fast as possible)")
	f.DurationVar(&duration, "duration", 0, "send for this long (0: --loops passes)")
	f.IntVar(&loops, "loops", 0, "passes over the generated frames (0 with no --duration: one)")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (same seed, same bytes)")
	f.IntVar(&cfg.Intercepts, "intercepts", cfg.Intercepts, "number of intercept ids (mid)")
	f.IntVar(&cfg.SessionsPer, "sessions", cfg.SessionsPer, "sessions (sid) per intercept")
	f.IntVar(&cfg.PacketsPer, "packets", cfg.PacketsPer, "packets per session")
	f.Uint16Var(&cfg.Port, "port", cfg.Port, "UDP destination port")
	return cmd
}

func transmit(cmd *cobra.Command, pkts []gen.Packet, iface, netnsName string, opt send.Options) error {
	if opt.Duration == 0 && opt.Loops == 0 {
		opt.Loops = 1
	}
	frames := make([][]byte, len(pkts))
	for i, p := range pkts {
		frames[i] = p.Data
	}
	s, err := send.Open(iface, netnsName)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := s.Run(ctx, frames, opt)
	fmt.Fprintf(cmd.OutOrStdout(), "sent %d frames (%d bytes) on %s in %s\n", rep.Sent, rep.Bytes, iface, rep.Elapsed.Round(time.Millisecond))
	return err
}
