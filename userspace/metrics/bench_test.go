package metrics_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
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
			fill(b, p.Objects().JmStreams, n)
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
func fill(b *testing.B, m *ebpf.Map, n int) {
	const chunk = 1 << 14
	keys := make([]bpf.JmxdpJmStreamKey, 0, chunk)
	vals := make([]bpf.JmxdpJmStreamValue, 0, chunk)
	flush := func() {
		if len(keys) == 0 {
			return
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			b.Fatal(err)
		}
		keys, vals = keys[:0], vals[:0]
	}
	for i := range n {
		r := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).As16()
		keys = append(keys, bpf.JmxdpJmStreamKey{Router: r, Mid: uint32(i % 1000), Sid: uint32(i)})
		vals = append(vals, bpf.JmxdpJmStreamValue{Inner: [5]uint64{uint64(i)}, Bytes: uint64(i) * 100, LastSeenNs: uint64(i)})
		if len(keys) == chunk {
			flush()
		}
	}
	flush()
}
