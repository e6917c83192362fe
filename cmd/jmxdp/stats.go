package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/daemon"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/forward"
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

// sample is one reading of an instance's maps.
type sample struct {
	at        time.Time     // when it was read (wall and monotonic clock)
	coarse    time.Duration // CLOCK_MONOTONIC_COARSE then: the clock of last_seen
	attached  bool
	counters  maps.Counters
	streams   []maps.Stream
	untrusted []maps.UntrustedSource
	// candidates: Jmirror-looking traffic on ports not decoded.
	candidates []maps.Candidate
	capacity   uint32
	settings   maps.Settings
	ports      []uint16
	rules      int
	allow      int
	// forward: the forward rules and their streams' forward counters.
	forward    []maps.PolicyRule
	fwdStreams map[maps.StreamKey]maps.ForwardStats
	// socket: what the daemon's sender sent from sockets, per stream (the
	// file it publishes; nil without one).
	socket map[maps.StreamKey]forward.StreamFile
}

// readSample is readSample with the sender's per-stream counts, which
// the daemon publishes to the run-state directory (docs/forward.md). A
// file that cannot be read leaves them out: the maps are what counts.
func (o *statsOpts) readSample(dir string) (*sample, error) {
	s, err := readSample(o.iface, dir)
	if err == nil {
		s.socket, _ = forward.ReadStreams(forward.StreamsPath(o.runDir, o.iface))
	}
	return s, err
}

// readSample opens the pinned maps afresh, so that a watch follows an
// instance whose maps were replaced (a restart that migrated them).
func readSample(iface, dir string) (*sample, error) {
	p, err := openPinned(dir)
	if errors.Is(err, maps.ErrNotPinned) {
		return nil, noInstance(iface, dir, false)
	}
	if err != nil {
		return nil, err
	}
	defer p.Close()
	s := &sample{capacity: p.StreamCapacity()}
	if s.counters, err = p.Counters(); err != nil {
		return nil, err
	}
	if s.streams, err = p.Streams(); err != nil {
		return nil, err
	}
	if s.untrusted, err = p.Untrusted(); err != nil {
		return nil, err
	}
	if s.candidates, err = p.Candidates(); err != nil {
		return nil, err
	}
	if s.settings, err = p.Settings(); err != nil {
		return nil, err
	}
	if s.ports, err = p.Ports(); err != nil {
		return nil, err
	}
	rules, err := p.Policies()
	if err != nil {
		return nil, err
	}
	allow, err := p.Allowlist()
	if err != nil {
		return nil, err
	}
	s.rules, s.allow = len(rules), len(allow)
	for _, r := range rules {
		if r.Action == maps.ActionForward {
			s.forward = append(s.forward, r)
		}
	}
	if s.fwdStreams, err = p.ForwardStreams(); err != nil {
		return nil, err
	}
	s.at = time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err == nil {
		s.coarse = time.Duration(ts.Nano())
	}
	_, lerr := os.Lstat(daemon.LinkPin(dir))
	s.attached = lerr == nil
	return s, nil
}

// rates are per-second rates between two samples.
type rates struct {
	dt        float64 // seconds
	counters  [maps.NumStats]float64
	streams   map[maps.StreamKey][2]float64 // packets/s, bits/s
	untrusted map[netip.Addr]float64        // packets/s
}

