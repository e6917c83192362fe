package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/spf13/cobra"
)

func newDecodeCmd() *cobra.Command {
	var (
		ports  []string
		engine string
		format string
		out    string
		expr   string
	)
	cmd := &cobra.Command{
		Use:   "decode [--port N ...] [--engine bpf|go] [--format table|json] [--out DIR] [--filter EXPR] FILE...",
		Short: "Report what the live path would count in pcap/pcapng files",
		Long: `decode runs capture files through the Jmirror data path offline and reports
per-stream counts. --engine bpf (the default when root) runs the real XDP
program over every frame with BPF_PROG_TEST_RUN; --engine go uses the pure-Go
decoder, which has the same semantics. --out DIR writes one pcapng file per
(mid, sid) with the decapsulated mirrored packets (DIR/mid-M/sid-S.pcapng).
--filter EXPR lists only the matching streams, and --out then writes only
their files, e.g. --filter 'mid == 0x3039 and sid >= 100000' or
--filter 'router in 64.230.0.0/16 and inner == ppp' (docs/filters.md); the
totals still count every frame.
The JSON form is documented in docs/decode-json.md.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			if engine == "" {
				engine = string(decode.EngineGo)
				if os.Geteuid() == 0 {
					engine = string(decode.EngineBPF)
				}
			}
			flt, err := compileFilter(cmd, expr)
			if err != nil {
				return err
			}
			udpPorts, auto, err := parsePortArgs(ports)
			if err != nil {
				return err
			}
			rep, err := decode.Files(args, decode.Options{Ports: udpPorts, Auto: auto, Engine: decode.Engine(engine), OutDir: out, Filter: flt})
			if err != nil {
				return err
			}
			if format == "json" {
				return rep.WriteJSON(cmd.OutOrStdout())
			}
			if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
				return err
			}
			if flt != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "streams filtered by: %s\n", flt)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&ports, "port", "p", nil, `UDP destination port carrying Jmirror (repeatable; default 30030), or "auto": every port where Jmirror-looking traffic is found`)
	f.StringVar(&engine, "engine", "", "bpf (the XDP program; default when root) or go")
	f.StringVar(&format, "format", "table", "table or json")
	f.StringVar(&out, "out", "", "write one pcapng per (mid, sid) under this directory")
	f.StringVar(&expr, "filter", "", "list (and with --out write) only the streams matching this expression, e.g. 'mid == 0x3039 and sid >= 100000' (docs/filters.md)")
	return cmd
}

// compileFilter compiles --filter when it was given, even empty.
func compileFilter(cmd *cobra.Command, expr string) (*filter.Filter, error) {
	if !cmd.Flags().Changed("filter") {
		return nil, nil
	}
	return filter.Compile(expr)
}

// parsePortArgs reads decode's --port values: port numbers, or "auto".
func parsePortArgs(in []string) (ports []uint16, auto bool, err error) {
	var nums []uint
	for _, s := range in {
		if s == "auto" {
			auto = true
			continue
		}
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, false, fmt.Errorf("--port %q: not a UDP port (1-65535) or auto", s)
		}
		nums = append(nums, uint(n))
	}
	ports, err = parsePorts(nums)
	return ports, auto, err
}

// parsePorts checks --port values are usable UDP ports.
func parsePorts(in []uint) ([]uint16, error) {
	out := make([]uint16, 0, len(in))
	for _, p := range in {
		if p == 0 || p > 65535 {
			return nil, fmt.Errorf("--port %d: not a UDP port (1-65535)", p)
		}
		out = append(out, uint16(p))
	}
	return out, nil
}
