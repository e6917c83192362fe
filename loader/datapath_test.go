package loader_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

var (
	router1   = netip.MustParseAddr("192.0.2.1")
	router2   = netip.MustParseAddr("192.0.2.2")
	collector = netip.MustParseAddr("198.51.100.1")
	router6   = netip.MustParseAddr("2001:db8::1")
	coll6     = netip.MustParseAddr("2001:db8::100")
	subA      = netip.MustParseAddr("10.0.0.1")
	subB      = netip.MustParseAddr("10.0.0.2")
	sub6A     = netip.MustParseAddr("2001:db8:1::1")
	sub6B     = netip.MustParseAddr("2001:db8:1::2")
	// The IPv6 form of an IPv4 router: 16 bytes, never unmapped.
	mappedRouter = netip.AddrFrom16(netip.MustParseAddr("203.0.113.1").As16())
)

// v4EmbeddedSources are IPv6 sources that embed IPv4: mapped,
// compatible, unspecified and loopback.
func v4EmbeddedSources() []netip.Addr {
	return []netip.Addr{mappedRouter, netip.MustParseAddr("::203.0.113.1"), netip.IPv6Unspecified(), netip.IPv6Loopback()}
}

func loadProgram(t testing.TB, cfg loader.Config) *loader.Program {
	t.Helper()
	return loadProgramSized(t, cfg, 4096)
}

func loadProgramSized(t testing.TB, cfg loader.Config, maxStreams uint32) *loader.Program {
	t.Helper()
	return loadProgramWith(t, loader.Options{MaxStreams: maxStreams}, cfg)
}

