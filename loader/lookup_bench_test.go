package loader_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// tableKey is the i-th stream of the fill: one router per stream.
func tableKey(i int) vocab.StreamKey {
	return vocab.StreamKey{Router: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), MID: uint32(i%1000 + 1), SID: uint32(i)}
}

// BenchmarkStreamTable measures the program as the stream table fills,
// next to xdp_pass on the same frames, alternating (kernel-reported
// ns/frame, pass-ns/frame and x_pass as BenchmarkProgram): hit repeats one
// stream's frame in chunks; spread runs frames of 65536 different streams
// spread over the table once each (one run per call has a fixed cost that
// xdp_pass pays too; a set that large mostly misses the CPU caches); new,
// in the full table, runs frames of streams not in it once each: an insert
// and an LRU eviction. userspace/bench's stream_table section does the
// same at more levels, with a cache sweep before each spread.
func BenchmarkStreamTable(b *testing.B) {
	const capacity = loader.DefaultMaxStreams
	p := loadProgramSized(b, loader.Config{DefaultAction: vocab.ActionCount}, capacity)
	bl := loadBaselines(b)
	frameOf := func(b *testing.B, k vocab.StreamKey) []byte {
		return mustFrame(b, gen.Mirror{Router: k.Router, Collector: collector, MID: k.MID, SID: k.SID, Inner: ipv4Echo()})
	}
	filled := 0
	for _, level := range []int{0, 10_000, 100_000, 500_000, capacity} {
		if level > filled {
			base := filled
			err := p.Maps.PutStreams(level-base, func(i int) vocab.Stream {
				s := vocab.Stream{StreamKey: tableKey(base + i)}
				s.Inner[vocab.InnerIPv4] = 1
				return s
			})
			if err != nil {
				b.Fatal(err)
			}
			filled = level
		}
		b.Run(fmt.Sprintf("fill=%d/hit", level), func(b *testing.B) {
			benchChunks(b, bl, p.Benchmark, frameOf(b, tableKey(level/2)))
		})
		if level == 0 {
			continue
		}
		b.Run(fmt.Sprintf("fill=%d/spread", level), func(b *testing.B) {
			const n = 1 << 16
			frames := make([][]byte, n)
			for j := range frames {
				frames[j] = frameOf(b, tableKey(j*level/n))
				// A live stream has its policy cached in its entry.
				if _, err := p.Run(frames[j]); err != nil {
					b.Fatal(err)
				}
			}
			runOnce(b, p, bl, func(i int) []byte { return frames[i%n] })
		})
		if level != capacity {
			continue
		}
		b.Run(fmt.Sprintf("fill=%d/new", level), func(b *testing.B) {
			k := tableKey(0)
			k.SID = 1 << 31
			f := frameOf(b, k)
			off := gen.Mirror{Router: k.Router, Collector: collector}.HeaderOffset() + 4
			runOnce(b, p, bl, func(i int) []byte {
				// Session ids above the fill's: a stream never seen,
				// once the counter wraps at 2^31 it is long evicted.
				binary.BigEndian.PutUint32(f[off:], uint32(1<<31+i%(1<<31)))
				return f
			})
		})
	}
}

// benchChunks runs chunks of 10000 repeats of frame through prog then
// xdp_pass per iteration, and reports both and their ratio.
func benchChunks(b *testing.B, bl *loader.Baselines, prog func([]byte, int) (vocab.Verdict, time.Duration, error), frame []byte) {
	const chunk = 10000
	var progT, pass time.Duration
	var runs int
	for b.Loop() {
		_, d, err := prog(frame, chunk)
		if err != nil {
			b.Fatal(err)
		}
		_, db, err := bl.Pass(frame, chunk)
		if err != nil {
			b.Fatal(err)
		}
		progT, pass, runs = progT+d, pass+db, runs+1
	}
	report(b, progT, pass, runs)
}

// runOnce runs frame(i) once through jmxdp then xdp_pass per iteration.
func runOnce(b *testing.B, p *loader.Program, bl *loader.Baselines, frame func(i int) []byte) {
	var prog, pass time.Duration
	var runs int
	for b.Loop() {
		f := frame(runs)
		v, d, err := p.Benchmark(f, 1)
		if err != nil {
			b.Fatal(err)
		}
		if v != drop {
			b.Fatalf("verdict %v, want %v", v, drop)
		}
		_, db, err := bl.Pass(f, 1)
		if err != nil {
			b.Fatal(err)
		}
		prog, pass, runs = prog+d, pass+db, runs+1
	}
	report(b, prog, pass, runs)
}

func report(b *testing.B, prog, pass time.Duration, runs int) {
	b.ReportMetric(float64(prog.Nanoseconds())/float64(runs), "ns/frame")
	b.ReportMetric(float64(pass.Nanoseconds())/float64(runs), "pass-ns/frame")
	b.ReportMetric(float64(prog)/float64(pass), "x_pass")
}
