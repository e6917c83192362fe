package metrics_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/metrics"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The per-router series include what the stream table could not hold (a
// full table's refused streams) and what it no longer holds (idle streams
// retired): they count every packet and never go down.
func TestRouterTotalsIncludeFolded(t *testing.T) {
	testenv.RequireRoot(t)
	const capacity = 2
	p, err := loader.Load(loader.Options{MaxStreams: capacity, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		t.Fatal(err)
	}
	run := func(mid uint32, n int) {
		f, err := gen.Mirror{Router: router1, Collector: collector, MID: mid, SID: 1, Inner: inner(t, 128)}.Frame()
		if err != nil {
			t.Fatal(err)
		}
		for range n {
			if v, err := p.Run(f); err != nil || v != vocab.VerdictDrop {
				t.Fatalf("run: %v %v", v, err)
			}
		}
	}
	routerKey := `jmxdp_router_packets_total{router="` + router1.String() + `"}`
	scrape := func() series {
		got, _ := gather(t, metrics.NewCollector(metrics.Source{Maps: p.Maps}, metrics.Options{}))
		return got
	}
	run(1, 3)
	run(2, 4)
	run(3, 5) // the table is full: mid 3 goes to the router's total
	got := scrape()
	if got[routerKey] != 12 || got["jmxdp_stream_table_full_packets_total{}"] == 0 || got["jmxdp_stream_table_lost_packets_total{}"] != 0 {
		t.Fatalf("router %v (want 12), full %v, lost %v", got[routerKey], got["jmxdp_stream_table_full_packets_total{}"], got["jmxdp_stream_table_lost_packets_total{}"])
	}
	if n, err := p.Maps.RetireIdle(time.Duration(1<<62-1), capacity); err != nil || n != capacity {
		t.Fatalf("retired %d, %v", n, err)
	}
	run(4, 1)
	got = scrape()
	if got[routerKey] != 13 {
		t.Fatalf("router after retiring: %v, want 13", got[routerKey])
	}
}
