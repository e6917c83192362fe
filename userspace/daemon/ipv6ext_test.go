package daemon_test

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Issue 15 items 3 and 4, live: Jmirror over IPv6 behind extension
// headers, and outer IPv6 fragments behind hop-by-hop and routing headers
// (one with its first fragment twice; then, the pair now known to send
// captured fragments, three last-first, one of them with its first twice:
// their early fragments are held), all land in their stream's file, byte
// for byte, once each.
func TestIPv6ExtensionsAndFragmentsLive(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	router, coll := netip.MustParseAddr("2001:db8:15::1"), netip.MustParseAddr("2001:db8:15::100")
	var inners [][]byte
	mirror := func(n int, id uint32, exts ...gen.ExtHeader) gen.Mirror {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(id) + byte(i)
		}
		m := gen.Mirror{
			SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC, Router: router, Collector: coll,
			MID: 41, SID: 1, UDPChecksum: true, IPv6Ext: exts, IPv6FragID: id, MTU: 1500,
			Inner: gen.InnerIPv4UDP(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 1000, uint16(id), payload),
		}
		inners = append(inners, m.Inner)
		return m
	}
	var frames [][]byte
	for i := range 3 {
		m := mirror(200+i, uint32(i), gen.ExtHeader{Type: gen.ExtHopByHop}, gen.ExtHeader{Type: gen.ExtDstOpts, Len: 16},
			gen.ExtHeader{Type: gen.ExtRouting, Len: 24}, gen.ExtHeader{Type: gen.ExtAH, Len: 24})
		f, err := m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	// fragments is a 3-fragment datagram behind hop-by-hop and routing.
	fragments := func(id uint32) [][]byte {
		m := mirror(3000, id, gen.ExtHeader{Type: gen.ExtHopByHop}, gen.ExtHeader{Type: gen.ExtRouting, Len: 24})
		f, err := m.Frames()
		if err != nil || len(f) != 3 {
			t.Fatalf("%d fragments, %v", len(f), err)
		}
		return f
	}
	for i := range 4 {
		f := fragments(uint32(0x10000 + i))
		if i == 3 {
			f = [][]byte{f[0], f[0], f[1], f[2]} // the first twice
		}
		frames = append(frames, f...)
	}
	for i := range 3 {
		f := fragments(uint32(0x20000 + i))
		if i == 2 {
			frames = append(frames, f[1], f[2], f[0], f[0])
			continue
		}
		frames = append(frames, f[2], f[1], f[0])
	}
	e.send(t, frames)
	settle(t, d, len(frames))
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[vocab.Stat]uint64{
		vocab.StatJmirror: 10, vocab.StatFragFirst: 7, vocab.StatFragTracked: 8, vocab.StatFragDuplicate: 2,
		vocab.StatFragHeld: 6, vocab.StatFragUnmatched: 0, vocab.StatNotJmirror: 0, vocab.StatCaptureFailed: 0,
		vocab.StatActionCapture: uint64(len(frames)),
	} {
		if c[s] != want {
			t.Errorf("kernel %s = %d, want %d", s, c[s], want)
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	cs := d.Capture().Stats()
	if h := cs.Held; h.Held != 6 || h.Released != 6 || h.Expired != 0 || h.Evicted != 0 || h.Pending != 0 {
		t.Errorf("held fragments %+v: want 6 held and released", h)
	}
	r := cs.Reassembly
	if r.Reassembled != 7 || r.Duplicates != 2 || r.Timeouts != 0 || r.Malformed != 0 || r.Pending != 0 {
		t.Errorf("reassembly %+v: want 7 datagrams, 2 duplicates", r)
	}
	files := streamFiles(t, e.out)
	if len(files) != 1 || len(files["mid-41/sid-1"]) == 0 {
		t.Fatalf("stream files %v: want mid-41/sid-1 only", files)
	}
	got := filePackets(t, files["mid-41/sid-1"]...)
	if len(got) != len(inners) {
		t.Fatalf("%d packets in the file, want %d", len(got), len(inners))
	}
	for i := range got {
		if !bytes.Equal(got[i], inners[i]) {
			t.Errorf("packet %d (%d bytes) differs from the one mirrored (%d bytes)", i, len(got[i]), len(inners[i]))
		}
	}
}
