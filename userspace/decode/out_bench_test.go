package decode

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
)

// BenchmarkOutFrames runs --out's per-frame path (decode, reassembly,
// decode again) over 3 fragments of one datagram and 3 whole frames per
// op; the filter keeps no stream, so the files are not part of it.
func BenchmarkOutFrames(b *testing.B) {
	o, err := newOutWriter(b.TempDir(), []uint16{30030}, false)
	if err != nil {
		b.Fatal(err)
	}
	kept := 0
	o.keep = func(mid, sid uint32) bool { kept++; return false }
	src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	m := gen.Mirror{Router: netip.MustParseAddr("192.0.2.1"), Collector: netip.MustParseAddr("198.51.100.1"), MID: 1, SID: 2,
		Inner: gen.InnerIPv4UDP(src, dst, 1, 2, make([]byte, 3100)), MTU: 1500}
	frames, err := m.Frames()
	if err != nil {
		b.Fatal(err)
	}
	m.MTU, m.Inner = 0, gen.InnerIPv4ICMPEcho(src, dst, 1, 1, 200)
	whole, err := m.Frame()
	if err != nil {
		b.Fatal(err)
	}
	frames = append(frames, whole, whole, whole)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A new IP id (and, past 65536 rounds, source) each round: a
		// new datagram, not a copy of an earlier one (the input
		// checksum is not checked).
		for _, f := range frames[:3] {
			binary.BigEndian.PutUint16(f[14+4:], uint16(i))
			f[14+15] = byte(i >> 16) // the source's last byte
		}
		now := t0.Add(time.Duration(i) * time.Microsecond)
		for _, f := range frames {
			if err := o.frame(capfile.Frame{Time: now, Data: f}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	if kept != 4*b.N {
		b.Fatalf("%d packets reached the filter for %d rounds, want 4 each", kept, b.N)
	}
}