func loadProgramWith(t testing.TB, opts loader.Options, cfg loader.Config) *loader.Program {
	t.Helper()
	testenv.RequireRoot(t)
	p, err := loader.Load(opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.Configure(cfg); err != nil {
		t.Fatalf("configure: %v", err)
	}
	return p
}

func mirror(mid, sid uint32, inner []byte) gen.Mirror {
	return gen.Mirror{Router: router1, Collector: collector, MID: mid, SID: sid, Inner: inner}
}

func frame(t *testing.T, m gen.Mirror) []byte {
	t.Helper()
	f, err := m.Frame()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func frames(t *testing.T, m gen.Mirror) [][]byte {
	t.Helper()
	f, err := m.Frames()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// setUDPLen rewrites the UDP length field of a built Jmirror frame.
func setUDPLen(m gen.Mirror, f []byte, n uint16) []byte {
	binary.BigEndian.PutUint16(f[m.HeaderOffset()-4:], n)
	return f
}

func ipv4Echo() []byte { return gen.InnerIPv4ICMPEcho(subA, subB, 1, 1, 32) }

// streamWant is a stream table entry without its timestamps.
type streamWant struct {
	key     vocab.StreamKey
	packets uint64
	bytes   uint64
	inner   [vocab.NumInner]uint64
}

type datapathCase struct {
	name     string
	cfg      loader.Config
	frames   func(t *testing.T) [][]byte
	verdicts []vocab.Verdict // one per frame
	stats    map[vocab.Stat]uint64
	streams  []streamWant
}

func one(v vocab.Verdict) []vocab.Verdict { return []vocab.Verdict{v} }

func inner(kind vocab.Inner) (a [vocab.NumInner]uint64) { a[kind] = 1; return a }

func k1(mid, sid uint32) vocab.StreamKey { return vocab.StreamKey{Router: router1, MID: mid, SID: sid} }

const (
	pass     = vocab.VerdictPass
	drop     = vocab.VerdictDrop
	redirect = vocab.VerdictRedirect
)

func datapathCases() []datapathCase {
	echo := ipv4Echo()
	el := uint64(len(echo))
	ppp := gen.InnerLCPEcho(1, 0x01020304)
	v6 := gen.InnerIPv6UDP(sub6A, sub6B, 1000, 2000, []byte("hello"))
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 3100))
	bigLen := uint64(len(big))
	captured := func(extra map[vocab.Stat]uint64) map[vocab.Stat]uint64 {
		m := map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatJmirror: 1, vocab.StatActionCapture: 1,
			vocab.StatCaptureFailed: 1, vocab.StatStreamNew: 1}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	notJM := map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatNotJmirror: 1}
	return []datapathCase{
		{
			name:     "ipv4 inner, capture without socket falls back to pass",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(2, 1111111, echo))} },
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k1(2, 1111111), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name:     "ipv6 inner",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(3, 4, v6))} },
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: uint64(len(v6))}),
			streams:  []streamWant{{k1(3, 4), 1, uint64(len(v6)), inner(vocab.InnerIPv6)}},
		},
		{
			name:     "ppp inner (FF 03 framing), padded short frame counts UDP length not frame length",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(0x3039, 0x1e240, ppp))} },
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: uint64(len(ppp))}),
			streams:  []streamWant{{k1(0x3039, 0x1e240), 1, uint64(len(ppp)), inner(vocab.InnerPPP)}},
		},
		{
			name:     "unknown inner",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(5, 6, []byte{0x00, 0x11, 0x22}))} },
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: 3}),
			streams:  []streamWant{{k1(5, 6), 1, 3, inner(vocab.InnerUnknown)}},
		},
		{
			name:     "FF without 03 is unknown",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(5, 6, []byte{0xff, 0x04, 0xc0, 0x21}))} },
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: 4}),
			streams:  []streamWant{{k1(5, 6), 1, 4, inner(vocab.InnerUnknown)}},
		},
		{
			name:     "empty inner: exactly the 8-byte header, still counted",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(7, 8, nil))} },
			verdicts: one(pass),
			stats:    captured(nil),
			streams:  []streamWant{{k1(7, 8), 1, 0, inner(vocab.InnerEmpty)}},
		},
		{
			name: "V bits are not part of mid, and are counted",
			frames: func(t *testing.T) [][]byte {
				m := mirror(0x3fffffff, 9, echo)
				m.Version = 3
				return [][]byte{frame(t, m)}
			},
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el, vocab.StatVersionNonzero: 1}),
			streams:  []streamWant{{k1(0x3fffffff, 9), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "UDP payload shorter than 8 bytes is malformed (short) and passed",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, nil)
				return [][]byte{setUDPLen(m, frame(t, m), 12)}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedShort: 1},
		},
		{
			name: "UDP length below the UDP header is short",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, nil)
				return [][]byte{setUDPLen(m, frame(t, m), 4)}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedShort: 1},
		},
		{
			name: "UDP length beyond the frame is truncated",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, echo)
				return [][]byte{setUDPLen(m, frame(t, m), uint16(16+len(echo)+1))}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedTruncated: 1},
		},
		{
			name: "UDP length inside Ethernet padding but beyond the IP packet is truncated",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, []byte{0x45})
				f := frame(t, m) // 14+20+8+8+1 = 51 bytes, padded to 60
				return [][]byte{setUDPLen(m, f, 16+4)}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedTruncated: 1},
		},
		{
			name: "frame cut inside the Jmirror header is truncated",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, echo)
				f := frame(t, m)
				return [][]byte{f[:m.HeaderOffset()+4]}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedTruncated: 1},
		},
		{
			name: "outer IPv4 options (IHL 15) and QinQ tags",
			frames: func(t *testing.T) [][]byte {
				m := mirror(10, 11, echo)
				m.IPOptions = gen.IPv4OptRecordRoute(9) // 3+36 bytes: IHL 15
				m.VLANs = []gen.VLAN{{TPID: 0x88a8, ID: 100}, {TPID: 0x8100, ID: 200}}
				return [][]byte{frame(t, m)}
			},
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k1(10, 11), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "single 802.1Q tag",
			frames: func(t *testing.T) [][]byte {
				m := mirror(10, 12, echo)
				m.VLANs = []gen.VLAN{{TPID: 0x8100, ID: 7}}
				return [][]byte{frame(t, m)}
			},
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k1(10, 12), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "three VLAN tags are beyond what is parsed: not Jmirror",
			frames: func(t *testing.T) [][]byte {
				m := mirror(10, 13, echo)
				m.VLANs = []gen.VLAN{{TPID: 0x88a8, ID: 1}, {TPID: 0x8100, ID: 2}, {TPID: 0x8100, ID: 3}}
				return [][]byte{frame(t, m)}
			},
			verdicts: one(pass),
			stats:    notJM,
		},
		{
			name: "outer IPv6",
			frames: func(t *testing.T) [][]byte {
				m := gen.Mirror{Router: router6, Collector: coll6, MID: 0x8000, SID: 1, Inner: ppp}
				return [][]byte{frame(t, m)}
			},
			verdicts: one(pass),
			stats:    captured(map[vocab.Stat]uint64{vocab.StatJmirrorBytes: uint64(len(ppp))}),
			streams:  []streamWant{{vocab.StreamKey{Router: router6, MID: 0x8000, SID: 1}, 1, uint64(len(ppp)), inner(vocab.InnerPPP)}},
		},
		{
			name: "same (mid, sid) from two routers: two entries",
			frames: func(t *testing.T) [][]byte {
				a := mirror(0x8000, 1, echo)
				b := a
				b.Router = router2
				return [][]byte{frame(t, a), frame(t, b), frame(t, a)}
			},
			verdicts: []vocab.Verdict{pass, pass, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 3, vocab.StatJmirrorBytes: 3 * el,
				vocab.StatActionCapture: 3, vocab.StatCaptureFailed: 3, vocab.StatStreamNew: 2},
			streams: []streamWant{
				{k1(0x8000, 1), 2, 2 * el, [vocab.NumInner]uint64{2, 0, 0, 0, 0}},
				{vocab.StreamKey{Router: router2, MID: 0x8000, SID: 1}, 1, el, inner(vocab.InnerIPv4)},
			},
		},
		{
			name: "fragmented datagram: counted once at the first fragment, later ones tracked",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				m := mirror(20, 21, big)
				m.MTU = 1500
				m.IPID = 0x1234
				f := frames(t, m)
				if len(f) != 3 {
					t.Fatalf("want 3 fragments, got %d", len(f))
				}
				return f
			},
			verdicts: []vocab.Verdict{drop, drop, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bigLen,
				vocab.StatFragFirst: 1, vocab.StatFragTracked: 2, vocab.StatActionCount: 3, vocab.StatStreamNew: 1},
			streams: []streamWant{{k1(20, 21), 1, bigLen, inner(vocab.InnerIPv4)}},
		},
		{
			name: "later fragments before their first pass unmatched; the first still counts",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				m := mirror(20, 22, big)
				m.MTU = 1500
				f := frames(t, m)
				return [][]byte{f[2], f[1], f[0]}
			},
			verdicts: []vocab.Verdict{pass, pass, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bigLen,
				vocab.StatFragFirst: 1, vocab.StatFragUnmatched: 2, vocab.StatActionCount: 1, vocab.StatStreamNew: 1},
			streams: []streamWant{{k1(20, 22), 1, bigLen, inner(vocab.InnerIPv4)}},
		},
		{
			name: "fragments of a non-Jmirror datagram pass untouched",
			frames: func(t *testing.T) [][]byte {
				m := mirror(20, 23, big)
				m.Port = 9999
				m.MTU = 1500
				return frames(t, m)
			},
			verdicts: []vocab.Verdict{pass, pass, pass},
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatNotJmirror: 1, vocab.StatFragUnmatched: 2},
		},
		{
			name: "not Jmirror: ARP, TCP, DNS, ICMP, Jmirror to a port not decoded (a discovery candidate)",
			frames: func(t *testing.T) [][]byte {
				m := mirror(1, 1, echo)
				m.Port = 30031
				return [][]byte{
					gen.NotJmirrorARP(router1, collector),
					gen.NotJmirrorTCPSyn(router1, collector, 40000, 22),
					gen.NotJmirrorDNSQuery(router1, collector, 7, "example.org"),
					gen.NotJmirrorICMPEcho(router1, collector, 1, 1, 56),
					frame(t, m),
				}
			},
			verdicts: []vocab.Verdict{pass, pass, pass, pass, pass},
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 5, vocab.StatNotJmirror: 5, vocab.StatCandidate: 1},
		},
		{
			name: "several ports at once",
			cfg:  loader.Config{Ports: []uint16{6502, 5000, 54301}, DefaultAction: vocab.ActionPass},
			frames: func(t *testing.T) [][]byte {
				a, b, c := mirror(1, 1, echo), mirror(1, 2, echo), mirror(1, 3, echo)
				a.Port, b.Port, c.Port = 6502, 54301, 30030
				return [][]byte{frame(t, a), frame(t, b), frame(t, c)}
			},
			verdicts: []vocab.Verdict{pass, pass, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * el,
				vocab.StatActionPass: 2, vocab.StatStreamNew: 2, vocab.StatNotJmirror: 1, vocab.StatCandidate: 1},
			streams: []streamWant{{k1(1, 1), 1, el, inner(vocab.InnerIPv4)}, {k1(1, 2), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "policy: exact (mid, sid) beats (mid, any), which beats the default",
			cfg: loader.Config{DefaultAction: vocab.ActionPass, Policies: []vocab.PolicyRule{
				{MID: 40, SID: 1, Action: vocab.ActionCapture},
				{MID: 40, AnySID: true, Action: vocab.ActionCount},
			}},
			frames: func(t *testing.T) [][]byte {
				return [][]byte{frame(t, mirror(40, 1, echo)), frame(t, mirror(40, 2, echo)), frame(t, mirror(41, 1, echo))}
			},
			verdicts: []vocab.Verdict{pass, drop, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 3, vocab.StatJmirrorBytes: 3 * el,
				vocab.StatActionCapture: 1, vocab.StatCaptureFailed: 1, vocab.StatActionCount: 1, vocab.StatActionPass: 1,
				vocab.StatStreamNew: 3},
			streams: []streamWant{{k1(40, 1), 1, el, inner(vocab.InnerIPv4)}, {k1(40, 2), 1, el, inner(vocab.InnerIPv4)},
				{k1(41, 1), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "allowlist: untrusted sources are dropped, never counted as streams",
			cfg: loader.Config{DefaultAction: vocab.ActionPass, Allowlist: []netip.Prefix{
				netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/64")}},
			frames: func(t *testing.T) [][]byte {
				forged := mirror(50, 1, echo)
				forged.Router = router2
				v6 := gen.Mirror{Router: router6, Collector: coll6, MID: 50, SID: 2, Inner: echo}
				forged6 := v6
				forged6.Router = netip.MustParseAddr("2001:db9::1")
				return [][]byte{frame(t, mirror(50, 1, echo)), frame(t, forged), frame(t, v6), frame(t, forged6),
					gen.NotJmirrorICMPEcho(router2, collector, 1, 1, 8)}
			},
			verdicts: []vocab.Verdict{pass, drop, pass, drop, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 5, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: 2 * el,
				vocab.StatActionPass: 2, vocab.StatStreamNew: 2, vocab.StatUntrusted: 2, vocab.StatNotJmirror: 1},
			streams: []streamWant{{k1(50, 1), 1, el, inner(vocab.InnerIPv4)},
				{vocab.StreamKey{Router: router6, MID: 50, SID: 2}, 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "IPv6 sources that embed IPv4 (mapped, compatible, ::, ::1) are never a router, allowlist or not",
			cfg:  loader.Config{DefaultAction: vocab.ActionPass},
			frames: func(t *testing.T) [][]byte {
				var out [][]byte
				for _, a := range v4EmbeddedSources() {
					m := gen.Mirror{Router: a, Collector: coll6, MID: 70, SID: 1, Inner: echo}
					out = append(out, frame(t, m))
				}
				// Malformed from such a source is dropped too, before the
				// length checks, as for any untrusted sender.
				short := gen.Mirror{Router: mappedRouter, Collector: coll6, MID: 70, SID: 1, Inner: echo}
				out = append(out, setUDPLen(short, frame(t, short), 12))
				// The IPv4 router itself is unaffected.
				real := mirror(70, 1, echo)
				real.Router = mappedRouter.Unmap()
				return append(out, frame(t, real))
			},
			verdicts: []vocab.Verdict{drop, drop, drop, drop, drop, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 6, vocab.StatUntrusted: 5, vocab.StatUntrustedMapped: 5,
				vocab.StatJmirror: 1, vocab.StatJmirrorBytes: el, vocab.StatActionPass: 1, vocab.StatStreamNew: 1},
			streams: []streamWant{{vocab.StreamKey{Router: mappedRouter.Unmap(), MID: 70, SID: 1}, 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "an IPv4-mapped source is refused even when the allowlist names its IPv4 router",
			cfg: loader.Config{DefaultAction: vocab.ActionPass, Allowlist: []netip.Prefix{
				netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("2001:db8::/64")}},
			frames: func(t *testing.T) [][]byte {
				m := gen.Mirror{Router: mappedRouter, Collector: coll6, MID: 71, SID: 1, Inner: echo}
				other := m
				other.Port = 9999 // not decoded: not Jmirror, passed as before
				return [][]byte{frame(t, m), frame(t, other)}
			},
			verdicts: []vocab.Verdict{drop, pass},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 2, vocab.StatUntrusted: 1, vocab.StatUntrustedMapped: 1,
				vocab.StatNotJmirror: 1, vocab.StatCandidate: 1},
		},
		{
			name: "fragments of an untrusted datagram are all dropped",
			cfg:  loader.Config{Allowlist: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}},
			frames: func(t *testing.T) [][]byte {
				m := mirror(60, 1, big)
				m.Router = router2
				m.MTU = 1500
				return frames(t, m)
			},
			verdicts: []vocab.Verdict{drop, drop, drop},
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatUntrusted: 3},
		},
	}
}

func TestDatapath(t *testing.T) {
	for _, tc := range datapathCases() {
		t.Run(tc.name, func(t *testing.T) { runDatapathCase(t, tc) })
	}
}

// runDatapathCase runs one case through BPF_PROG_TEST_RUN and the Go
// engine and checks both against its verdicts, counters and streams.
func runDatapathCase(t *testing.T, tc datapathCase) {
	t.Helper()
	p := loadProgram(t, tc.cfg)
	eng := jmirror.NewEngine(engineConfig(tc.cfg), nil)
	in := tc.frames(t)
	if len(in) != len(tc.verdicts) {
		t.Fatalf("test has %d frames, %d verdicts", len(in), len(tc.verdicts))
	}
	for i, f := range in {
		v, err := p.Run(f)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if v != tc.verdicts[i] {
			t.Errorf("frame %d: kernel verdict %v, want %v", i, v, tc.verdicts[i])
		}
		if gv := eng.Process(f).Verdict; vocab.Verdict(gv) != tc.verdicts[i] {
			t.Errorf("frame %d: Go decoder verdict %v, want %v", i, vocab.Verdict(gv), tc.verdicts[i])
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
		t.Errorf("Go decoder counters:\n got  %v\n want %v", named(g), named(want))
	}
	streams, err := p.Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	checkStreams(t, "kernel", streams, tc.streams)
	checkStreams(t, "Go decoder", eng.Streams(), tc.streams)
}

func engineConfig(c loader.Config) jmirror.Config {
	ports := c.Ports
	if len(ports) == 0 {
		ports = []uint16{loader.DefaultPort}
	}
	return jmirror.Config{Ports: ports, DefaultAction: c.DefaultAction, Policies: c.Policies, Allowlist: c.Allowlist}
}

func named(c vocab.Counters) map[string]uint64 {
	m := map[string]uint64{}
	for i, n := range c {
		if n != 0 {
			m[vocab.Stat(i).String()] = n
		}
	}
	return m
}

func checkStreams(t *testing.T, who string, got []vocab.Stream, want []streamWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d streams, want %d: %+v", who, len(got), len(want), got)
		return
	}
	for i, w := range want {
		g := got[i]
		if g.StreamKey != w.key || g.Packets != w.packets || g.Bytes != w.bytes || g.Inner != w.inner {
			t.Errorf("%s: stream %d = %v packets=%d bytes=%d inner=%v, want %v packets=%d bytes=%d inner=%v",
				who, i, g.StreamKey, g.Packets, g.Bytes, g.Inner, w.key, w.packets, w.bytes, w.inner)
		}
		if g.FirstSeen == 0 || g.LastSeen < g.FirstSeen {
			t.Errorf("%s: stream %v: first/last seen %v/%v", who, g.StreamKey, g.FirstSeen, g.LastSeen)
		}
	}
}
