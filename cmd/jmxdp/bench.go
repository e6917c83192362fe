package main

import (
	"errors"
	"fmt"

	"github.com/jmxdp/jmxdp/userspace/bench"
	"github.com/spf13/cobra"
)

// jmxdp is the program `jmxdp bench` runs as `jmxdp run` in its capture
// section: this executable, re-executed, whose main must then run the
// command line it is given (in this package's test binary too, which is
// why it is said here and not in main).
func init() { bench.SetMain(runMain) }

// newBenchChildCmd is the hidden `jmxdp bench-child ROLE`: a process `jmxdp
// bench` re-executed to play a part (its sender, the udprecv collector), with
// the job on stdin. Hidden: it is the bench's, not an operator's.
func newBenchChildCmd() *cobra.Command {
	return &cobra.Command{
		Use:                bench.ChildArg + " ROLE [ARGS...]",
		Hidden:             true,
		DisableFlagParsing: true,
		Short:              "The bench's own re-executed processes (not for operators)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && (args[0] == "-h" || args[0] == "--help") {
				return cmd.Help() // flags are not parsed: they are the role's
			}
			if code := bench.RunChild(args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()); code != 0 {
				return &exitError{code: code, err: fmt.Errorf("bench-child %v", args)}
			}
			return nil
		},
	}
}

func newBenchCmd() *cobra.Command {
	var short bool
	var runs int
	var format, out string
	var only []string
	cmd := &cobra.Command{
		Use:   "bench [--short] [--runs N] [--only SECTION,...] [--format table|json] [--out DIR]",
		Short: "Measure jmxdp against baselines run alongside (XDP_PASS, tshark) and report ratios",
		Long: `bench measures, in one run and as ratios to a baseline measured alongside:
the XDP program's ns/frame against a trivial XDP_PASS program (root), offline
decoding with the Go and BPF (root) engines against tshark, and the writer's
peak RSS and open files with 100k concurrent streams, and live capture to
disk (CPU per frame written and loss-free rates) against tcpdump -w and a
recvmmsg collector, and the NATS sink's CPU per frame stored and loss-free
rate (1-node and 3-node nats-server clusters) against the file sink's. Each figure is the median of --runs runs. --short is the
quick CI mode (20k frames, 5k streams, one run). --only runs some sections
(program_cost, line_rate, capture_to_disk, offline_decode, scale,
stream_table, nats_sink). See docs/bench.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return errors.New("--format must be table or json")
			}
			if runs < 0 {
				return errors.New("--runs must not be negative")
			}
			if err := bench.CheckOnly(only); err != nil {
				return fmt.Errorf("--only: %w", err)
			}
			res, err := bench.Run(bench.Options{Short: short, Runs: runs, Only: only, Progress: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			if out != "" {
				j, md, err := res.WriteFiles(out)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "bench: wrote %s and %s\n", j, md)
			}
			if format == "json" {
				return res.WriteJSON(cmd.OutOrStdout())
			}
			return res.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&short, "short", false, "quick mode: 20k frames, 5k streams, 1 run unless --runs")
	cmd.Flags().IntVar(&runs, "runs", 0, "runs per figure, the median is reported (default 5, short mode 1)")
	cmd.Flags().StringSliceVar(&only, "only", nil, "run only these sections (comma-separated or repeated; default all)")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().StringVar(&out, "out", "", "also write DIR/<YYYY-MM-DD>.json and .md")
	return cmd
}
