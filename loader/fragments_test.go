package loader_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/jmirror/fixtures"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// fragStep is a frame and the verdict both engines must give it, or (age >
// 0) time passing: the kernel's fragment and pair records are made that
// much older, and the Go engine's clock moves on as much.
type fragStep struct {
	frame   []byte
	verdict vocab.Verdict
	age     time.Duration
}

type fragCase struct {
	name    string
	cfg     loader.Config
	steps   func(t *testing.T) []fragStep
	stats   map[vocab.Stat]uint64
	streams []fixtures.Stream
}

// bigMirror is a 3-fragment datagram (at MTU 1500) of stream (mid, sid)
// with IP id id; seed varies the mirrored packet's content, not its length.
func bigMirror(mid, sid uint32, id uint16, seed byte) gen.Mirror {
	payload := make([]byte, 3100)
	for i := range payload {
		payload[i] = seed + byte(i)
	}
	m := mirror(mid, sid, gen.InnerIPv4UDP(subA, subB, 1000+uint16(seed), 2000, payload))
	m.MTU = 1500
	m.IPID = id
	return m
}

// bigMirror6 is bigMirror over outer IPv6 from router6, behind hop-by-hop
// and routing headers (the unfragmentable part), with fragment id 1<<16|id.
func bigMirror6(mid, sid uint32, id uint16, seed byte) gen.Mirror {
	m := bigMirror(mid, sid, id, seed)
	m.Router, m.Collector, m.UDPChecksum = router6, coll6, true
	m.IPv6Ext = []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtRouting, Len: 24}}
	m.IPv6FragID = 1<<16 | uint32(id)
	return m
}

// innerIPv4 is a stream's packets by inner kind: n IPv4 ones.
func innerIPv4(n uint64) (a [vocab.NumInner]uint64) { a[vocab.InnerIPv4] = n; return a }

func bigLen() uint64 { return uint64(len(bigMirror(1, 1, 1, 0).Inner)) }

func steps(v vocab.Verdict, fs ...[]byte) []fragStep {
	out := make([]fragStep, len(fs))
	for i, f := range fs {
		out[i] = fragStep{frame: f, verdict: v}
	}
	return out
}

func age(d time.Duration) fragStep { return fragStep{age: d} }

