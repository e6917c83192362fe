package loader_test

import (
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// mirror6 is a Jmirror datagram from router6 behind the extension headers
// exts.
func mirror6(mid, sid uint32, in []byte, exts ...gen.ExtHeader) gen.Mirror {
	return gen.Mirror{Router: router6, Collector: coll6, MID: mid, SID: sid, Inner: in, UDPChecksum: true, IPv6Ext: exts}
}

func k6(mid, sid uint32) vocab.StreamKey { return vocab.StreamKey{Router: router6, MID: mid, SID: sid} }

func ext(typ uint8) gen.ExtHeader { return gen.ExtHeader{Type: typ} }

// extChain is n destination-options headers.
func extChain(n int) []gen.ExtHeader {
	out := make([]gen.ExtHeader, n)
	for i := range out {
		out[i] = ext(gen.ExtDstOpts)
	}
	return out
}

// ipv6ExtCases are the outer IPv6 shapes jmxdp walks (docs/datapath.md,
// "Outer shapes"), each with the verdict and counters both engines give.
func ipv6ExtCases() []datapathCase {
	echo := ipv4Echo()
	el := uint64(len(echo))
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 3100))
	bigLen := uint64(len(big))
	captured := func(n uint64, extra map[vocab.Stat]uint64) map[vocab.Stat]uint64 {
		m := map[vocab.Stat]uint64{vocab.StatFrames: n, vocab.StatJmirror: 1, vocab.StatActionCapture: n,
			vocab.StatCaptureFailed: n, vocab.StatStreamNew: 1}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	notJM := func(n uint64) map[vocab.Stat]uint64 {
		return map[vocab.Stat]uint64{vocab.StatFrames: n, vocab.StatNotJmirror: n}
	}
	// frag6 is the fragments of a datagram of big from mid 30, sid.
	frag6 := func(t *testing.T, sid uint32, exts ...gen.ExtHeader) [][]byte {
		m := mirror6(30, sid, big, exts...)
		m.MTU = 1500
		m.IPv6FragID = 0x10000 + sid
		f := frames(t, m)
		if len(f) != 3 {
			t.Fatalf("want 3 fragments, got %d", len(f))
		}
		return f
	}
	return []datapathCase{
		{
			name: "hop-by-hop, destination options, routing, AH, destination options: walked to UDP",
			frames: func(t *testing.T) [][]byte {
				return [][]byte{frame(t, mirror6(1, 1, echo, ext(gen.ExtHopByHop), ext(gen.ExtDstOpts),
					gen.ExtHeader{Type: gen.ExtRouting, Len: 24}, gen.ExtHeader{Type: gen.ExtAH, Len: 24}, ext(gen.ExtDstOpts)))}
			},
			verdicts: one(pass),
			stats:    captured(1, map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k6(1, 1), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name: "a header of the largest length (2048 bytes)",
			frames: func(t *testing.T) [][]byte {
				return [][]byte{frame(t, mirror6(1, 2, echo, gen.ExtHeader{Type: gen.ExtDstOpts, Len: 2048}))}
			},
			verdicts: one(pass),
			stats:    captured(1, map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k6(1, 2), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name:     "eight extension headers are the bound: walked",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror6(1, 3, echo, extChain(8)...))} },
			verdicts: one(pass),
			stats:    captured(1, map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k6(1, 3), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name:     "nine are too long: counted as such, passed",
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror6(1, 4, echo, extChain(9)...))} },
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatIPv6ExtLong: 1},
		},
		{
			name: "not Jmirror: ESP, hop-by-hop not first, AH of a bad length, two fragment headers, a header past the frame",
			frames: func(t *testing.T) [][]byte {
				esp := frame(t, mirror6(1, 5, echo, ext(gen.ExtDstOpts)))
				esp[14+6] = gen.ExtESP
				hbh := frame(t, mirror6(1, 5, echo, ext(gen.ExtDstOpts), ext(gen.ExtHopByHop)))
				ah := frame(t, mirror6(1, 5, echo, ext(gen.ExtAH)))
				ah[14+40+1] = 0 // 8 bytes: below AH's fixed 12
				ah2 := frame(t, mirror6(1, 5, echo, gen.ExtHeader{Type: gen.ExtAH, Len: 24}))
				ah2[14+40+1] = 3 // 20 bytes: not a multiple of 8
				twoFrag := frame(t, mirror6(1, 5, echo, ext(gen.ExtFragment), ext(gen.ExtFragment)))
				past := frame(t, mirror6(1, 5, echo, ext(gen.ExtDstOpts)))
				past[14+40+1] = 255 // 2048 bytes in a short frame
				cut := frame(t, mirror6(1, 5, echo, ext(gen.ExtDstOpts)))
				return [][]byte{esp, hbh, ah, ah2, twoFrag, past, cut[:14+40+1]}
			},
			verdicts: []vocab.Verdict{pass, pass, pass, pass, pass, pass, pass},
			stats:    notJM(7),
		},
		{
			name: "an atomic fragment (offset 0, no M) is a whole datagram",
			frames: func(t *testing.T) [][]byte {
				return [][]byte{frame(t, mirror6(1, 6, echo, gen.ExtHeader{Type: gen.ExtFragment, ID: 7}))}
			},
			verdicts: one(pass),
			stats:    captured(1, map[vocab.Stat]uint64{vocab.StatJmirrorBytes: el}),
			streams:  []streamWant{{k6(1, 6), 1, el, inner(vocab.InnerIPv4)}},
		},
		{
			name:     "IPv6 fragments: counted once at the first, later ones tracked by (source, destination, id)",
			frames:   func(t *testing.T) [][]byte { return frag6(t, 1) },
			verdicts: []vocab.Verdict{pass, pass, pass},
			stats: captured(3, map[vocab.Stat]uint64{vocab.StatJmirrorBytes: bigLen, vocab.StatFragFirst: 1,
				vocab.StatFragTracked: 2}),
			streams: []streamWant{{k6(30, 1), 1, bigLen, inner(vocab.InnerIPv4)}},
		},
		{
			name: "IPv6 fragments behind hop-by-hop and routing headers, counted with the count action",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				return frag6(t, 2, ext(gen.ExtHopByHop), gen.ExtHeader{Type: gen.ExtRouting, Len: 40})
			},
			verdicts: []vocab.Verdict{drop, drop, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bigLen,
				vocab.StatFragFirst: 1, vocab.StatFragTracked: 2, vocab.StatActionCount: 3, vocab.StatStreamNew: 1},
			streams: []streamWant{{k6(30, 2), 1, bigLen, inner(vocab.InnerIPv4)}},
		},
		{
			name: "IPv6 later fragments before their first pass unmatched (never held); a copy of the first is a duplicate",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				f := frag6(t, 3)
				return [][]byte{f[2], f[1], f[0], f[0], f[1]}
			},
			verdicts: []vocab.Verdict{pass, pass, drop, drop, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 5, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bigLen,
				vocab.StatFragFirst: 1, vocab.StatFragUnmatched: 2, vocab.StatFragDuplicate: 1, vocab.StatFragTracked: 1,
				vocab.StatActionCount: 3, vocab.StatStreamNew: 1},
			streams: []streamWant{{k6(30, 3), 1, bigLen, inner(vocab.InnerIPv4)}},
		},
		{
			name: "fragments of an IPv6 datagram to a port not decoded pass untouched",
			frames: func(t *testing.T) [][]byte {
				m := mirror6(30, 4, big)
				m.Port, m.MTU = 9999, 1500
				return frames(t, m)
			},
			verdicts: []vocab.Verdict{pass, pass, pass},
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatNotJmirror: 1, vocab.StatFragUnmatched: 2},
		},
		{
			name: "fragments of an untrusted IPv6 datagram are all dropped",
			cfg:  loader.Config{Allowlist: []netip.Prefix{netip.MustParsePrefix("2001:db8:ffff::/48")}},
			frames: func(t *testing.T) [][]byte {
				return frag6(t, 5)
			},
			verdicts: []vocab.Verdict{drop, drop, drop},
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 3, vocab.StatUntrusted: 3},
		},
	}
}

