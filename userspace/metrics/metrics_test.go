package metrics_test

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/afxdp"
	"github.com/jmxdp/jmxdp/userspace/capture"
	"github.com/jmxdp/jmxdp/userspace/config"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/tools/lab/labtest"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

var (
	router1   = netip.MustParseAddr("192.0.2.1")
	router2   = netip.MustParseAddr("192.0.2.2")
	router6   = netip.MustParseAddr("2001:db8::1")
	collector = netip.MustParseAddr("198.51.100.1")
	coll6     = netip.MustParseAddr("2001:db8::100")
	forged1   = netip.MustParseAddr("198.18.0.1")
	forged2   = netip.MustParseAddr("198.18.0.2")
	forged3   = netip.MustParseAddr("198.18.0.3")
	subA      = netip.MustParseAddr("10.0.0.1")
	subB      = netip.MustParseAddr("10.0.0.2")
)

// series is a scrape: "name{a=\"x\",b=\"y\"}" -> value, labels sorted.
type series map[string]float64

func gather(t *testing.T, c prometheus.Collector) (series, []*dto.MetricFamily) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := series{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var v float64
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			default:
				t.Fatalf("%s: neither counter nor gauge", mf.GetName())
			}
			out[key(mf.GetName(), m.GetLabel())] = v
		}
	}
	return out, mfs
}