func cat(parts ...[]fragStep) []fragStep {
	var out []fragStep
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Issue 19 item 9. Later fragments that arrive before their first were
// passed and counted unmatched, so a capture lost the datagram; a copy of
// a first fragment was counted into its stream again. Issue 15: the same
// holds over outer IPv6 (jm_frag_pairs6).
func fragCases() []fragCase {
	bl, ipv4 := bigLen(), innerIPv4
	out := holdCases("IPv4", bigMirror, k1)
	out = append(out, holdCases("IPv6", bigMirror6, k6)...)
	return append(out, []fragCase{
		{
			name: "a pair with a captured and a passed stream: early fragments are not held",
			cfg:  loader.Config{Policies: []vocab.PolicyRule{{MID: 30, AnySID: true, Action: vocab.ActionPass}}},
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror(20, 23, 0x300, 1))
				c := frames(t, bigMirror(30, 1, 0x301, 2))
				b := frames(t, bigMirror(20, 23, 0x302, 3))
				return cat(steps(pass, a...), steps(pass, c...), steps(pass, b[2], b[1], b[0]))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 9, vocab.StatJmirror: 3, vocab.StatJmirrorBytes: 3 * bl,
				vocab.StatFragFirst: 3, vocab.StatFragTracked: 4, vocab.StatFragUnmatched: 2, vocab.StatActionCapture: 4,
				vocab.StatCaptureFailed: 4, vocab.StatActionPass: 3, vocab.StatStreamNew: 2},
			streams: []fixtures.Stream{fixtures.Want(k1(20, 23), 2, 2*bl, ipv4(2)), fixtures.Want(k1(30, 1), 1, bl, ipv4(1))},
		},
		{
			name: "other traffic from a holding pair and from other sources is passed, except UDP fragments of the pair ahead of their first",
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror(20, 25, 0x500, 1))
				other := bigMirror(20, 25, 0x501, 2)
				other.Port = 9999 // not decoded: not Jmirror
				n := frames(t, other)
				other.IPID = 0x502
				r := frames(t, other)
				// A non-UDP later fragment of the pair, and a UDP one from
				// a router that sent nothing.
				icmp := gen.NotJmirrorIPv4Fragment(router1, collector, 0x503, 1480, false, make([]byte, 64))
				icmp[14+9] = 1
				stranger := gen.NotJmirrorIPv4Fragment(router2, collector, 0x504, 1480, false, make([]byte, 64))
				return cat(steps(pass, a...),
					// In order: the first is not Jmirror and says so to
					// the rest, which pass.
					steps(pass, n...),
					// Ahead of a first that is not Jmirror: held, and so
					// taken from the host (docs/datapath.md).
					steps(pass, r[2], r[1], r[0]),
					steps(pass, icmp, stranger))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 11, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bl,
				vocab.StatFragFirst: 1, vocab.StatFragTracked: 2, vocab.StatNotJmirror: 2, vocab.StatFragUnmatched: 4,
				vocab.StatFragHeld: 2, vocab.StatActionCapture: 5, vocab.StatCaptureFailed: 5, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(k1(20, 25), 1, bl, ipv4(1))},
		},
		{
			name: "copies of a first fragment are counted once, and follow the datagram's action",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror(20, 26, 0x600, 1))
				return steps(drop, a[0], a[0], a[1], a[0], a[2])
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 5, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bl,
				vocab.StatFragFirst: 1, vocab.StatFragDuplicate: 2, vocab.StatFragTracked: 2, vocab.StatActionCount: 5,
				vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(k1(20, 26), 1, bl, ipv4(1))},
		},
		{
			name: "another datagram of the stream reusing the IP id within the window is counted",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror(20, 28, 0x800, 1))
				b := frames(t, bigMirror(20, 28, 0x800, 2)) // same id, same length, other bytes
				return steps(drop, a[0], a[1], a[2], b[0], b[1], b[2])
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 6, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatFragTracked: 4, vocab.StatActionCount: 6, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(k1(20, 28), 2, 2*bl, ipv4(2))},
		},
		{
			name: "the same first fragment after the window is a new datagram (a wrapped IP id)",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror(20, 29, 0x900, 1))
				return cat(steps(drop, a[0]), []fragStep{age(jmirror.FragWindow + time.Second)}, steps(drop, a[0]))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 2, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatActionCount: 2, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(k1(20, 29), 2, 2*bl, ipv4(2))},
		},
		{
			name: "a copy of an untrusted first fragment is untrusted again, never a duplicate",
			cfg:  loader.Config{Allowlist: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}},
			steps: func(t *testing.T) []fragStep {
				m := bigMirror(60, 2, 0xa00, 1)
				m.Router = router2
				a := frames(t, m)
				return steps(drop, a[0], a[0], a[2])
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatUntrusted: 3},
		},
		// Issue 15: what differs over outer IPv6, byte for byte the
		// frames gen writes.
		{
			name: "IPv6: not-Jmirror fragments of a holding pair pass in order and are held ahead of their first; an IPv4 pair and another source are not held",
			steps: func(t *testing.T) []fragStep {
				a := frames(t, bigMirror6(20, 45, 0x500, 1))
				other := bigMirror6(20, 45, 0x501, 2)
				other.Port = 9999 // not decoded: not Jmirror
				n := frames(t, other)
				other.IPv6FragID++
				r := frames(t, other)
				// The same datagram from another router, and over IPv4
				// between the IPv4 addresses: their pairs sent nothing.
				s := bigMirror6(20, 45, 0x503, 3)
				s.Router = netip.MustParseAddr("2001:db8::2")
				stranger := frames(t, s)
				v4 := frames(t, bigMirror(20, 45, 0x504, 4))
				return cat(steps(pass, a...), steps(pass, n...), steps(pass, r[2], r[1], r[0]),
					steps(pass, stranger[2], v4[2]))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 11, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bl,
				vocab.StatFragFirst: 1, vocab.StatFragTracked: 2, vocab.StatNotJmirror: 2, vocab.StatFragUnmatched: 4,
				vocab.StatFragHeld: 2, vocab.StatActionCapture: 5, vocab.StatCaptureFailed: 5, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(k6(20, 45), 1, bl, ipv4(1))},
		},
	}...)
}

// holdCases are the cases of fragCases that hold alike over outer IPv4
// and IPv6: mk makes a family's 3-fragment datagram, key its stream.
func holdCases(family string, mk func(mid, sid uint32, id uint16, seed byte) gen.Mirror, key func(mid, sid uint32) vocab.StreamKey) []fragCase {
	bl, ipv4 := bigLen(), innerIPv4
	return []fragCase{
		{
			name: family + ": last-first from a pair that sends captured fragments: held, the datagram counted once at its first",
			steps: func(t *testing.T) []fragStep {
				a := frames(t, mk(20, 21, 0x100, 1))
				b := frames(t, mk(20, 21, 0x101, 2))
				// No socket in a test run: captured frames fall back to pass.
				return steps(pass, a[0], a[1], a[2], b[2], b[1], b[0])
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 6, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatFragTracked: 2, vocab.StatFragHeld: 2, vocab.StatActionCapture: 6,
				vocab.StatCaptureFailed: 6, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(key(20, 21), 2, 2*bl, ipv4(2))},
		},
		{
			name: family + ": a pair whose fragmented stream is counted, not captured: early fragments pass unmatched",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			steps: func(t *testing.T) []fragStep {
				a := frames(t, mk(20, 22, 0x200, 1))
				b := frames(t, mk(20, 22, 0x201, 2))
				return cat(steps(drop, a...), steps(pass, b[2], b[1]), steps(drop, b[0]))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 6, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatFragTracked: 2, vocab.StatFragUnmatched: 2, vocab.StatActionCount: 4,
				vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(key(20, 22), 2, 2*bl, ipv4(2))},
		},
		{
			name: family + ": the pair's window ends: early fragments pass unmatched again",
			steps: func(t *testing.T) []fragStep {
				a := frames(t, mk(20, 24, 0x400, 1))
				b := frames(t, mk(20, 24, 0x401, 2))
				return cat(steps(pass, a...), []fragStep{age(jmirror.FragWindow + time.Second)}, steps(pass, b[2], b[1], b[0]))
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 6, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatFragTracked: 2, vocab.StatFragUnmatched: 2, vocab.StatActionCapture: 4,
				vocab.StatCaptureFailed: 4, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(key(20, 24), 2, 2*bl, ipv4(2))},
		},
		{
			name: family + ": a captured datagram last-first with its first fragment twice",
			steps: func(t *testing.T) []fragStep {
				a := frames(t, mk(20, 27, 0x700, 1))
				b := frames(t, mk(20, 27, 0x701, 2))
				return steps(pass, a[0], a[1], a[2], b[2], b[1], b[0], b[0])
			},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 7, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * bl,
				vocab.StatFragFirst: 2, vocab.StatFragTracked: 2, vocab.StatFragHeld: 2, vocab.StatFragDuplicate: 1,
				vocab.StatActionCapture: 7, vocab.StatCaptureFailed: 7, vocab.StatStreamNew: 1},
			streams: []fixtures.Stream{fixtures.Want(key(20, 27), 2, 2*bl, ipv4(2))},
		},
	}
}