// delta is how much a counter grew; one that went back (maps recreated)
// counts from zero.
func delta(prev, cur uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

func computeRates(prev, cur *sample) *rates {
	dt := cur.at.Sub(prev.at).Seconds()
	if dt <= 0 {
		return nil
	}
	r := &rates{dt: dt, streams: make(map[maps.StreamKey][2]float64, len(cur.streams)), untrusted: map[netip.Addr]float64{}}
	for i := range cur.counters {
		r.counters[i] = float64(delta(prev.counters[i], cur.counters[i])) / dt
	}
	before := make(map[maps.StreamKey]maps.StreamStats, len(prev.streams))
	for _, s := range prev.streams {
		before[s.StreamKey] = s.StreamStats
	}
	for _, s := range cur.streams {
		b := before[s.StreamKey] // a new stream grew from zero
		r.streams[s.StreamKey] = [2]float64{
			float64(delta(b.Packets, s.Packets)) / dt,
			float64(delta(b.Bytes, s.Bytes)) * 8 / dt,
		}
	}
	ub := map[netip.Addr]uint64{}
	for _, u := range prev.untrusted {
		ub[u.Addr] = u.Packets
	}
	for _, u := range cur.untrusted {
		r.untrusted[u.Addr] = float64(delta(ub[u.Addr], u.Packets)) / dt
	}
	return r
}

// ago is how long before the sample a CLOCK_MONOTONIC_COARSE time was.
func (s *sample) ago(t time.Duration) time.Duration {
	if s.coarse == 0 || t == 0 || t > s.coarse {
		return 0
	}
	return s.coarse - t
}

// topStreams sorts the streams that match f (nil: all), busiest first, and
// keeps top (0: all).
// Without rates busiest is most bytes; with rates, most bits/s, then most
// bytes. Ties fall back to packets, then (mid, sid, router): the order is
// the same for the same counts.
func topStreams(s *sample, r *rates, top int, f *filter.Filter) []maps.Stream {
	out := matchingStreams(s, f)
	slices.SortStableFunc(out, func(a, b maps.Stream) int {
		if r != nil {
			if c := cmp.Compare(r.streams[b.StreamKey][1], r.streams[a.StreamKey][1]); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(b.Packets, a.Packets),
			cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), a.Router.Compare(b.Router))
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// matchingStreams is a copy of the sample's streams that match f (nil:
// all). Each is one router's entry of the stream table, filtered on its
// own: router is that router, packets and bytes its share.
func matchingStreams(s *sample, f *filter.Filter) []maps.Stream {
	if f == nil {
		return slices.Clone(s.streams)
	}
	var out []maps.Stream
	for _, st := range s.streams {
		if f.Match(filter.StreamOf(st)) {
			out = append(out, st)
		}
	}
	return out
}

func topUntrusted(s *sample, r *rates, top int) []maps.UntrustedSource {
	out := slices.Clone(s.untrusted)
	slices.SortStableFunc(out, func(a, b maps.UntrustedSource) int {
		if r != nil {
			if c := cmp.Compare(r.untrusted[b.Addr], r.untrusted[a.Addr]); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), a.Addr.Compare(b.Addr))
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

func runStats(ctx context.Context, w io.Writer, o statsOpts) error {
	dir := o.dir
	emit := func(s *sample, r *rates) error {
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
		if err := emit(cur, computeRates(prev, cur)); err != nil {
			return err
		}
		prev = cur
	}
	return nil
}

// The counters in the order the table and the JSON show them; frames is
// the sum of the indented classes.
var statsOrder = []struct {
	stat   maps.Stat
	indent bool
}{
	{maps.StatFrames, false},
	{maps.StatNotJmirror, true}, {maps.StatJmirror, true}, {maps.StatMalformedShort, true},
	{maps.StatMalformedTruncated, true}, {maps.StatUntrusted, true}, {maps.StatFragTracked, true},
	{maps.StatFragUnmatched, true},
	{maps.StatFragDuplicate, true}, {maps.StatFragHeld, true}, {maps.StatIPv6ExtLong, true},
	{maps.StatJmirrorBytes, false},
	{maps.StatActionCapture, false}, {maps.StatActionCount, false}, {maps.StatActionPass, false},
	{maps.StatCaptureFailed, false},
	{maps.StatFragFirst, false}, {maps.StatStreamNew, false}, {maps.StatVersionNonzero, false},
	{maps.StatCandidate, false}, {maps.StatUntrustedMapped, false},
	{maps.StatActionForward, false}, {maps.StatFwdSent, true}, {maps.StatFwdUserspace, true},
	{maps.StatFwdNeighMiss, true}, {maps.StatFwdNoRoute, true}, {maps.StatFwdTooBig, true},
	{maps.StatFwdFragFamily, true}, {maps.StatFwdNoSource, true}, {maps.StatFwdUnsupported, true},
	{maps.StatFwdFragEarly, true},
}

// jsonObject is a JSON object whose keys keep their order.
type jsonObject []jsonField

type jsonField struct {
	key string
	val any
}

func (o jsonObject) MarshalJSON() ([]byte, error) {
	if o == nil {
		return []byte("null"), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.key)
		v, err := json.Marshal(f.val)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type statsSettingsJSON struct {
	Ports             []uint16 `json:"ports"`
	DefaultAction     string   `json:"default_action"`
	PolicyRules       int      `json:"policy_rules"`
	AllowlistPrefixes int      `json:"allowlist_prefixes"`
	AllowlistEnabled  bool     `json:"allowlist_enabled"`
}

type innerJSON struct {
	IPv4    uint64 `json:"ipv4"`
	IPv6    uint64 `json:"ipv6"`
	PPP     uint64 `json:"ppp"`
	Unknown uint64 `json:"unknown"`
	Empty   uint64 `json:"empty"`
}

type statsStreamJSON struct {
	Router             string    `json:"router"`
	MID                uint32    `json:"mid"`
	SID                uint32    `json:"sid"`
	Packets            uint64    `json:"packets"`
	Bytes              uint64    `json:"bytes"`
	Inner              innerJSON `json:"inner"`
	LastSeenAgoSeconds float64   `json:"last_seen_ago_seconds"`
	PacketsPerSec      *float64  `json:"packets_per_sec"`
	BitsPerSec         *float64  `json:"bits_per_sec"`
}

type statsUntrustedJSON struct {
	Addr               string   `json:"addr"`
	Packets            uint64   `json:"packets"`
	LastSeenAgoSeconds float64  `json:"last_seen_ago_seconds"`
	PacketsPerSec      *float64 `json:"packets_per_sec"`
}

// statsJSON is one sample in JSON: docs/cli.md describes it.
type statsJSON struct {
	Time            time.Time            `json:"time"`
	Iface           string               `json:"iface"`
	PinDir          string               `json:"pin_dir"`
	Attached        bool                 `json:"attached"`
	Settings        statsSettingsJSON    `json:"settings"`
	IntervalSeconds *float64             `json:"interval_seconds"`
	Totals          jsonObject           `json:"totals"`
	Rates           jsonObject           `json:"rates"`
	StreamsTotal    int                  `json:"streams_total"`
	Streams         []statsStreamJSON    `json:"streams"`
	UntrustedTotal  int                  `json:"untrusted_total"`
	Untrusted       []statsUntrustedJSON `json:"untrusted"`
	CandidatePorts  []statsCandidateJSON `json:"candidate_ports"`
	ForwardRules    []ruleJSON           `json:"forward_rules"`
	ForwardStreams  []statsForwardJSON   `json:"forward_streams"`
}

// statsForwardJSON is one forwarded stream's forward counters; userspace
// counts, by reason, the frames handed to userspace to send.
type statsForwardJSON struct {
	Router    string            `json:"router"`
	MID       uint32            `json:"mid"`
	SID       uint32            `json:"sid"`
	Packets   uint64            `json:"packets"`
	Bytes     uint64            `json:"bytes"`
	Userspace map[string]uint64 `json:"userspace"`
	// Socket: what the daemon's sender did with those, by reason.
	Socket *statsSocketJSON `json:"socket,omitempty"`
}

type statsSocketJSON struct {
	Sent   map[string]uint64 `json:"sent"`
	Bytes  map[string]uint64 `json:"bytes"`
	Failed map[string]uint64 `json:"failed"`
}

func forwardJSON(s *sample) []statsForwardJSON {
	out := []statsForwardJSON{}
	for k, v := range s.fwdStreams {
		j := statsForwardJSON{Router: k.Router.String(), MID: k.MID, SID: k.SID, Packets: v.Packets, Bytes: v.Bytes, Userspace: map[string]uint64{}}
		for r, n := range v.Userspace {
			if n > 0 {
				j.Userspace[maps.FwdReason(r).String()] = n
			}
		}
		if f, ok := s.socket[k]; ok {
			j.Socket = &statsSocketJSON{Sent: f.Sent, Bytes: f.Bytes, Failed: f.Failed}
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b statsForwardJSON) int {
		return cmp.Or(cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), strings.Compare(a.Router, b.Router))
	})
	return out
}

// statsCandidateJSON is a port not decoded that carried Jmirror-looking
// traffic (port discovery).
type statsCandidateJSON struct {
	Port    uint16 `json:"port"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

func evicted(s *sample) uint64 {
	n := uint64(len(s.streams))
	if s.counters[maps.StatStreamNew] > n {
		return s.counters[maps.StatStreamNew] - n
	}
	return 0
}

func statsDocument(o statsOpts, dir string, s *sample, r *rates) statsJSON {
	doc := statsJSON{
		Time: s.at.UTC(), Iface: o.iface, PinDir: dir, Attached: s.attached,
		Settings: statsSettingsJSON{
			Ports: s.ports, DefaultAction: s.settings.DefaultAction.String(), PolicyRules: s.rules,
			AllowlistPrefixes: s.allow, AllowlistEnabled: s.settings.AllowlistEnabled,
		},
		StreamsTotal: len(s.streams), Streams: []statsStreamJSON{},
		UntrustedTotal: len(s.untrusted), Untrusted: []statsUntrustedJSON{},
		CandidatePorts: []statsCandidateJSON{},
	}
	for _, c := range s.candidates {
		doc.CandidatePorts = append(doc.CandidatePorts, statsCandidateJSON{Port: c.Port, Packets: c.Packets, Bytes: c.Bytes})
	}
	if doc.Settings.Ports == nil {
		doc.Settings.Ports = []uint16{}
	}
	for _, e := range statsOrder {
		doc.Totals = append(doc.Totals, jsonField{e.stat.String(), s.counters[e.stat]})
	}
	doc.Totals = append(doc.Totals,
		jsonField{"streams", len(s.streams)}, jsonField{"stream_capacity", s.capacity},
		jsonField{"evicted", evicted(s)}, jsonField{"untrusted_sources", len(s.untrusted)})
	if r != nil {
		dt := r.dt
		doc.IntervalSeconds = &dt
		doc.Rates = jsonObject{}
		for _, e := range statsOrder {
			doc.Rates = append(doc.Rates, jsonField{e.stat.String(), r.counters[e.stat]})
		}
		doc.Rates = append(doc.Rates, jsonField{"jmirror_bits", r.counters[maps.StatJmirrorBytes] * 8})
	}
	for _, st := range topStreams(s, r, o.top, o.flt) {
		j := statsStreamJSON{
			Router: st.Router.String(), MID: st.MID, SID: st.SID, Packets: st.Packets, Bytes: st.Bytes,
			Inner: innerJSON{st.Inner[maps.InnerIPv4], st.Inner[maps.InnerIPv6], st.Inner[maps.InnerPPP],
				st.Inner[maps.InnerUnknown], st.Inner[maps.InnerEmpty]},
			LastSeenAgoSeconds: s.ago(st.LastSeen).Seconds(),
		}
		if r != nil {
			v := r.streams[st.StreamKey]
			j.PacketsPerSec, j.BitsPerSec = &v[0], &v[1]
		}
		doc.Streams = append(doc.Streams, j)
	}
	for _, u := range topUntrusted(s, r, o.top) {
		j := statsUntrustedJSON{Addr: u.Addr.String(), Packets: u.Packets, LastSeenAgoSeconds: s.ago(u.LastSeen).Seconds()}
		if r != nil {
			v := r.untrusted[u.Addr]
			j.PacketsPerSec = &v
		}
		doc.Untrusted = append(doc.Untrusted, j)
	}
	doc.ForwardRules = []ruleJSON{}
	for _, r := range s.forward {
		doc.ForwardRules = append(doc.ForwardRules, toRuleJSON(r))
	}
	doc.ForwardStreams = forwardJSON(s)
	return doc
}

// pps formats a packet rate.
func pps(v float64) string { return fmt.Sprintf("%.1f/s", v) }

// bps formats a bit rate with an SI prefix.
func bps(v float64) string {
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e9, "Gbit/s"}, {1e6, "Mbit/s"}, {1e3, "kbit/s"}} {
		if v >= u.div {
			return fmt.Sprintf("%.2f %s", v/u.div, u.unit)
		}
	}
	return fmt.Sprintf("%.0f bit/s", v)
}

func agoString(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%dms ago", d.Milliseconds())
	case d < time.Hour:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	}
	return d.Truncate(time.Second).String() + " ago"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

func writeStatsTable(w io.Writer, o statsOpts, dir string, s *sample, r *rates) {
	state := "attached"
	if !s.attached {
		state = "not attached: counters are frozen"
	}
	fmt.Fprintf(w, "jmxdp on %s: maps pinned in %s (%s)\n", o.iface, dir, state)
	allow := "off (any source)"
	if s.settings.AllowlistEnabled {
		allow = plural(s.allow, "prefix", "prefixes")
	}
	ports := make([]string, len(s.ports))
	for i, p := range s.ports {
		ports[i] = fmt.Sprint(p)
	}
	fmt.Fprintf(w, "ports %s; default action %s; %s; allowlist %s\n",
		strings.Join(ports, ","), s.settings.DefaultAction, plural(s.rules, "policy rule", "policy rules"), allow)
	if r != nil {
		fmt.Fprintf(w, "sampled %s; rates over the last %.2fs\n", s.at.Format(time.DateTime), r.dt)
	} else {
		fmt.Fprintf(w, "sampled %s\n", s.at.Format(time.DateTime))
	}

	fmt.Fprintln(w)
	head := []string{"COUNTER", "TOTAL"}
	if r != nil {
		head = append(head, "RATE")
	}
	rows := [][]string{head}
	for _, e := range statsOrder {
		name := e.stat.String()
		if e.indent {
			name = "  " + name
		}
		row := []string{name, fmt.Sprint(s.counters[e.stat])}
		if r != nil {
			rate := pps(r.counters[e.stat])
			if e.stat == maps.StatJmirrorBytes {
				rate = bps(r.counters[e.stat] * 8)
			}
			row = append(row, rate)
		}
		rows = append(rows, row)
	}
	writeAligned(w, rows, "lrr")
	fmt.Fprintf(w, "streams: %d in a table of %d (%d evicted)\n", len(s.streams), s.capacity, evicted(s))

	top := topStreams(s, r, o.top, o.flt)
	by := "bytes"
	if r != nil {
		by = "bit rate"
	}
	if o.flt != nil {
		fmt.Fprintf(w, "\nSTREAMS: %d of %d matching %s, by %s\n", len(top), len(matchingStreams(s, o.flt)), o.flt, by)
	} else {
		fmt.Fprintf(w, "\nSTREAMS: %d of %d, by %s\n", len(top), len(s.streams), by)
	}
	head = []string{"ROUTER", "MID", "SID", "PACKETS", "BYTES"}
	align := "lrrrr"
	if r != nil {
		head, align = append(head, "PKT/S", "BIT/S"), align+"rr"
	}
	rows = [][]string{append(head, "INNER", "LAST SEEN")}
	align += "lr"
	for _, st := range top {
		var kinds []string
		for k, n := range st.Inner {
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s:%d", maps.Inner(k), n))
			}
		}
		row := []string{st.Router.String(), fmt.Sprintf("%d (0x%x)", st.MID, st.MID), fmt.Sprintf("%d (0x%x)", st.SID, st.SID),
			fmt.Sprint(st.Packets), fmt.Sprint(st.Bytes)}
		if r != nil {
			v := r.streams[st.StreamKey]
			row = append(row, pps(v[0]), bps(v[1]))
		}
		rows = append(rows, append(row, strings.Join(kinds, " "), agoString(s.ago(st.LastSeen))))
	}
	writeAligned(w, rows, align)

	if len(s.forward) > 0 {
		fmt.Fprintf(w, "\nFORWARD: %s\n", plural(len(s.forward), "rule", "rules"))
		for _, r := range s.forward {
			fmt.Fprintf(w, "  %s\n", describeRule(toRuleJSON(r)))
		}
		rows := [][]string{{"ROUTER", "MID", "SID", "FORWARDED", "BYTES", "TO USERSPACE", "SOCKET SENT", "SOCKET FAILED"}}
		for _, f := range forwardJSON(s) {
			var sent, failed map[string]uint64
			if f.Socket != nil {
				sent, failed = f.Socket.Sent, f.Socket.Failed
			}
			rows = append(rows, []string{f.Router, fmt.Sprint(f.MID), fmt.Sprint(f.SID), fmt.Sprint(f.Packets), fmt.Sprint(f.Bytes),
				reasonList(f.Userspace), reasonList(sent), reasonList(failed)})
		}
		writeAligned(w, rows, "lrrrrlll")
	}

	if len(s.untrusted) > 0 {
		ut := topUntrusted(s, r, o.top)
		fmt.Fprintf(w, "\nUNTRUSTED SOURCES (dropped: not in the allowlist): %d of %d\n", len(ut), len(s.untrusted))
		head, align = []string{"ADDRESS", "PACKETS"}, "lr"
		if r != nil {
			head, align = append(head, "PKT/S"), align+"r"
		}
		rows = [][]string{append(head, "LAST SEEN")}
		align += "r"
		for _, u := range ut {
			row := []string{u.Addr.String(), fmt.Sprint(u.Packets)}
			if r != nil {
				row = append(row, pps(r.untrusted[u.Addr]))
			}
			rows = append(rows, append(row, agoString(s.ago(u.LastSeen))))
		}
		writeAligned(w, rows, align)
	}
	if len(s.candidates) > 0 {
		fmt.Fprintf(w, "\nCANDIDATE PORTS: Jmirror-looking traffic to ports not decoded (passed to the host; add them to ports:)\n")
		rows = [][]string{{"PORT", "PACKETS", "BYTES"}}
		for _, c := range s.candidates {
			rows = append(rows, []string{fmt.Sprint(c.Port), fmt.Sprint(c.Packets), fmt.Sprint(c.Bytes)})
		}
		writeAligned(w, rows, "rrr")
	}
}

// writeAligned prints rows as columns two spaces apart, each left ('l')
// or right ('r') aligned as align says.
func writeAligned(w io.Writer, rows [][]string, align string) {
	width := make([]int, len(align))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if align[i] == 'r' {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// reasonList renders counts by reason as "reason:n ...", sorted.
func reasonList(m map[string]uint64) string {
	var out []string
	for r, n := range m {
		out = append(out, fmt.Sprintf("%s:%d", r, n))
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}
