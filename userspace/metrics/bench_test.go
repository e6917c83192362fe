package metrics_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// BenchmarkCollect is one scrape of a full stream table: the cost of
// reading it is what a scrape costs. "scrape" reuses one collector, as a
// server does; "first" makes a new one for every scrape, so it includes
// growing the buffer the collector keeps between scrapes.
//
//	go test -run - -bench Collect -benchmem ./userspace/metrics
func BenchmarkCollect(b *testing.B) {
	for _, n := range []int{1 << 12, 1 << 16, 1 << 20} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			testenv.RequireRoot(b)
			p, err := loader.Load(loader.Options{MaxStreams: uint32(n)})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			fill(b, p.Maps, n)
			newReg := func() *prometheus.Registry {
				reg := prometheus.NewRegistry()
				reg.MustRegister(metrics.NewCollector(metrics.Source{Maps: p.Maps}, metrics.Options{}))
				return reg
			}
			gather := func(b *testing.B, reg *prometheus.Registry) {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("scrape", func(b *testing.B) {
				b.ReportAllocs()
				reg := newReg()
				gather(b, reg) // the collector's buffer is grown once
				for b.Loop() {
					gather(b, reg)
				}
			})
			b.Run("first", func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					gather(b, newReg())
				}
			})
		})
	}
}

// fill puts n streams of 1000 intercepts and 256 routers in the table.
func fill(b *testing.B, m *maps.Maps, n int) {
	err := m.PutStreams(n, func(i int) vocab.Stream {
		return vocab.Stream{
			StreamKey:   vocab.StreamKey{Router: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), MID: uint32(i % 1000), SID: uint32(i)},
			StreamStats: vocab.StreamStats{Inner: [vocab.NumInner]uint64{uint64(i)}, Bytes: uint64(i) * 100, LastSeen: time.Duration(i)},
		}
	})
	if err != nil {
		b.Fatal(err)
	}
}