func TestFragmentsOutOfOrderAndDuplicated(t *testing.T) {
	for _, tc := range fragCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := loadProgram(t, tc.cfg)
			var skew time.Duration
			start := time.Now()
			eng := jmirror.NewEngine(engineConfig(tc.cfg), func() time.Duration { return time.Since(start) + skew + 1 })
			for i, s := range tc.steps(t) {
				if s.age > 0 {
					ageFragRecords(t, p, s.age)
					skew += s.age
					continue
				}
				v, err := p.Run(s.frame)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				res := eng.Process(s.frame)
				if v != s.verdict {
					t.Errorf("step %d: kernel verdict %v, want %v", i, v, s.verdict)
				}
				if vocab.Verdict(res.Verdict) != s.verdict {
					t.Errorf("step %d: Go verdict %v (class %v), want %v", i, vocab.Verdict(res.Verdict), res.Class, s.verdict)
				}
			}
			got, err := p.Maps.Counters()
			if err != nil {
				t.Fatal(err)
			}
			var want vocab.Counters
			for s, n := range tc.stats {
				want[s] = n
			}
			if got != want {
				t.Errorf("kernel counters:\n got  %v\n want %v", named(got), named(want))
			}
			if g := eng.Counters(); g != want {
				t.Errorf("Go counters:\n got  %v\n want %v", named(g), named(want))
			}
			var sum uint64
			for _, s := range []vocab.Stat{vocab.StatNotJmirror, vocab.StatJmirror, vocab.StatMalformedShort, vocab.StatMalformedTruncated,
				vocab.StatUntrusted, vocab.StatFragTracked, vocab.StatFragUnmatched, vocab.StatFragDuplicate, vocab.StatFragHeld} {
				sum += got[s]
			}
			if sum != got[vocab.StatFrames] {
				t.Errorf("the classes sum to %d, frames %d", sum, got[vocab.StatFrames])
			}
			streams, err := p.Maps.Streams()
			if err != nil {
				t.Fatal(err)
			}
			fixtures.CheckStreams(t, "kernel", streams, tc.streams)
			fixtures.CheckStreams(t, "Go decoder", eng.Streams(), tc.streams)
		})
	}
}

// ageFragRecords makes every time in jm_frags, jm_frags6, jm_frag_pairs
// and jm_frag_pairs6 d older, as if d had passed.
func ageFragRecords(t *testing.T, p *loader.Program, d time.Duration) {
	t.Helper()
	objs := p.Objects()
	older := func(ns *uint64) {
		if *ns != 0 {
			*ns -= uint64(d)
		}
	}
	ageFrag := func(v *bpf.FragValue) { older(&v.FirstNs) }
	agePair := func(v *bpf.PairValue) { older(&v.CaptureNs); older(&v.OtherNs) }
	ageEntries[bpf.FragKey](t, objs.JmFrags, ageFrag)
	ageEntries[bpf.Frag6Key](t, objs.JmFrags6, ageFrag)
	ageEntries[bpf.PairKey](t, objs.JmFragPairs, agePair)
	ageEntries[bpf.Pair6Key](t, objs.JmFragPairs6, agePair)
}

// ageEntries rewrites every value of m through f (read all, then write:
// updating while iterating may restart the walk).
func ageEntries[K, V any](t *testing.T, m *ebpf.Map, f func(*V)) {
	t.Helper()
	var k K
	var v V
	var ks []K
	var vs []V
	it := m.Iterate()
	for it.Next(&k, &v) {
		f(&v)
		ks, vs = append(ks, k), append(vs, v)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range ks {
		if err := m.Put(&ks[i], &vs[i]); err != nil {
			t.Fatal(err)
		}
	}
}
