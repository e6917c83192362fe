package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/pins"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// statsProgram loads the program with its maps pinned under
// BASE/IFACE, as a daemon on IFACE would, and configures it.
func statsProgram(t *testing.T, iface string) (*loader.Program, string) {
	t.Helper()
	testenv.RequireRoot(t)
	// Unique across processes: other test runs on the machine pin under
	// BPFFSRoot too.
	if err := pins.EnsureBPFFS(pins.BPFFSRoot); err != nil {
		t.Fatal(err)
	}
	base, err := os.MkdirTemp(pins.BPFFSRoot, "jmxdp-test-stats-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: filepath.Join(base, iface)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	err = p.Configure(loader.Config{
		Ports:         []uint16{gen.DefaultPort},
		DefaultAction: vocab.ActionCapture,
		Policies:      []vocab.PolicyRule{{MID: 7, AnySID: true, Action: vocab.ActionCount}},
		Allowlist:     []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, base
}

type testMirror struct {
	router   string
	mid, sid uint32
	port     uint16
	payload  int
}

func (m testMirror) build(t *testing.T, seq int) ([]byte, int) {
	t.Helper()
	g := gen.Mirror{Router: netip.MustParseAddr(m.router), Collector: netip.MustParseAddr("10.255.0.1"),
		MID: m.mid, SID: m.sid, Port: m.port,
		Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 1, uint16(seq), m.payload)}
	f, err := g.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return f, len(g.Inner)
}

func runFrames(t *testing.T, p *loader.Program, m testMirror, n int) int {
	t.Helper()
	var innerLen int
	for i := range n {
		f, l := m.build(t, i)
		if _, err := p.Run(f); err != nil {
			t.Fatal(err)
		}
		innerLen = l
	}
	return innerLen
}

// statsDoc is the JSON of one sample, as a consumer reads it.
type statsDoc struct {
	Time            time.Time
	Iface           string
	PinDir          string `json:"pin_dir"`
	Attached        bool
	Settings        statsSettingsJSON
	IntervalSeconds *float64 `json:"interval_seconds"`
	Totals          map[string]float64
	Rates           map[string]float64
	StreamsTotal    int `json:"streams_total"`
	Streams         []statsStreamJSON
	UntrustedTotal  int `json:"untrusted_total"`
	Untrusted       []statsUntrustedJSON
}

