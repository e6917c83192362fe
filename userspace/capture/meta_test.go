package capture

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// runMeta runs the real program over frame (BPF_PROG_TEST_RUN) and returns
// the metadata it wrote in front of it, nil if none.
func runMeta(t *testing.T, prog *ebpf.Program, frame []byte) []byte {
	t.Helper()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out}
	if _, err := prog.Run(opts); err != nil {
		t.Fatalf("run: %v", err)
	}
	out = opts.DataOut
	if len(out) == len(frame) {
		return nil
	}
	if len(out) != len(frame)+metaLen || !bytes.Equal(out[metaLen:], frame) {
		t.Fatalf("program output of %d bytes for a frame of %d", len(out), len(frame))
	}
	return out[:metaLen]
}

// newTestRing is a ring loop's state over a one-shard capture, without
// sockets: what frame() puts in the batch is what the writer would get.
func newTestRing() *ring {
	c := &Capture{shards: []*shard{{drops: map[writer.Key]int{}}}}
	c.free.put(&batch{buf: make([]byte, 0, batchBytes)})
	return &ring{c: c, cur: make([]*batch, 1), started: make([]time.Time, 1), drops: []map[writer.Key]int{{}}, ringSize: 64}
}

// TestMetadataMatchesDecoder runs the real XDP program over frames of
// every outer shape and checks that what it writes in the metadata, and
// what the ring loop makes of it, is what the Go decoder finds in the
// frame: the stream, the router, the mirrored packet and its kind. Frames
// without metadata and fragments are copied whole, to be decoded.
func TestMetadataMatchesDecoder(t *testing.T) {
	testenv.RequireRoot(t)
	prog, err := loader.Load(loader.Options{MaxStreams: 1024, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		testenv.SkipOrFail(t, "load the XDP program: "+err.Error())
	}
	defer prog.Close()
	if err := prog.Configure(loader.Config{}); err != nil {
		t.Fatal(err)
	}
	jm := prog.Objects().Jmxdp
	v4 := netip.MustParseAddr("192.0.2.7")
	v6 := netip.MustParseAddr("2001:db8::7")
	inner4 := gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 100)
	ppp := append([]byte{0xff, 0x03, 0x00, 0x21}, inner4...)
	cases := []struct {
		name string
		m    gen.Mirror
		kind pcapng.LinkKind
	}{
		{"ipv4", gen.Mirror{Router: v4, Collector: netip.MustParseAddr("198.51.100.1"), MID: 5, SID: 6, Inner: inner4}, pcapng.LinkRawIP},
		{"ipv6 outer, ppp inner", gen.Mirror{Router: v6, Collector: netip.MustParseAddr("2001:db8::1"), MID: 7, SID: 8, Inner: ppp, UDPChecksum: true}, pcapng.LinkPPPHDLC},
		{"qinq, ip options", gen.Mirror{Router: v4, Collector: netip.MustParseAddr("198.51.100.1"), MID: 9, SID: 10, Inner: []byte{1, 2, 3},
			VLANs: []gen.VLAN{{ID: 100}, {ID: 200}}, IPOptions: []byte{1, 1, 1, 1}}, pcapng.LinkUnknown},
		{"empty inner", gen.Mirror{Router: v4, Collector: netip.MustParseAddr("198.51.100.1"), MID: 11, SID: 12}, pcapng.LinkUnknown},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			frame, err := c.m.Frame()
			if err != nil {
				t.Fatal(err)
			}
			meta := runMeta(t, jm, frame)
			if meta == nil {
				t.Fatal("no metadata in front of a captured frame")
			}
			h, class := jmirror.Decode(frame, func(uint16) bool { return true })
			if class != jmirror.ClassJmirror {
				t.Fatalf("decoder: %v", class)
			}
			r := newTestRing()
			r.frame(meta, frame)
			b := r.cur[0]
			if b == nil || len(b.frames) != 1 {
				t.Fatalf("batch %+v", b)
			}
			f := b.frames[0]
			got := b.buf[f.off : f.off+f.len]
			want := frame[h.InnerOffset() : h.InnerOffset()+h.InnerLen]
			if f.slow || f.key != (writer.Key{MID: h.MID, SID: h.SID}) || f.router != h.Router ||
				f.kind != c.kind || f.kind != pcapng.KindOf(h.Inner) || !bytes.Equal(got, want) || f.mono == 0 || r.noMeta != 0 {
				t.Errorf("ref %+v (%d bytes), decoder %+v (%d bytes)", f, len(got), h, len(want))
			}
		})
	}

	t.Run("fragments", func(t *testing.T) {
		m := gen.Mirror{Router: v4, Collector: netip.MustParseAddr("198.51.100.1"), MID: 21, SID: 22, IPID: 77,
			Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 2000), MTU: 1500}
		frames, err := m.Frames()
		if err != nil || len(frames) != 2 {
			t.Fatalf("%d frames: %v", len(frames), err)
		}
		r := newTestRing()
		for i, fr := range frames {
			meta := runMeta(t, jm, fr)
			mt, ok := readMeta(meta)
			flag := uint8(metaFirstFrg)
			if i > 0 {
				flag = metaLaterFrg
			}
			if !ok || mt.Mid != 21 || mt.Sid != 22 || mt.Flags&flag == 0 {
				t.Fatalf("fragment %d: meta %+v", i, mt)
			}
			r.frame(meta, fr)
		}
		b := r.cur[0]
		for i, f := range b.frames {
			if !f.slow || f.key != (writer.Key{MID: 21, SID: 22}) || !bytes.Equal(b.buf[f.off:f.off+f.len], frames[i]) {
				t.Errorf("fragment %d: ref %+v: want the whole frame, for reassembly", i, f)
			}
		}
	})

	// A frame whose outer IPv6 source embeds IPv4 is never the program's
	// (it drops those): even with metadata in front, it is not taken for
	// the IPv4 router but decoded, and the decoder refuses it.
	t.Run("IPv4-embedding IPv6 source", func(t *testing.T) {
		frame, err := cases[1].m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		meta := runMeta(t, jm, frame)
		mt, ok := readMeta(meta)
		if !ok {
			t.Fatal("no metadata")
		}
		src := netip.AddrFrom16(v4.As16()).As16()
		copy(frame[int(mt.L3Off)+8:], src[:])
		r := newTestRing()
		r.frame(meta, frame)
		if f := r.cur[0].frames[0]; !f.slow || f.router.IsValid() {
			t.Errorf("ref %+v: want the slow path, without a router", f)
		}
		if _, class := jmirror.Decode(frame, func(uint16) bool { return true }); class != jmirror.ClassUntrusted {
			t.Errorf("decoder: %v, want untrusted", class)
		}
	})

	t.Run("no metadata", func(t *testing.T) {
		frame, err := cases[0].m.Frame()
		if err != nil {
			t.Fatal(err)
		}
		r := newTestRing()
		r.frame(nil, frame)
		r.frame(make([]byte, metaLen), frame) // stale zeroed bytes: no magic
		b := r.cur[0]
		for _, f := range b.frames {
			if !f.slow || f.key != (writer.Key{MID: 5, SID: 6}) || !bytes.Equal(b.buf[f.off:f.off+f.len], frame) || f.mono != 0 {
				t.Errorf("ref %+v: want the whole frame, decoded by userspace", f)
			}
		}
		if r.noMeta != 2 {
			t.Errorf("noMeta %d", r.noMeta)
		}
	})
}
