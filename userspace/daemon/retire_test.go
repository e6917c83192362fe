package daemon

import (
	"log/slog"
	"net/netip"
	"testing"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The daemon retires idle streams only once the full table refused some,
// and then the longest idle: a new stream gets an entry again, and the
// retired counts are in the router's total.
func TestRetireIfFull(t *testing.T) {
	testenv.RequireRoot(t)
	const capacity = 4
	p, err := loader.Load(loader.Options{MaxStreams: capacity, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Configure(loader.Config{DefaultAction: vocab.ActionCount}); err != nil {
		t.Fatal(err)
	}
	router := netip.MustParseAddr("192.0.2.1")
	// Streams silent since boot: LastSeen 1 ns of CLOCK_MONOTONIC_COARSE.
	err = p.Maps.PutStreams(capacity, func(i int) vocab.Stream {
		s := vocab.Stream{StreamKey: vocab.StreamKey{Router: router, MID: uint32(i + 1), SID: 1}}
		s.Inner[vocab.InnerIPv4], s.Bytes, s.FirstSeen, s.LastSeen = 10, 1000, 1, 1
		return s
	})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{prog: p, log: slog.New(slog.DiscardHandler)}
	d.retireIfFull() // nothing refused yet: nothing retired
	if n := count(t, p.Maps); n != capacity {
		t.Fatalf("%d streams before any refusal, want %d", n, capacity)
	}
	f, err := gen.Mirror{Router: router, Collector: netip.MustParseAddr("198.51.100.1"), MID: 99, SID: 1,
		Inner: gen.InnerIPv4ICMPEcho(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 1, 1, 32)}.Frame()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(f); err != nil { // refused: the table is full
		t.Fatal(err)
	}
	d.retireIfFull()
	if n := count(t, p.Maps); n != capacity-capacity/4 {
		t.Fatalf("%d streams after retiring, want %d (a quarter retired)", n, capacity-capacity/4)
	}
	tot, err := p.Maps.RouterTotals()
	if err != nil {
		t.Fatal(err)
	}
	if r := tot[router]; r.Retired.Packets != 10*capacity/4 || r.Overflow.Packets != 1 {
		t.Fatalf("router totals %+v, want %d retired, 1 overflowed", r, 10*capacity/4)
	}
}

func count(t *testing.T, m *maps.Maps) int {
	t.Helper()
	n := 0
	if err := m.EachStream(func(vocab.Stream) { n++ }); err != nil {
		t.Fatal(err)
	}
	return n
}
