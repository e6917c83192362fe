package jmirror_test

import (
	"net/netip"
	"os"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// partition is the set of counters every frame lands in exactly once.
var partition = []vocab.Stat{vocab.StatNotJmirror, vocab.StatJmirror, vocab.StatMalformedShort,
	vocab.StatMalformedTruncated, vocab.StatUntrusted, vocab.StatFragTracked, vocab.StatFragUnmatched,
	vocab.StatFragDuplicate, vocab.StatFragHeld, vocab.StatIPv6ExtLong}

// FuzzDecode feeds arbitrary frames to the Go decoder: it must never panic,
// must put each frame in exactly one class, and must agree with the
// stateless Decode. As root it also runs the kernel program on each input
// and requires the same verdict and counter changes.
func FuzzDecode(f *testing.F) {
	for _, fr := range gen.Corpus(7, 200, []uint16{30030}) {
		f.Add(fr)
	}
	// The IPv6 form of an IPv4 router, which must never pass as it.
	mapped := gen.Mirror{Router: netip.AddrFrom16(netip.MustParseAddr("203.0.113.1").As16()),
		Collector: netip.MustParseAddr("2001:db8::100"), MID: 1, SID: 1, Inner: []byte{0x45}}
	if fr, err := mapped.Frame(); err == nil {
		f.Add(fr)
	}
	// Outer IPv6 extension chains at and past the bound, and IPv6
	// fragments behind hop-by-hop and routing headers.
	r6, c6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::100")
	for _, n := range []int{jmirror.MaxIPv6Ext, jmirror.MaxIPv6Ext + 1} {
		m := gen.Mirror{Router: r6, Collector: c6, MID: 2, SID: 2, Inner: []byte{0x45, 0}, UDPChecksum: true}
		for range n {
			m.IPv6Ext = append(m.IPv6Ext, gen.ExtHeader{Type: gen.ExtDstOpts})
		}
		if fr, err := m.Frame(); err == nil {
			f.Add(fr)
		}
	}
	frag := gen.Mirror{Router: r6, Collector: c6, MID: 3, SID: 3, Inner: make([]byte, 600), UDPChecksum: true, MTU: 300,
		IPv6FragID: 9, IPv6Ext: []gen.ExtHeader{{Type: gen.ExtHopByHop}, {Type: gen.ExtRouting}}}
	if frs, err := frag.Frames(); err == nil {
		for _, fr := range frs {
			f.Add(fr)
		}
	}
	cfg := jmirror.Config{Ports: []uint16{30030}, DefaultAction: vocab.ActionCapture}
	eng := jmirror.NewEngine(cfg, nil)
	var prog *loader.Program
	if os.Geteuid() == 0 {
		p, err := loader.Load(loader.Options{MaxStreams: 1 << 16})
		if err != nil {
			f.Fatalf("load: %v", err)
		}
		f.Cleanup(func() { p.Close() })
		if err := p.Configure(loader.Config{Ports: cfg.Ports}); err != nil {
			f.Fatal(err)
		}
		prog = p
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		eng := eng
		inKernel := prog != nil && len(frame) >= loader.MinFrameLen && len(frame) <= loader.MaxFrameLen
		if prog != nil && !inKernel {
			// The kernel never sees this frame: keep the shared state in step.
			eng = jmirror.NewEngine(cfg, nil)
		}
		before := eng.Counters()
		res := eng.Process(frame)
		after := eng.Counters()
		if after[vocab.StatFrames] != before[vocab.StatFrames]+1 {
			t.Fatalf("frames counter moved by %d", after[vocab.StatFrames]-before[vocab.StatFrames])
		}
		moved := 0
		for _, s := range partition {
			moved += int(after[s] - before[s])
		}
		if moved != 1 {
			t.Fatalf("frame landed in %d classes (class %v)", moved, res.Class)
		}
		h, class := jmirror.Decode(frame, func(p uint16) bool { return p == 30030 })
		if after[vocab.StatUntrustedMapped] != before[vocab.StatUntrustedMapped] &&
			(res.Class != jmirror.ClassUntrusted || class != jmirror.ClassUntrusted || !vocab.IPv4Embedded(h.Router)) {
			t.Fatalf("untrusted_mapped counted for class %v, Decode %v, router %v", res.Class, class, h.Router)
		}
		if res.Class == jmirror.ClassJmirror && vocab.IPv4Embedded(res.Header.Router) {
			t.Fatalf("Jmirror from router %v, which embeds IPv4", res.Header.Router)
		}
		if res.Class == jmirror.ClassJmirror {
			if class != jmirror.ClassJmirror || h.MID != res.Header.MID || h.SID != res.Header.SID || h.InnerLen != res.Header.InnerLen {
				t.Fatalf("Decode disagrees with the engine: %+v vs %+v", h, res.Header)
			}
			if !h.FirstFragment && h.InnerOffset()+h.InnerLen > len(frame) {
				t.Fatalf("inner packet [%d:+%d] beyond a %d-byte frame", h.InnerOffset(), h.InnerLen, len(frame))
			}
		}
		if !inKernel {
			return
		}
		kbefore, err := prog.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		v, err := prog.Run(frame)
		if err != nil {
			t.Fatal(err)
		}
		kafter, err := prog.Maps.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if vocab.Verdict(res.Verdict) != v {
			t.Fatalf("kernel verdict %v, Go %v", v, vocab.Verdict(res.Verdict))
		}
		for s := range after {
			if kafter[s]-kbefore[s] != after[s]-before[s] {
				t.Fatalf("counter %v: kernel moved %d, Go %d", vocab.Stat(s), kafter[s]-kbefore[s], after[s]-before[s])
			}
		}
	})
}
