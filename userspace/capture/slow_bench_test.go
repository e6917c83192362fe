package capture

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// ethLen is the Ethernet header of the frames slowFrames builds.
const ethLen = 14

// countSink counts what the shard hands it, and keeps nothing.
type countSink struct{ packets, bytes int }

func (s *countSink) SetClock(time.Time) {}
func (s *countSink) WriteAt(_ writer.Key, _ uint64, _ netip.Addr, _ pcapng.LinkKind, data []byte) bool {
	s.packets++
	s.bytes += len(data)
	return true
}
func (s *countSink) Drop(writer.Key, writer.DropReason, int) {}
func (s *countSink) Tick()                                   {}

// slowFrames is a batch of frames that go by the slow path: whole Jmirror
// frames (no metadata) and the three fragments of one datagram, with ids
// that vary so that each round's fragments form a new datagram.
func slowFrames(b *testing.B, id uint16) [][]byte {
	b.Helper()
	inner := gen.InnerIPv4UDP(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 2, make([]byte, 3100))
	m := gen.Mirror{Router: netip.MustParseAddr("192.0.2.1"), Collector: netip.MustParseAddr("198.51.100.1"), MID: 1, SID: 2,
		Inner: inner, MTU: 1500, IPID: id}
	frags, err := m.Frames()
	if err != nil {
		b.Fatal(err)
	}
	whole := m
	whole.MTU, whole.Inner = 0, gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 200)
	f, err := whole.Frame()
	if err != nil {
		b.Fatal(err)
	}
	return append(frags, f, f, f)
}

// BenchmarkSlowPath writes batches of frames the program gave no metadata
// for, and fragments, through writeBatch: decode, reassembly, decode again
// and the sink. Per op: one batch of 3 fragments and 3 whole frames.
func BenchmarkSlowPath(b *testing.B) {
	sink := &countSink{}
	sh := &shard{sink: sink, drops: map[writer.Key]int{}, reasm: lockedReasm{r: reasm.New(reasm.Config{})}}
	c := &Capture{shards: []*shard{sh}}
	bt := &batch{}
	for _, f := range slowFrames(b, 0) {
		bt.frames = append(bt.frames, frameRef{off: len(bt.buf), len: len(f), slow: true})
		bt.buf = append(bt.buf, f...)
	}
	clk := newClock()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// A new IP id (and, past 65536 rounds, source) each round: a
		// new datagram, not a copy of an earlier one (the input
		// checksum is not checked).
		for _, f := range bt.frames[:3] {
			binary.BigEndian.PutUint16(bt.buf[f.off+ethLen+4:], uint16(i))
			bt.buf[f.off+ethLen+15] = byte(i >> 16) // the source's last byte
		}
		c.writeBatch(sh, bt, clk)
	}
	b.StopTimer()
	if sink.packets != 4*b.N {
		b.Fatalf("%d packets written for %d batches, want 4 each (stats %+v)", sink.packets, b.N, sh.reasm.r.Stats())
	}
}