// Known frames through BPF_PROG_TEST_RUN: stats shows their exact counts,
// in the table and in JSON, read from the pins.
func TestStatsCounts(t *testing.T) {
	p, base := statsProgram(t, "jmst0")
	a := testMirror{"10.0.0.1", 7, 1, 0, 40}    // policy count
	b := testMirror{"10.0.0.2", 8, 2, 0, 100}   // capture: no socket, capture_failed
	u := testMirror{"192.0.2.66", 9, 9, 0, 10}  // untrusted
	n := testMirror{"10.0.0.1", 7, 1, 9999, 10} // a port not decoded: a discovery candidate
	la, lb := runFrames(t, p, a, 3), runFrames(t, p, b, 5)
	runFrames(t, p, u, 2)
	runFrames(t, p, n, 1)

	args := []string{"stats", "--iface", "jmst0", "--pin-dir", base}
	out, err := run(t, append(args, "--format", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	var doc statsDoc
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := map[string]float64{
		"frames": 11, "not_jmirror": 1, "jmirror": 8, "jmirror_bytes": float64(3*la + 5*lb),
		"malformed_short": 0, "malformed_truncated": 0, "untrusted": 2, "frag_tracked": 0, "frag_unmatched": 0,
		"action_capture": 5, "action_count": 3, "action_pass": 0, "capture_failed": 5,
		"frag_first": 0, "stream_new": 2, "version_nonzero": 0, "candidate": 1, "untrusted_mapped": 0,
		"frag_duplicate": 0, "frag_held": 0, "ipv6_ext_too_long": 0,
		"action_forward": 0, "forward_sent": 0, "forward_userspace": 0, "forward_neigh_miss": 0,
		"forward_no_route": 0, "forward_too_big": 0, "forward_frag_family": 0, "forward_no_source": 0,
		"forward_unsupported": 0, "forward_frag_early": 0,
		"streams": 2, "stream_capacity": 1024, "evicted": 0, "untrusted_sources": 1,
	}
	for k, v := range want {
		if doc.Totals[k] != v {
			t.Errorf("totals.%s = %v, want %v", k, doc.Totals[k], v)
		}
	}
	if len(doc.Totals) != len(want) {
		t.Errorf("totals has %d keys, want %d: %v", len(doc.Totals), len(want), doc.Totals)
	}
	// Stable key order: the counters as docs/cli.md lists them.
	if !strings.Contains(out, `"totals": {`+"\n"+`    "frames": 11,`+"\n"+`    "not_jmirror": 1,`) {
		t.Errorf("totals order:\n%s", out)
	}
	if doc.Rates != nil || doc.IntervalSeconds != nil || doc.Iface != "jmst0" || doc.PinDir != filepath.Join(base, "jmst0") || doc.Attached {
		t.Errorf("header: %+v", doc)
	}
	if s := doc.Settings; s.DefaultAction != "capture" || s.PolicyRules != 1 || s.AllowlistPrefixes != 1 || !s.AllowlistEnabled || len(s.Ports) != 1 || s.Ports[0] != gen.DefaultPort {
		t.Errorf("settings %+v", s)
	}
	if doc.StreamsTotal != 2 || len(doc.Streams) != 2 {
		t.Fatalf("streams %+v", doc.Streams)
	}
	sb, sa := doc.Streams[0], doc.Streams[1] // by bytes: b first
	if sb.Router != "10.0.0.2" || sb.MID != 8 || sb.SID != 2 || sb.Packets != 5 || sb.Bytes != uint64(5*lb) || sb.Inner.IPv4 != 5 || sb.PacketsPerSec != nil {
		t.Errorf("stream b: %+v", sb)
	}
	if sa.Router != "10.0.0.1" || sa.MID != 7 || sa.SID != 1 || sa.Packets != 3 || sa.Bytes != uint64(3*la) || sa.LastSeenAgoSeconds < 0 || sa.LastSeenAgoSeconds > 60 {
		t.Errorf("stream a: %+v", sa)
	}
	if doc.UntrustedTotal != 1 || len(doc.Untrusted) != 1 || doc.Untrusted[0].Addr != "192.0.2.66" || doc.Untrusted[0].Packets != 2 {
		t.Errorf("untrusted %+v", doc.Untrusted)
	}

	// --top 1: the busiest stream only.
	out, err = run(t, append(args, "--format", "json", "--top", "1")...)
	if err != nil {
		t.Fatal(err)
	}
	doc = statsDoc{}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.StreamsTotal != 2 || len(doc.Streams) != 1 || doc.Streams[0].MID != 8 {
		t.Errorf("--top 1: %v %+v", err, doc.Streams)
	}

	// The table: the same figures.
	out, err = run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jmxdp stats:\n%s", out)
	for _, re := range []string{
		`(?m)^frames\s+11$`, `(?m)^  not_jmirror\s+1$`, `(?m)^  jmirror\s+8$`, `(?m)^  untrusted\s+2$`,
		`(?m)^action_count\s+3$`, `(?m)^action_capture\s+5$`, `(?m)^capture_failed\s+5$`,
		`(?m)^jmirror_bytes\s+` + regexp.QuoteMeta(itoa(3*la+5*lb)) + `$`,
		`streams: 2 in a table of 1024 \(0 evicted\)`,
		`ports 30030; default action capture; 1 policy rule; allowlist 1 prefix`,
		`(?m)^10\.0\.0\.2\s+8 \(0x8\)\s+2 \(0x2\)\s+5\s+` + itoa(5*lb) + `\s+ipv4:5\s+\d+(ms|\.\ds) ago`,
		`(?m)^10\.0\.0\.1\s+7 \(0x7\)\s+1 \(0x1\)\s+3\s+` + itoa(3*la) + `\s+ipv4:3\s`,
		`UNTRUSTED SOURCES`, `(?m)^192\.0\.2\.66\s+2\s`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table lacks %s:\n%s", re, out)
		}
	}
	if strings.Index(out, "10.0.0.2 ") > strings.Index(out, "10.0.0.1 ") {
		t.Errorf("streams not by bytes:\n%s", out)
	}
	if strings.Contains(out, clearScreen) || strings.Contains(out, "RATE") {
		t.Errorf("one-shot table has rates or a screen clear:\n%s", out)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// inject runs frames through the program every 2 ms until stopped (at
// most 2000 frames or 10 s).
func inject(t *testing.T, p *loader.Program, m testMirror) (stop func()) {
	t.Helper()
	f, _ := m.build(t, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
			p.Run(f)
		}
	}()
	return func() { close(done); wg.Wait() }
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

// --watch: one JSON line per sample; from the second on, rates are the
// growth between the two samples over the interval between them.
func TestStatsWatchRates(t *testing.T) {
	p, base := statsProgram(t, "jmst1")
	a := testMirror{"10.0.0.1", 7, 1, 0, 40}
	runFrames(t, p, a, 3)
	stop := inject(t, p, a)
	out, err := run(t, "stats", "--iface", "jmst1", "--pin-dir", base, "--watch", "--interval", "100ms", "--samples", "3", "--format", "json")
	stop()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), out)
	}
	docs := make([]statsDoc, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &docs[i]); err != nil {
			t.Fatalf("line %d: %v\n%s", i, err, l)
		}
	}
	if docs[0].Rates != nil || docs[0].IntervalSeconds != nil || docs[0].Streams[0].PacketsPerSec != nil {
		t.Errorf("first sample has rates: %s", lines[0])
	}
	grew := false
	for i := 1; i < len(docs); i++ {
		prev, cur := docs[i-1], docs[i]
		if cur.IntervalSeconds == nil || cur.Rates == nil {
			t.Fatalf("sample %d has no rates: %s", i, lines[i])
		}
		dt := *cur.IntervalSeconds
		if dt < 0.05 || dt > 5 {
			t.Errorf("sample %d: interval %vs for --interval 100ms", i, dt)
		}
		for k, r := range cur.Rates {
			if k == "jmirror_bits" {
				if !near(r, cur.Rates["jmirror_bytes"]*8) {
					t.Errorf("sample %d: jmirror_bits %v, jmirror_bytes %v/s", i, r, cur.Rates["jmirror_bytes"])
				}
				continue
			}
			if d := cur.Totals[k] - prev.Totals[k]; !near(r*dt, d) {
				t.Errorf("sample %d: rate %s = %v over %vs, but it grew by %v", i, k, r, dt, d)
			}
		}
		s0, s1 := prev.Streams[0], cur.Streams[0]
		if s1.PacketsPerSec == nil || !near(*s1.PacketsPerSec*dt, float64(s1.Packets-s0.Packets)) ||
			!near(*s1.BitsPerSec*dt, float64(s1.Bytes-s0.Bytes)*8) {
			t.Errorf("sample %d: stream rates %v %v over %vs, grew %d packets %d bytes", i, s1.PacketsPerSec, s1.BitsPerSec, dt, s1.Packets-s0.Packets, s1.Bytes-s0.Bytes)
		}
		if cur.Rates["frames"] > 0 && *s1.PacketsPerSec > 0 {
			grew = true
		}
	}
	if !grew {
		t.Errorf("no rate above zero while frames were running:\n%s", out)
	}

	// The table: the first screen after one interval, with rates.
	stop = inject(t, p, a)
	out, err = run(t, "stats", "--iface", "jmst1", "--pin-dir", base, "--watch", "--interval", "100ms", "--samples", "2")
	stop()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, clearScreen) != 1 || !strings.HasPrefix(out, clearScreen) {
		t.Errorf("want one screen:\n%q", out)
	}
	for _, re := range []string{`rates over the last 0\.\d\ds`, `(?m)^frames\s+\d+\s+\d+\.\d/s$`, `(?m)^jmirror_bytes\s+\d+\s+[\d.]+ [kMG]?bit/s$`, `PKT/S\s+BIT/S`, `by bit rate`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("watch table lacks %s:\n%s", re, out)
		}
	}
}

