package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/jmxdp/jmxdp/userspace/gen"
	"github.com/spf13/cobra"
)

func newGenCmd() *cobra.Command {
	cfg := gen.DefaultDemo()
	var out string
	cmd := &cobra.Command{
		Use:   "gen --out FILE.pcap [flags]",
		Short: "Write a pcap of generated Jmirror traffic (several intercepts, every inner kind)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return errors.New("--out FILE is required")
			}
			pkts, sum, err := gen.Demo(cfg)
			if err != nil {
				return fmt.Errorf("generate: %w", err)
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
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "random seed (same seed, same bytes)")
	f.IntVar(&cfg.Intercepts, "intercepts", cfg.Intercepts, "number of intercept ids (mid)")
	f.IntVar(&cfg.SessionsPer, "sessions", cfg.SessionsPer, "sessions (sid) per intercept")
	f.IntVar(&cfg.PacketsPer, "packets", cfg.PacketsPer, "packets per session")
	f.Uint16Var(&cfg.Port, "port", cfg.Port, "UDP destination port")
	return cmd
}
