package main

import (
	"fmt"
	"os"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/spf13/cobra"
)

func newDecodeCmd() *cobra.Command {
	var (
		ports          = portList{allowAuto: true}
		engine         string
		format         string
		out            string
		expr           string
		allowUntrusted bool
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
			rep, err := decode.Files(args, decode.Options{Ports: ports.ports, Auto: ports.auto, Engine: decode.Engine(engine), OutDir: out, AllowUntrustedOut: allowUntrusted, Filter: flt})
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
	f.VarP(&ports, "port", "p", `UDP destination ports carrying Jmirror, repeatable or comma-separated (default 30030); "auto": every port where Jmirror-looking traffic is found`)
	f.StringVar(&engine, "engine", "", "bpf (the XDP program; default when root) or go")
	f.StringVar(&format, "format", "table", "table or json")
	f.StringVar(&out, "out", "", "write one pcapng per (mid, sid) under this directory")
	f.BoolVar(&allowUntrusted, "allow-untrusted-out", false, "write under --out even if another user owns it or can write it (links could be planted there)")
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