// Ctrl-C ends a watch without an error.
func TestStatsWatchStops(t *testing.T) {
	_, base := statsProgram(t, "jmst2")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var b bytes.Buffer
	start := time.Now()
	err := runStats(ctx, &b, statsOpts{iface: "jmst2", pinDir: base, dir: filepath.Join(base, "jmst2"), format: "json", watch: true, interval: 50 * time.Millisecond})
	if err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("watch: %v after %v", err, time.Since(start))
	}
	if n := strings.Count(b.String(), "\n"); n < 2 {
		t.Errorf("%d samples in 300ms at 50ms", n)
	}
}

// Port discovery in stats: Jmirror to a port not decoded shows as a
// candidate port, in the table and the JSON.
func TestStatsCandidatePorts(t *testing.T) {
	p, base := statsProgram(t, "jmxcand0")
	runFrames(t, p, testMirror{router: "10.0.0.9", mid: 8, sid: 8, port: 6502, payload: 40}, 3)
	out, err := run(t, "stats", "--iface", "jmxcand0", "--pin-dir", base)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "CANDIDATE PORTS") || !strings.Contains(out, "6502") {
		t.Errorf("table:\n%s", out)
	}
	out, err = run(t, "stats", "--iface", "jmxcand0", "--pin-dir", base, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		CandidatePorts []struct {
			Port    uint16 `json:"port"`
			Packets uint64 `json:"packets"`
		} `json:"candidate_ports"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.CandidatePorts) != 1 || doc.CandidatePorts[0].Port != 6502 || doc.CandidatePorts[0].Packets != 3 {
		t.Errorf("candidate_ports %+v", doc.CandidatePorts)
	}
}