func key(name string, labels []*dto.LabelPair) string {
	var ls []string
	for _, l := range labels {
		ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(ls)
	return name + "{" + strings.Join(ls, ",") + "}"
}

// family returns the series of one family.
func (s series) family(name string) series {
	out := series{}
	for k, v := range s {
		if strings.HasPrefix(k, name+"{") {
			out[k] = v
		}
	}
	return out
}

// want builds the expected series of a family: label sets "a=x,b=y" (or ""
// for none) -> value.
func want(name string, vals map[string]float64) series {
	out := series{}
	for ls, v := range vals {
		var parts []string
		if ls != "" {
			for _, kv := range strings.Split(ls, ",") {
				k, val, _ := strings.Cut(kv, "=")
				parts = append(parts, fmt.Sprintf("%s=%q", k, val))
			}
		}
		sort.Strings(parts)
		out[name+"{"+strings.Join(parts, ",")+"}"] = v
	}
	return out
}

func checkFamily(t *testing.T, got series, name string, vals map[string]float64) {
	t.Helper()
	g, w := got.family(name), want(name, vals)
	if !maps.Equal(g, w) {
		t.Errorf("%s:\n got  %v\n want %v", name, sortedKeys(g), sortedKeys(w))
	}
}

func sortedKeys(s series) []string {
	var out []string
	for k, v := range s {
		out = append(out, fmt.Sprintf("%s %v", k, v))
	}
	slices.Sort(out)
	return out
}

func names(s series) map[string]bool {
	out := map[string]bool{}
	for k := range s {
		out[k[:strings.IndexByte(k, '{')]] = true
	}
	return out
}

// testbed is a loaded program that has seen known traffic.
type testbed struct {
	prog   *loader.Program
	nfrags int // frames of the fragmented datagram
}

func (tb *testbed) run(t *testing.T, frame []byte, verdict vocab.Verdict) {
	t.Helper()
	got, err := tb.prog.Run(frame)
	if err != nil {
		t.Fatal(err)
	}
	if got != verdict {
		t.Fatalf("verdict %v, want %v", got, verdict)
	}
}

func mirrorFrames(t *testing.T, m gen.Mirror) [][]byte {
	t.Helper()
	if m.Collector == (netip.Addr{}) {
		m.Collector = collector
		if m.Router.Is6() {
			m.Collector = coll6
		}
	}
	f, err := m.Frames()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// inner is a mirrored ICMP echo of n bytes in all.
func inner(t *testing.T, n int) []byte {
	t.Helper()
	b := gen.InnerIPv4ICMPEcho(subA, subB, 1, 1, n-28)
	if len(b) != n {
		t.Fatalf("inner packet of %d bytes, want %d", len(b), n)
	}
	return b
}

// The traffic of newTestbed, as the tests expect to see it:
//
//	stream (mid, sid)  router   packets  bytes each  action
//	1, 10              router1  4        128         capture (default)
//	1, 10              router2  2        128         capture
//	1, 11              router2  3        228         capture
//	2, 20              router1  2        528         count
//	3, 30              router6  5        48          pass
//	4, 40              router2  1        1028        capture, version 1
//	5, 50              router1  1        2028        capture, fragmented
//
// plus 6 frames from three sources outside the allowlist, 4 frames that are
// not Jmirror, one short, one truncated and one unmatched fragment.
func newTestbed(t *testing.T) *testbed {
	t.Helper()
	testenv.RequireRoot(t)
	p, err := loader.Load(loader.Options{MaxStreams: 64})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	err = p.Configure(loader.Config{
		DefaultAction: vocab.ActionCapture,
		Policies: []vocab.PolicyRule{
			{MID: 2, AnySID: true, Action: vocab.ActionCount},
			{MID: 3, SID: 30, Action: vocab.ActionPass},
		},
		Allowlist: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tb := &testbed{prog: p}
	pass, drop := vocab.VerdictPass, vocab.VerdictDrop
	// A capture stream with no AF_XDP socket falls back to the stack.
	send := func(m gen.Mirror, n int, v vocab.Verdict) {
		for i := 0; i < n; i++ {
			for _, f := range mirrorFrames(t, m) {
				tb.run(t, f, v)
			}
		}
	}
	send(gen.Mirror{Router: router1, MID: 1, SID: 10, Inner: inner(t, 128)}, 4, pass)
	send(gen.Mirror{Router: router2, MID: 1, SID: 10, Inner: inner(t, 128)}, 2, pass)
	send(gen.Mirror{Router: router2, MID: 1, SID: 11, Inner: inner(t, 228)}, 3, pass)
	send(gen.Mirror{Router: router1, MID: 2, SID: 20, Inner: inner(t, 528)}, 2, drop)
	send(gen.Mirror{Router: router6, MID: 3, SID: 30, Inner: inner(t, 48)}, 5, pass)
	send(gen.Mirror{Router: router2, MID: 4, SID: 40, Inner: inner(t, 1028), Version: 1}, 1, pass)
	frag := gen.Mirror{Router: router1, MID: 5, SID: 50, Inner: inner(t, 2028), MTU: 1000, IPID: 77}
	tb.nfrags = len(mirrorFrames(t, frag))
	if tb.nfrags < 3 {
		t.Fatalf("fragmented datagram in %d frames", tb.nfrags)
	}
	send(frag, 1, pass)

	// Untrusted: 3, 2 and 1 frames.
	send(gen.Mirror{Router: forged1, MID: 9, SID: 9, Inner: inner(t, 128)}, 3, drop)
	send(gen.Mirror{Router: forged2, MID: 9, SID: 9, Inner: inner(t, 128)}, 2, drop)
	send(gen.Mirror{Router: forged3, MID: 9, SID: 9, Inner: inner(t, 128)}, 1, drop)

	// Not Jmirror.
	tb.run(t, gen.NotJmirrorARP(router1, collector), pass)
	tb.run(t, gen.NotJmirrorTCPSyn(router1, collector, 40000, 22), pass)
	tb.run(t, gen.NotJmirrorICMPEcho(router1, collector, 1, 1, 56), pass)
	tb.run(t, gen.NotJmirrorUDP(router1, collector, 53, 53, []byte("not jmirror")), pass)
	// Jmirror to a port not decoded: passed, and a discovery candidate.
	send(gen.Mirror{Router: router1, Collector: collector, MID: 5, SID: 5, Port: 6502, Inner: inner(t, 128)}, 2, pass)
	// Malformed: UDP length 12 (< 16), and beyond the frame.
	m := gen.Mirror{Router: router1, Collector: collector, MID: 1, SID: 10, Inner: inner(t, 128)}
	short := mirrorFrames(t, m)[0]
	binary.BigEndian.PutUint16(short[m.HeaderOffset()-4:], 12)
	tb.run(t, short, pass)
	long := mirrorFrames(t, m)[0]
	binary.BigEndian.PutUint16(long[m.HeaderOffset()-4:], 4000)
	tb.run(t, long, pass)
	// A later fragment of a datagram never seen, from a source that sent
	// no fragmented Jmirror (router1's would be held: frag_held).
	tb.run(t, gen.NotJmirrorIPv4Fragment(netip.MustParseAddr("192.0.2.250"), collector, 999, 8, false, make([]byte, 64)), pass)
	return tb
}

func fakeCapture() capture.Stats {
	return capture.Stats{
		Queues: []capture.QueueStats{
			{Queue: 0, Mode: "zerocopy", Frames: 100, Bytes: 64000, Dropped: 2, KernelOK: true,
				Kernel: afxdp.Stats{RxDropped: 3, RxInvalidDescs: 4, RxRingFull: 5, RxFillRingEmptyDescs: 6},
				SG:     true, Chains: afxdp.ChainStats{Joined: 11, Dropped: 1}},
			{Queue: 3, Mode: "copy", Frames: 7, Bytes: 700, Dropped: 0}, // XDP_STATISTICS unreadable
		},
		QueueDrops: 2, Unexpected: 1, NoMetadata: 9, Fragments: 12,
		Reassembly: reasm.Stats{Fragments: 12, Reassembled: 4, Timeouts: 1, Evicted: 2, Overlaps: 3,
			TooBig: 5, Malformed: 6, Pending: 7, PendingBytes: 8000, Duplicates: 9},
		Held: reasm.HoldStats{Held: 10, Released: 6, Expired: 2, Evicted: 1, Pending: 1},
	}
}

func fakeWriter() writer.Stats {
	s := writer.Stats{Packets: 1000, Bytes: 123456, Buffered: 11, FilesCreated: 20, FilesCompleted: 18,
		FilesRemoved: 1, RotationsSize: 10, RotationsAge: 8, Evictions: 4, StreamEvictions: 3, OpenFiles: 2, Streams: 6, Faults: 1}
	s.RecoveredFiles, s.RecoveryPending = 40, 160
	for r := range s.Drops {
		s.Drops[r] = uint64(10 + r)
	}
	return s
}

func fakeWriterStreams() []writer.StreamStats {
	return []writer.StreamStats{
		{Key: writer.Key{MID: 1, SID: 10}, Drops: 5},
		{Key: writer.Key{MID: 1, SID: 11}, Drops: 50},
		{Key: writer.Key{MID: 2, SID: 20}},
		{Key: writer.Key{MID: 4, SID: 40}, Drops: 7},
		{Key: writer.Key{MID: 5, SID: 50}, Drops: 1},
	}
}

func fullSource(tb *testbed) metrics.Source {
	return metrics.Source{
		Maps: tb.prog.Maps, Iface: "lo", Ifindex: 1,
		Capture: fakeCapture, Writer: fakeWriter, WriterStreams: fakeWriterStreams,
		Retention: fakeRetention, Handoff: fakeHandoff,
		Forward: forward.NewSender(tb.prog.Maps).Stats,
	}
}

var testOpts = metrics.Options{TopStreams: 3, MaxRouters: 2, MaxIntercepts: 3, Version: "1.2.3", Revision: "abc"}

func TestCollector(t *testing.T) {
	tb := newTestbed(t)
	before := time.Now()
	got, _ := gather(t, metrics.NewCollector(fullSource(tb), testOpts))
	after := time.Now()
	nf := float64(tb.nfrags)

	// Kernel counters.
	checkFamily(t, got, "jmxdp_frames_total", map[string]float64{
		"class=not_jmirror": 6, "class=jmirror": 18, "class=malformed_short": 1, "class=malformed_truncated": 1,
		"class=untrusted": 6, "class=frag_tracked": nf - 1, "class=frag_unmatched": 1,
		"class=frag_duplicate": 0, "class=frag_held": 0, "class=ipv6_ext_too_long": 0,
	})
	ctr, err := tb.prog.Maps.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, v := range got.family("jmxdp_frames_total") {
		sum += v
	}
	if sum != float64(ctr[vocab.StatFrames]) {
		t.Errorf("frame classes sum to %v, the kernel counted %d frames", sum, ctr[vocab.StatFrames])
	}
	checkFamily(t, got, "jmxdp_jmirror_bytes_total", map[string]float64{"": 6*128 + 3*228 + 2*528 + 5*48 + 1028 + 2028})
	checkFamily(t, got, "jmxdp_policy_actions_total", map[string]float64{
		"action=capture": 4 + 2 + 3 + 1 + nf, "action=count": 2, "action=pass": 5, "action=forward": 0,
	})
	checkFamily(t, got, "jmxdp_capture_failures_total", map[string]float64{"": 4 + 2 + 3 + 1 + nf})
	checkFamily(t, got, "jmxdp_stream_table_inserts_total", map[string]float64{"": 7})
	checkFamily(t, got, "jmxdp_version_nonzero_total", map[string]float64{"": 1})
	checkFamily(t, got, "jmxdp_fragments_total", map[string]float64{
		"outcome=first": 1, "outcome=tracked": nf - 1, "outcome=unmatched": 1, "outcome=duplicate": 0, "outcome=held": 0,
	})

	// Per intercept: the 3 with the most bytes, the rest (mids 3 and 4) summed.
	checkFamily(t, got, "jmxdp_intercept_packets_total", map[string]float64{
		"mid=5": 1, "mid=1": 9, "mid=2": 2, "mid=other": 5 + 1,
	})
	checkFamily(t, got, "jmxdp_intercept_bytes_total", map[string]float64{
		"mid=5": 2028, "mid=1": 6*128 + 3*228, "mid=2": 2 * 528, "mid=other": 5*48 + 1028,
	})
	checkFamily(t, got, "jmxdp_intercepts", map[string]float64{"": 5})
	// Top 3 streams by bytes: (5,50) 2028, (2,20) 1056, (4,40) 1028; not
	// (1,10) 768, (1,11) 684 or (3,30) 240.
	checkFamily(t, got, "jmxdp_stream_bytes_total", map[string]float64{
		"mid=5,sid=50": 2028, "mid=2,sid=20": 1056, "mid=4,sid=40": 1028,
	})
	checkFamily(t, got, "jmxdp_stream_packets_total", map[string]float64{
		"mid=5,sid=50": 1, "mid=2,sid=20": 2, "mid=4,sid=40": 1,
	})
	for _, fam := range []string{"jmxdp_stream_last_seen_timestamp_seconds", "jmxdp_intercept_last_seen_timestamp_seconds"} {
		ts := got.family(fam)
		if len(ts) != 3 {
			t.Errorf("%s: %v, want 3 series", fam, sortedKeys(ts))
		}
		for k, v := range ts {
			if v < float64(before.Add(-time.Minute).Unix()) || v > float64(after.Add(time.Second).Unix()) {
				t.Errorf("%s = %v, want about %v", k, v, before.Unix())
			}
		}
	}
	checkFamily(t, got, "jmxdp_streams", map[string]float64{"": 7})
	checkFamily(t, got, "jmxdp_streams_active", map[string]float64{"": 7})

	// Per router: the 2 with the most packets, router6 (5) in "other".
	checkFamily(t, got, "jmxdp_router_packets_total", map[string]float64{
		"router=192.0.2.1": 4 + 2 + 1, "router=192.0.2.2": 2 + 3 + 1, "router=other": 5,
	})
	checkFamily(t, got, "jmxdp_router_bytes_total", map[string]float64{
		"router=192.0.2.1": 4*128 + 2*528 + 2028, "router=192.0.2.2": 2*128 + 3*228 + 1028, "router=other": 5 * 48,
	})
	checkFamily(t, got, "jmxdp_routers", map[string]float64{"": 3})
	checkFamily(t, got, "jmxdp_untrusted_packets_total", map[string]float64{
		"router=198.18.0.1": 3, "router=198.18.0.2": 2, "router=other": 1,
	})
	checkFamily(t, got, "jmxdp_untrusted_routers", map[string]float64{"": 3})
	checkFamily(t, got, "jmxdp_untrusted_packets_all_total", map[string]float64{"": 3 + 2 + 1})

	// Maps.
	checkFamily(t, got, "jmxdp_map_entries", map[string]float64{
		"map=jm_streams": 7, "map=jm_frags": 1, "map=jm_untrusted": 3, "map=jm_policy": 2, "map=jm_allowlist": 2,
	})
	checkFamily(t, got, "jmxdp_map_max_entries", map[string]float64{
		"map=jm_streams": 64, "map=jm_frags": 16384, "map=jm_untrusted": 4096, "map=jm_policy": 65536, "map=jm_allowlist": 4096,
	})
	checkFamily(t, got, "jmxdp_map_fill_ratio", map[string]float64{
		"map=jm_streams": 7.0 / 64, "map=jm_frags": 1.0 / 16384, "map=jm_untrusted": 3.0 / 4096,
		"map=jm_policy": 2.0 / 65536, "map=jm_allowlist": 2.0 / 4096,
	})

	// AF_XDP and reassembly, from the fake capture.
	checkFamily(t, got, "jmxdp_xsk_info", map[string]float64{"queue=0,mode=zerocopy": 1, "queue=3,mode=copy": 1})
	checkFamily(t, got, "jmxdp_xsk_frames_total", map[string]float64{"queue=0": 100, "queue=3": 7})
	checkFamily(t, got, "jmxdp_xsk_bytes_total", map[string]float64{"queue=0": 64000, "queue=3": 700})
	checkFamily(t, got, "jmxdp_capture_queue_drops_total", map[string]float64{"queue=0": 2, "queue=3": 0})
	checkFamily(t, got, "jmxdp_xsk_rx_dropped_total", map[string]float64{"queue=0": 3})
	checkFamily(t, got, "jmxdp_xsk_rx_invalid_descs_total", map[string]float64{"queue=0": 4})
	checkFamily(t, got, "jmxdp_xsk_rx_ring_full_total", map[string]float64{"queue=0": 5})
	checkFamily(t, got, "jmxdp_xsk_fill_ring_empty_total", map[string]float64{"queue=0": 6})
	checkFamily(t, got, "jmxdp_xsk_multibuffer_frames_total", map[string]float64{
		"queue=0,outcome=joined": 11, "queue=0,outcome=dropped": 1, "queue=3,outcome=joined": 0, "queue=3,outcome=dropped": 0})
	checkFamily(t, got, "jmxdp_capture_unexpected_frames_total", map[string]float64{"": 1})
	checkFamily(t, got, "jmxdp_capture_frames_without_timestamp_total", map[string]float64{"": 9})
	checkFamily(t, got, "jmxdp_reassembly_fragments_total", map[string]float64{"": 12})
	checkFamily(t, got, "jmxdp_reassembly_datagrams_total", map[string]float64{
		"outcome=reassembled": 4, "outcome=timeout": 1, "outcome=evicted": 2, "outcome=overlap": 3,
		"outcome=too_big": 5, "outcome=malformed": 6,
	})
	checkFamily(t, got, "jmxdp_reassembly_pending_datagrams", map[string]float64{"": 7})
	checkFamily(t, got, "jmxdp_reassembly_pending_bytes", map[string]float64{"": 8000})
	checkFamily(t, got, "jmxdp_reassembly_duplicate_fragments_total", map[string]float64{"": 9})
	checkFamily(t, got, "jmxdp_reassembly_held_fragments_total", map[string]float64{
		"outcome=held": 10, "outcome=released": 6, "outcome=expired": 2, "outcome=evicted": 1,
	})

	// Writers, from the fake.
	checkFamily(t, got, "jmxdp_writer_packets_total", map[string]float64{"": 1000})
	checkFamily(t, got, "jmxdp_writer_bytes_total", map[string]float64{"": 123456})
	checkFamily(t, got, "jmxdp_writer_buffered_packets", map[string]float64{"": 11})
	checkFamily(t, got, "jmxdp_writer_drops_total", map[string]float64{
		"reason=disk": 10, "reason=queue": 11, "reason=reassembly": 12, "reason=invalid": 13, "reason=closed": 14, "reason=other": 15,
	})
	checkFamily(t, got, "jmxdp_writer_files_created_total", map[string]float64{"": 20})
	checkFamily(t, got, "jmxdp_writer_files_completed_total", map[string]float64{"": 18})
	checkFamily(t, got, "jmxdp_writer_files_removed_total", map[string]float64{"": 1})
	checkFamily(t, got, "jmxdp_writer_rotations_total", map[string]float64{"trigger=size": 10, "trigger=age": 8})
	checkFamily(t, got, "jmxdp_writer_evictions_total", map[string]float64{"": 4})
	checkFamily(t, got, "jmxdp_writer_stream_evictions_total", map[string]float64{"": 3})
	checkFamily(t, got, "jmxdp_writer_open_files", map[string]float64{"": 2})
	checkFamily(t, got, "jmxdp_writer_streams", map[string]float64{"": 6})
	checkFamily(t, got, "jmxdp_writer_faults", map[string]float64{"": 1})
	checkFamily(t, got, "jmxdp_writer_recovered_files_total", map[string]float64{"": 40})
	checkFamily(t, got, "jmxdp_writer_recovery_pending_files", map[string]float64{"": 160})
	// The 3 streams with the most drops; (2,20) has none.
	checkFamily(t, got, "jmxdp_stream_writer_drops_total", map[string]float64{
		"mid=1,sid=11": 50, "mid=4,sid=40": 7, "mid=1,sid=10": 5,
	})

	// The exporter.
	bi := got.family("jmxdp_build_info")
	if len(bi) != 1 {
		t.Fatalf("build info %v", bi)
	}
	for k, v := range bi {
		if v != 1 || !strings.Contains(k, `version="1.2.3"`) || !strings.Contains(k, `revision="abc"`) || !strings.Contains(k, `goversion="go`) {
			t.Errorf("build info %s %v", k, v)
		}
	}
	checkFamily(t, got, "jmxdp_scrape_errors_total", map[string]float64{
		"source=jm_stats": 0, "source=jm_streams": 0, "source=jm_untrusted": 0, "source=jm_frags": 0,
		"source=jm_policy": 0, "source=jm_allowlist": 0, "source=jm_candidates": 0, "source=link": 0,
	})
	checkFamily(t, got, "jmxdp_candidate_port_packets_total", map[string]float64{"port=6502": 2})
	checkFamily(t, got, "jmxdp_candidate_ports", map[string]float64{"": 1})
	checkFamily(t, got, "jmxdp_candidate_port_packets_all_total", map[string]float64{"": 2})
	if len(got.family("jmxdp_scrape_duration_seconds")) != 1 {
		t.Error("no scrape duration")
	}
}

// TestHideIDs: no mid or sid label anywhere; the totals do not change.
func TestHideIDs(t *testing.T) {
	tb := newTestbed(t)
	shown, _ := gather(t, metrics.NewCollector(fullSource(tb), testOpts))
	opts := testOpts
	opts.HideIDs = true
	hidden, _ := gather(t, metrics.NewCollector(fullSource(tb), opts))
	for k := range hidden {
		if strings.Contains(k, "mid=") || strings.Contains(k, "sid=") {
			t.Errorf("HideIDs exported %s", k)
		}
	}
	for _, fam := range []string{"jmxdp_intercept_packets_total", "jmxdp_intercept_bytes_total",
		"jmxdp_intercept_last_seen_timestamp_seconds", "jmxdp_stream_packets_total", "jmxdp_stream_bytes_total",
		"jmxdp_stream_last_seen_timestamp_seconds", "jmxdp_stream_writer_drops_total"} {
		if len(shown.family(fam)) == 0 {
			t.Errorf("%s missing without HideIDs", fam)
		}
		if len(hidden.family(fam)) != 0 {
			t.Errorf("%s exported with HideIDs", fam)
		}
	}
	for k, v := range shown {
		if strings.Contains(k, "mid=") || strings.Contains(k, "sid=") || strings.HasPrefix(k, "jmxdp_scrape_duration_seconds") {
			continue
		}
		if hv, ok := hidden[k]; !ok || hv != v {
			t.Errorf("%s: %v without HideIDs, %v (present %v) with", k, v, hv, ok)
		}
	}
}

// TestNamesAndLint: a full scrape emits exactly the families of Names(),
// and promlint finds nothing to say about them.
func TestNamesAndLint(t *testing.T) {
	tb := newTestbed(t)
	c := metrics.NewCollector(fullSource(tb), testOpts)
	got, _ := gather(t, c)
	emitted := names(got)
	all := metrics.Names()
	if len(all) != len(slices.Compact(slices.Sorted(slices.Values(all)))) {
		t.Errorf("Names() has duplicates: %v", all)
	}
	for _, n := range all {
		if !emitted[n] {
			t.Errorf("%s is in Names() but not in a full scrape", n)
		}
		if !strings.HasPrefix(n, "jmxdp_") {
			t.Errorf("%s lacks the jmxdp_ prefix", n)
		}
	}
	for n := range emitted {
		if !slices.Contains(all, n) {
			t.Errorf("%s is emitted but not in Names()", n)
		}
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestProgramAttached follows a real attachment on a lab's veth.
func TestProgramAttached(t *testing.T) {
	tb := newTestbed(t)
	l := labtest.New(t, "jmxm")
	attached := func(src metrics.Source) series {
		t.Helper()
		got, _ := gather(t, metrics.NewCollector(src, metrics.Options{}))
		return got.family("jmxdp_program_attached")
	}
	src := metrics.Source{Maps: tb.prog.Maps, Iface: l.HostIface, Ifindex: l.HostIndex}
	byName := metrics.Source{Maps: tb.prog.Maps, Iface: l.HostIface}
	for _, s := range []metrics.Source{src, byName} {
		if got, w := attached(s), want("jmxdp_program_attached", map[string]float64{"iface=" + l.HostIface + ",mode=": 0}); !maps.Equal(got, w) {
			t.Errorf("not attached: %v, want %v", got, w)
		}
	}
	mode, err := tb.prog.Attach(l.HostIface, loader.ModeAuto)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []metrics.Source{src, byName} {
		if got, w := attached(s), want("jmxdp_program_attached", map[string]float64{"iface=" + l.HostIface + ",mode=" + string(mode): 1}); !maps.Equal(got, w) {
			t.Errorf("attached in %s mode: %v, want %v", mode, got, w)
		}
	}
	if err := tb.prog.Detach(); err != nil {
		t.Fatal(err)
	}
	if got, w := attached(src), want("jmxdp_program_attached", map[string]float64{"iface=" + l.HostIface + ",mode=": 0}); !maps.Equal(got, w) {
		t.Errorf("detached: %v, want %v", got, w)
	}
	// An interface that does not exist has nothing attached.
	if got, w := attached(metrics.Source{Maps: tb.prog.Maps, Iface: "jmx-nonesuch"}), want("jmxdp_program_attached", map[string]float64{"iface=jmx-nonesuch,mode=": 0}); !maps.Equal(got, w) {
		t.Errorf("missing interface: %v, want %v", got, w)
	}
	// No interface at all: no family.
	if got := attached(metrics.Source{Maps: tb.prog.Maps}); len(got) != 0 {
		t.Errorf("no interface: %v", got)
	}
}

// TestScrapeErrors: maps that cannot be read are counted, and the scrape
// still serves everything else.
func TestScrapeErrors(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := loader.Load(loader.Options{MaxStreams: 16})
	if err != nil {
		t.Fatal(err)
	}
	c := metrics.NewCollector(metrics.Source{Maps: p.Maps, Writer: fakeWriter}, metrics.Options{})
	p.Close()
	for scrape := 1; scrape <= 2; scrape++ {
		got, _ := gather(t, c)
		for _, src := range []string{"jm_stats", "jm_streams", "jm_untrusted", "jm_frags", "jm_policy", "jm_allowlist"} {
			if v := got[`jmxdp_scrape_errors_total{source="`+src+`"}`]; v != float64(scrape) {
				t.Errorf("scrape %d: %s errors = %v", scrape, src, v)
			}
		}
		for _, fam := range []string{"jmxdp_frames_total", "jmxdp_streams", "jmxdp_map_entries"} {
			if len(got.family(fam)) != 0 {
				t.Errorf("%s emitted from a closed map", fam)
			}
		}
		if got["jmxdp_writer_packets_total{}"] != 1000 || got.family("jmxdp_build_info") == nil {
			t.Errorf("the rest of the scrape is missing: %v", sortedKeys(got))
		}
	}
}

// TestWithoutKernel: the userspace families alone (no maps, as in a
// collector built before the program is loaded), and nothing for a
// pipeline that is not running.
func TestWithoutKernel(t *testing.T) {
	got, _ := gather(t, metrics.NewCollector(metrics.Source{Capture: fakeCapture}, metrics.Options{}))
	checkFamily(t, got, "jmxdp_xsk_frames_total", map[string]float64{"queue=0": 100, "queue=3": 7})
	for _, fam := range []string{"jmxdp_frames_total", "jmxdp_writer_packets_total", "jmxdp_stream_writer_drops_total", "jmxdp_program_attached"} {
		if len(got.family(fam)) != 0 {
			t.Errorf("%s emitted without its source", fam)
		}
	}
	userspace := metrics.NewCollector(metrics.Source{Capture: fakeCapture, Writer: fakeWriter, WriterStreams: fakeWriterStreams}, metrics.Options{})
	problems, err := testutil.CollectAndLint(userspace)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	got, _ = gather(t, metrics.NewCollector(metrics.Source{}, metrics.Options{}))
	if len(got.family("jmxdp_xsk_frames_total")) != 0 || len(got.family("jmxdp_build_info")) != 1 {
		t.Errorf("empty source: %v", sortedKeys(got))
	}
}

// TestTopStreamsOption: the config's top_streams 0 means no per-stream
// series; the Options' 0 means the default.
func TestTopStreamsOption(t *testing.T) {
	if o := metrics.FromConfig(config.Metrics{TopStreams: 0}); o.TopStreams >= 0 {
		t.Errorf("top_streams 0 -> %d", o.TopStreams)
	}
	if o := metrics.FromConfig(config.Metrics{TopStreams: 7, HideIDs: true}); o.TopStreams != 7 || !o.HideIDs {
		t.Errorf("got %+v", o)
	}
	if o := metrics.FromConfig(config.Default().Metrics); o.TopStreams != metrics.DefaultTopStreams {
		t.Errorf("default config -> %d", o.TopStreams)
	}
	src := metrics.Source{WriterStreams: fakeWriterStreams}
	got, _ := gather(t, metrics.NewCollector(src, metrics.FromConfig(config.Metrics{TopStreams: 0})))
	if n := len(got.family("jmxdp_stream_writer_drops_total")); n != 0 {
		t.Errorf("top_streams 0: %d stream series", n)
	}
	got, _ = gather(t, metrics.NewCollector(src, metrics.Options{}))
	if n := len(got.family("jmxdp_stream_writer_drops_total")); n != 4 {
		t.Errorf("default: %d stream series, want the 4 with drops", n)
	}
}

// TestCardinalityBounded: many intercepts, streams and routers stay within
// the bounds, and the bounded families still sum to the totals.
func TestCardinalityBounded(t *testing.T) {
	testenv.RequireRoot(t)
	p, err := loader.Load(loader.Options{MaxStreams: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		t.Fatal(err)
	}
	tb := &testbed{prog: p}
	const n = 300
	for i := 0; i < n; i++ {
		r := netip.AddrFrom4([4]byte{10, 1, byte(i % 150 / 100), byte(i % 150)})
		m := gen.Mirror{Router: r, MID: uint32(i / 2), SID: uint32(i), Inner: inner(t, 28+i%7)}
		for _, f := range mirrorFrames(t, m) {
			tb.run(t, f, vocab.VerdictDrop)
		}
	}
	got, _ := gather(t, metrics.NewCollector(metrics.Source{Maps: p.Maps}, metrics.Options{TopStreams: 5, MaxRouters: 10, MaxIntercepts: 20}))
	for fam, max := range map[string]int{
		"jmxdp_intercept_bytes_total": 21, "jmxdp_intercept_packets_total": 21, "jmxdp_intercept_last_seen_timestamp_seconds": 20,
		"jmxdp_stream_bytes_total": 5, "jmxdp_stream_packets_total": 5,
		"jmxdp_router_packets_total": 11, "jmxdp_router_bytes_total": 11,
	} {
		if l := len(got.family(fam)); l != max {
			t.Errorf("%s: %d series, want %d", fam, l, max)
		}
	}
	sum := func(fam string) (s float64) {
		for _, v := range got.family(fam) {
			s += v
		}
		return s
	}
	jm, bytes := got[`jmxdp_frames_total{class="jmirror"}`], got["jmxdp_jmirror_bytes_total{}"]
	if jm != n || sum("jmxdp_intercept_packets_total") != jm || sum("jmxdp_router_packets_total") != jm {
		t.Errorf("packets: %v jmirror, %v by intercept, %v by router", jm, sum("jmxdp_intercept_packets_total"), sum("jmxdp_router_packets_total"))
	}
	if sum("jmxdp_intercept_bytes_total") != bytes || sum("jmxdp_router_bytes_total") != bytes {
		t.Errorf("bytes: %v, %v by intercept, %v by router", bytes, sum("jmxdp_intercept_bytes_total"), sum("jmxdp_router_bytes_total"))
	}
	if got["jmxdp_streams{}"] != n || got["jmxdp_intercepts{}"] != n/2 || got["jmxdp_routers{}"] != 150 {
		t.Errorf("streams %v intercepts %v routers %v", got["jmxdp_streams{}"], got["jmxdp_intercepts{}"], got["jmxdp_routers{}"])
	}
}
