package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmxdp/jmxdp/userspace/decode"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/send"
	"github.com/jmxdp/jmxdp/userspace/tools/xmit"
	"github.com/spf13/cobra"
)

func newGenCmd() *cobra.Command {
	cfg := gen.DefaultDemo()
	tcfg := gen.DefaultTraffic()
	var out, iface, netnsName, model, imix, format, ipv6Ext string
	var rate float64
	var duration time.Duration
	var loops int
	var fast fastFlags
	cmd := &cobra.Command{
		Use:   "gen (--out FILE.pcap | --iface IF [--netns NS]) [flags]",
		Short: "Generate Jmirror traffic (several intercepts, every inner kind): to a pcap, or sent on an interface",
		Long: `gen makes Jmirror traffic: intercepts x sessions streams, every inner kind, two
routers sharing an id, outer IPv6, VLAN tags, fragments and non-Jmirror noise, the
same bytes for the same seed. --out writes it as a pcap; --iface sends it from an
interface (in --netns if given), --loops times or for --duration, at --rate
frames/s (0: as fast as it goes). The frames are addressed to the lab's host end
(203.0.113.10, see jmxdp lab up).

--model selects what is generated:
  demo     (the default) the hand-made demo above: --intercepts, --sessions,
           --packets per session, --seed, --port.
  traffic  a statistical model for tests and benchmarks: --packets-total
           datagrams over --intercepts x --sessions streams (stream i sent by
           router i mod --routers, outer IPv4 192.0.2.x), inner sizes drawn
           from --imix (SIZE:WEIGHT,...; default simple IMIX 64:7,576:4,1400:1),
           inner kinds 60% IPv4, 30% IPv6, 10% PPP, a --fragments share of
           datagrams made larger than MTU 1500 and sent as two IPv4 fragments,
           a --malformed share with a short or too long UDP length, and
           --noise non-Jmirror frames per datagram. --mtu sets the link MTU
           (9000 for jumbo frames: sizes in --imix up to 9000), --ipv6 the
           share of routers sending over outer IPv6 (2001:db8:ff::x, their
           fragments RFC 8200 ones), --ipv6-ext the extension headers those
           carry (hbh,dst,routing,ah, each :BYTES optionally). Timestamps start at
           2025-01-06 09:00 UTC, 100000 frames/s.
Without --model, setting any of --packets-total, --routers, --imix,
--fragments, --malformed, --noise, --mtu, --ipv6 or --ipv6-ext selects traffic.

--format json prints what was generated (both models) as JSON: streams with
mid, sid, packets, bytes, routers and inner kinds, as jmxdp decode --format json
reports them, and totals (frames, jmirror, not_jmirror, malformed, fragments,
fragmented_datagrams).

--fast (with --iface) transmits with XDP instead of a socket, as xdp-trafficgen
does: the kernel sends copies of template frames at up to several million frames/s
(BPF_PROG_TEST_RUN in live-frames mode; needs root and a driver with XDP
transmit: on a veth, the peer must have an XDP program attached, as jmxdp run
does). Only unfragmented Jmirror frames of the model whose UDP checksum is 0 are
usable as templates (not fragments, malformed datagrams, outer IPv6 or noise);
each frame sent is stamped with the next of --intercepts x --sessions ids
from --base-mid and --base-sid, sessions varying fastest. It stops after --count
frames, --duration, or --loops x the number of templates frames (one pass by
default); --rate defaults to 0 (as fast as possible). It prints the frames sent;
with --format json, {"sent", "elapsed_seconds", "rate_pps", ...} instead of the
summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (out == "") == (iface == "") {
				return errors.New("give one of --out FILE or --iface IF")
			}
			if fast.on && iface == "" {
				return errors.New("--fast transmits: give --iface IF (not --out)")
			}
			if rate < 0 || loops < 0 || duration < 0 {
				return errors.New("--rate, --loops and --duration cannot be negative")
			}
			switch format {
			case "table", "json":
			case "text": // gen's name for table before the commands agreed on table|json
				fmt.Fprintln(cmd.ErrOrStderr(), "jmxdp gen: --format text is deprecated: use --format table")
				format = "table"
			default:
				return fmt.Errorf("--format %q: want table or json", format)
			}
			if model == "" {
				model = "demo"
				for _, name := range trafficFlags {
					if cmd.Flags().Changed(name) {
						model = "traffic"
					}
				}
			}
			var (
				pkts []gen.Packet
				sum  gen.Summary
				err  error
				port = cfg.Port
			)
			switch model {
			case "demo":
				pkts, sum, err = gen.Demo(cfg)
			case "traffic":
				if cmd.Flags().Changed("imix") {
					if tcfg.Sizes, err = parseIMIX(imix); err != nil {
						return err
					}
				}
				if tcfg.IPv6Ext, err = parseIPv6Ext(ipv6Ext); err != nil {
					return err
				}
				tcfg.Seed = uint64(cfg.Seed)
				tcfg.Intercepts, tcfg.SessionsPer, tcfg.Port = cfg.Intercepts, cfg.SessionsPer, cfg.Port
				pkts, sum, err = gen.Traffic(tcfg)
			default:
				return fmt.Errorf("--model %q: want demo or traffic", model)
			}
			if err != nil {
				return fmt.Errorf("generate: %w", err)
			}
			report := func(what string) error {
				if format == "json" {
					enc := json.NewEncoder(cmd.OutOrStdout())
					enc.SetIndent("", "  ")
					return enc.Encode(summaryJSON(model, port, sum))
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d frames, %d Jmirror datagrams in %d streams, %d malformed, %d non-Jmirror, %d later fragments (port %d)\n",
					what, sum.Frames, sum.JmirrorDatagrams, len(sum.Streams), sum.Malformed, sum.NotJmirror, sum.Fragments, port)
				return nil
			}
			if fast.on {
				if !cmd.Flags().Changed("rate") {
					rate = 0
				}
				return transmitFast(cmd, pkts, port, iface, netnsName, fast, xmit.Options{
					Intercepts: cfg.Intercepts, Sessions: cfg.SessionsPer, Rate: rate, Duration: duration,
				}, loops, format == "json")
			}
			if iface != "" {
				if err := report("generated"); err != nil {
					return err
				}
				return transmit(cmd, pkts, iface, netnsName, send.Options{Rate: rate, Duration: duration, Loops: loops}, format == "json")
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
			return report("wrote " + out)
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
	f.StringVar(&model, "model", "", "demo or traffic (default demo, traffic if a traffic flag is set)")
	f.StringVar(&format, "format", "table", "table or json (the summary of what was generated)")
	f.IntVar(&tcfg.Packets, "packets-total", tcfg.Packets, "traffic: total Jmirror datagrams")
	f.IntVar(&tcfg.Routers, "routers", tcfg.Routers, "traffic: routers sending the streams")
	f.StringVar(&imix, "imix", "64:7,576:4,1400:1", "traffic: inner size mix, SIZE:WEIGHT,...")
	f.Float64Var(&tcfg.FragmentRatio, "fragments", tcfg.FragmentRatio, "traffic: share of datagrams sent as IPv4 fragments")
	f.Float64Var(&tcfg.MalformedRatio, "malformed", tcfg.MalformedRatio, "traffic: share of malformed datagrams")
	f.Float64Var(&tcfg.NoiseRatio, "noise", tcfg.NoiseRatio, "traffic: non-Jmirror frames per datagram")
	f.IntVar(&tcfg.MTU, "mtu", gen.TrafficMTU, "traffic: outer link MTU (1280..65535): --fragments datagrams exceed it, the rest fit")
	f.Float64Var(&tcfg.IPv6, "ipv6", 0, "traffic: share of routers sending over outer IPv6")
	f.StringVar(&ipv6Ext, "ipv6-ext", "", "traffic: outer IPv6 extension headers, in order: hbh, dst, routing, ah, each with an optional :BYTES (e.g. hbh,routing:24)")
	f.BoolVar(&fast.on, "fast", false, "transmit with XDP (BPF_PROG_TEST_RUN live frames) from the model's Jmirror frames as templates")
	f.Uint64Var(&fast.count, "count", 0, "fast: frames to send (0: --duration or --loops)")
	f.Uint32Var(&fast.baseMID, "base-mid", 1, "fast: first intercept id stamped")
	f.Uint32Var(&fast.baseSID, "base-sid", 1, "fast: first session id stamped")
	f.IntVar(&fast.threads, "threads", 1, "fast: sending threads")
	f.IntVar(&fast.burst, "burst", 0, "fast: at most this many frames per call, sent back to back (0: about 200 ms worth); with --rate, smaller bursts need more --threads")
	return cmd
}

// trafficFlags select the traffic model when --model is not given.
var trafficFlags = []string{"packets-total", "routers", "imix", "fragments", "malformed", "noise", "mtu", "ipv6", "ipv6-ext"}

// parseIPv6Ext reads NAME[:BYTES],... into extension headers.
func parseIPv6Ext(s string) ([]gen.ExtHeader, error) {
	if s == "" {
		return nil, nil
	}
	types := map[string]uint8{"hbh": gen.ExtHopByHop, "dst": gen.ExtDstOpts, "routing": gen.ExtRouting, "ah": gen.ExtAH}
	var out []gen.ExtHeader
	for _, part := range strings.Split(s, ",") {
		name, size, sized := strings.Cut(strings.TrimSpace(part), ":")
		typ, ok := types[name]
		if !ok {
			return nil, fmt.Errorf("--ipv6-ext %q: unknown header %q (want hbh, dst, routing or ah)", s, name)
		}
		x := gen.ExtHeader{Type: typ}
		if sized {
			n, err := strconv.Atoi(size)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("--ipv6-ext %q: %q is not a length in bytes", s, part)
			}
			x.Len = n
		}
		out = append(out, x)
	}
	return out, nil
}

// parseIMIX reads SIZE:WEIGHT,... into a size mix.
func parseIMIX(s string) ([]gen.SizeWeight, error) {
	var out []gen.SizeWeight
	for _, part := range strings.Split(s, ",") {
		size, weight, ok := strings.Cut(strings.TrimSpace(part), ":")
		sz, err1 := strconv.Atoi(size)
		w, err2 := strconv.Atoi(weight)
		if !ok || err1 != nil || err2 != nil || sz < 0 || w < 0 {
			return nil, fmt.Errorf("--imix %q: want SIZE:WEIGHT,... with non-negative integers", s)
		}
		out = append(out, gen.SizeWeight{Size: sz, Weight: w})
	}
	return out, nil
}

// genSummary is the JSON form of a gen.Summary; streams and routers have the
// shape and order of jmxdp decode's report.
type genSummary struct {
	Model   string                `json:"model"`
	Port    uint16                `json:"port"`
	Streams []decode.StreamReport `json:"streams"`
	Totals  genTotals             `json:"totals"`
}

type genTotals struct {
	Frames              int    `json:"frames"`
	Jmirror             int    `json:"jmirror"`
	JmirrorBytes        uint64 `json:"jmirror_bytes"`
	NotJmirror          int    `json:"not_jmirror"`
	Malformed           int    `json:"malformed"`
	Fragments           int    `json:"fragments"`
	FragmentedDatagrams int    `json:"fragmented_datagrams"`
}

func summaryJSON(model string, port uint16, sum gen.Summary) genSummary {
	out := genSummary{Model: model, Port: port, Streams: []decode.StreamReport{}, Totals: genTotals{
		Frames: sum.Frames, Jmirror: sum.JmirrorDatagrams, NotJmirror: sum.NotJmirror,
		Malformed: sum.Malformed, Fragments: sum.Fragments, FragmentedDatagrams: sum.Fragmented,
	}}
	for id, c := range sum.Streams {
		s := decode.StreamReport{MID: id.MID, SID: id.SID, Packets: c.Packets, Bytes: c.Bytes, Routers: []decode.RouterReport{},
			Inner: decode.InnerReport{IPv4: c.Inner[gen.KindIPv4], IPv6: c.Inner[gen.KindIPv6], PPP: c.Inner[gen.KindPPP],
				Unknown: c.Inner[gen.KindUnknown], Empty: c.Inner[gen.KindEmpty]}}
		routers := make([]netip.Addr, 0, len(c.ByRouter))
		for r := range c.ByRouter {
			routers = append(routers, r)
		}
		slices.SortFunc(routers, func(a, b netip.Addr) int { return a.Compare(b) })
		for _, r := range routers {
			s.Routers = append(s.Routers, decode.RouterReport{Addr: r.String(), Packets: c.ByRouter[r][0], Bytes: c.ByRouter[r][1]})
		}
		out.Streams = append(out.Streams, s)
		out.Totals.JmirrorBytes += c.Bytes
	}
	slices.SortFunc(out.Streams, func(a, b decode.StreamReport) int {
		if a.MID != b.MID {
			return cmp.Compare(a.MID, b.MID)
		}
		return cmp.Compare(a.SID, b.SID)
	})
	return out
}

func transmit(cmd *cobra.Command, pkts []gen.Packet, iface, netnsName string, opt send.Options, quiet bool) error {
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
	w := cmd.OutOrStdout()
	if quiet { // stdout holds the JSON summary
		w = cmd.ErrOrStderr()
	}
	fmt.Fprintf(w, "sent %d frames (%d bytes) on %s in %s\n", rep.Sent, rep.Bytes, iface, rep.Elapsed.Round(time.Millisecond))
	return err
}

// fastFlags are gen's --fast options.
type fastFlags struct {
	on               bool
	count            uint64
	baseMID, baseSID uint32
	threads          int
	burst            int
}

// fastReport is gen --fast --format json's output.
type fastReport struct {
	Sent       uint64  `json:"sent"`
	Elapsed    float64 `json:"elapsed_seconds"`
	Rate       float64 `json:"rate_pps"`
	Templates  int     `json:"templates"`
	Intercepts int     `json:"intercepts"`
	Sessions   int     `json:"sessions"`
}

// transmitFast sends with xmit, the model's usable Jmirror frames (to port)
// as templates.
func transmitFast(cmd *cobra.Command, pkts []gen.Packet, port uint16, iface, netnsName string, ff fastFlags, opt xmit.Options, loops int, jsonOut bool) error {
	for _, p := range pkts {
		if dport, err := xmit.CheckTemplate(p.Data); err == nil && dport == port {
			opt.Templates = append(opt.Templates, p.Data)
		}
	}
	if len(opt.Templates) == 0 {
		return fmt.Errorf("--fast: none of the %d generated frames is an unfragmented Jmirror frame to port %d with UDP checksum 0", len(pkts), port)
	}
	opt.Iface, opt.Netns = iface, netnsName
	opt.BaseMID, opt.BaseSID, opt.Threads, opt.MaxBurst = ff.baseMID, ff.baseSID, ff.threads, ff.burst
	opt.Packets = ff.count
	if loops > 0 {
		opt.Packets = uint64(loops) * uint64(len(opt.Templates))
	}
	if opt.Packets == 0 && opt.Duration == 0 {
		opt.Packets = uint64(len(opt.Templates)) // one pass
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, err := xmit.Run(ctx, opt)
	if jsonOut {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(fastReport{Sent: st.Sent, Elapsed: st.Elapsed.Seconds(), Rate: st.Rate(),
			Templates: len(opt.Templates), Intercepts: opt.Intercepts, Sessions: opt.Sessions}); jerr != nil {
			return errors.Join(err, jerr)
		}
	} else {
		fmt.Fprintf(cmd.OutOrStdout(), "sent %d frames on %s in %s (%.0f frames/s) from %d templates over %d x %d streams\n",
			st.Sent, iface, st.Elapsed.Round(time.Millisecond), st.Rate(), len(opt.Templates), opt.Intercepts, opt.Sessions)
	}
	return err
}