func TestIPv6Shapes(t *testing.T) {
	for _, tc := range ipv6ExtCases() {
		t.Run(tc.name, func(t *testing.T) { runDatapathCase(t, tc) })
	}
}

// jumboCases are frames larger than one buffer: the program is
// frags-aware, BPF_PROG_TEST_RUN splits them as a NIC at MTU 9000 does,
// and both engines count them whole.
func jumboCases() []datapathCase {
	big := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 8900))
	bl := uint64(len(big))
	huge := gen.InnerIPv4UDP(subA, subB, 1000, 2000, make([]byte, 60000))
	hl := uint64(len(huge))
	return []datapathCase{
		{
			name:     "a 9000-byte IPv4 Jmirror frame",
			cfg:      loader.Config{DefaultAction: vocab.ActionCount},
			frames:   func(t *testing.T) [][]byte { return [][]byte{frame(t, mirror(50, 1, big))} },
			verdicts: one(drop),
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: bl,
				vocab.StatActionCount: 1, vocab.StatStreamNew: 1},
			streams: []streamWant{{k1(50, 1), 1, bl, inner(vocab.InnerIPv4)}},
		},
		{
			name: "a 9000-byte IPv6 frame behind extension headers, and a 60000-byte one",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				return [][]byte{frame(t, mirror6(50, 2, big, ext(gen.ExtHopByHop), ext(gen.ExtDstOpts))),
					frame(t, mirror6(50, 2, huge))}
			},
			verdicts: []vocab.Verdict{drop, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 2, vocab.StatJmirror: 2, vocab.StatJmirrorBytes: bl + hl,
				vocab.StatActionCount: 2, vocab.StatStreamNew: 1},
			streams: []streamWant{{k6(50, 2), 2, bl + hl, [vocab.NumInner]uint64{vocab.InnerIPv4: 2}}},
		},
		{
			name: "a jumbo frame whose UDP length goes past its last buffer is truncated",
			frames: func(t *testing.T) [][]byte {
				m := mirror(50, 3, big)
				f := frame(t, m)
				return [][]byte{setUDPLen(m, f, uint16(len(big)+17))}
			},
			verdicts: one(pass),
			stats:    map[vocab.Stat]uint64{vocab.StatFrames: 1, vocab.StatMalformedTruncated: 1},
		},
		{
			name: "IPv4 fragments of a jumbo datagram at MTU 9000",
			cfg:  loader.Config{DefaultAction: vocab.ActionCount},
			frames: func(t *testing.T) [][]byte {
				m := mirror(50, 4, huge)
				m.MTU = 9000
				f := frames(t, m)
				if len(f) != 7 {
					t.Fatalf("%d fragments", len(f))
				}
				return f
			},
			verdicts: []vocab.Verdict{drop, drop, drop, drop, drop, drop, drop},
			stats: map[vocab.Stat]uint64{vocab.StatFrames: 7, vocab.StatJmirror: 1, vocab.StatJmirrorBytes: hl,
				vocab.StatFragFirst: 1, vocab.StatFragTracked: 6, vocab.StatActionCount: 7, vocab.StatStreamNew: 1},
			streams: []streamWant{{k1(50, 4), 1, hl, inner(vocab.InnerIPv4)}},
		},
	}
}

func TestJumboFrames(t *testing.T) {
	for _, tc := range jumboCases() {
		t.Run(tc.name, func(t *testing.T) { runDatapathCase(t, tc) })
	}
}
