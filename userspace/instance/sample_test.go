package instance

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

func stream(router string, mid uint32, packets, bytes uint64) vocab.Stream {
	return vocab.Stream{StreamKey: vocab.StreamKey{Router: netip.MustParseAddr(router), MID: mid, SID: 1},
		StreamStats: vocab.StreamStats{Packets: packets, Bytes: bytes}}
}

// Rates are growth over the interval; a counter that went back (maps
// recreated) and a new stream count from zero; no time passed, no rates.
func TestComputeRates(t *testing.T) {
	t0 := time.Now()
	prev := &Sample{At: t0, Streams: []vocab.Stream{stream("10.0.0.1", 7, 100, 10_000)},
		Untrusted: []vocab.UntrustedSource{{Addr: netip.MustParseAddr("192.0.2.1"), Packets: 10}}}
	prev.Counters[vocab.StatFrames] = 1000
	prev.Counters[vocab.StatJmirror] = 500
	cur := &Sample{At: t0.Add(2 * time.Second), Streams: []vocab.Stream{stream("10.0.0.1", 7, 300, 30_000), stream("10.0.0.2", 8, 40, 4000)},
		Untrusted: []vocab.UntrustedSource{{Addr: netip.MustParseAddr("192.0.2.1"), Packets: 16}}}
	cur.Counters[vocab.StatFrames] = 1600
	cur.Counters[vocab.StatJmirror] = 100 // went back: recreated maps
	r := ComputeRates(prev, cur)
	if r == nil || r.Interval != 2 {
		t.Fatalf("rates %+v", r)
	}
	if r.Counters[vocab.StatFrames] != 300 || r.Counters[vocab.StatJmirror] != 50 {
		t.Errorf("frames %v/s jmirror %v/s, want 300 and 50", r.Counters[vocab.StatFrames], r.Counters[vocab.StatJmirror])
	}
	if got := r.Streams[cur.Streams[0].StreamKey]; got != (StreamRate{Packets: 100, Bits: 80_000}) {
		t.Errorf("old stream %+v", got)
	}
	if got := r.Streams[cur.Streams[1].StreamKey]; got != (StreamRate{Packets: 20, Bits: 16_000}) {
		t.Errorf("new stream %+v", got)
	}
	if got := r.Untrusted[netip.MustParseAddr("192.0.2.1")]; got != 3 {
		t.Errorf("untrusted %v/s, want 3", got)
	}
	if ComputeRates(cur, cur) != nil {
		t.Error("rates over no time")
	}
}

// TopStreams: by bytes without rates, by bit rate with them, ties by
// packets then key; --top cuts, a filter selects first.
func TestTopStreams(t *testing.T) {
	s := &Sample{Streams: []vocab.Stream{
		stream("10.0.0.3", 3, 10, 500), stream("10.0.0.1", 1, 10, 900), stream("10.0.0.2", 2, 20, 900), stream("10.0.0.4", 4, 1, 100),
	}}
	mids := func(ss []vocab.Stream) []uint32 {
		var out []uint32
		for _, x := range ss {
			out = append(out, x.MID)
		}
		return out
	}
	if got := mids(s.TopStreams(nil, 0, nil)); !slices.Equal(got, []uint32{2, 1, 3, 4}) {
		t.Errorf("by bytes: %v", got)
	}
	if got := mids(s.TopStreams(nil, 2, nil)); !slices.Equal(got, []uint32{2, 1}) {
		t.Errorf("top 2: %v", got)
	}
	r := &Rates{Streams: map[vocab.StreamKey]StreamRate{s.Streams[3].StreamKey: {Bits: 1e6}, s.Streams[0].StreamKey: {Bits: 10}}}
	if got := mids(s.TopStreams(r, 0, nil)); !slices.Equal(got, []uint32{4, 3, 2, 1}) {
		t.Errorf("by rate: %v", got)
	}
	f, err := filter.Compile("mid >= 3")
	if err != nil {
		t.Fatal(err)
	}
	if got := mids(s.TopStreams(nil, 0, f)); !slices.Equal(got, []uint32{3, 4}) {
		t.Errorf("filtered: %v", got)
	}
	if len(s.MatchingStreams(f)) != 2 || len(s.MatchingStreams(nil)) != 4 {
		t.Errorf("matching %d %d", len(s.MatchingStreams(f)), len(s.MatchingStreams(nil)))
	}
}

// Evicted is the streams created and no longer held; Ago is measured on
// the sample's coarse clock, 0 when unknown.
func TestEvictedAndAgo(t *testing.T) {
	s := &Sample{Streams: []vocab.Stream{stream("10.0.0.1", 1, 1, 1)}, Coarse: 10 * time.Second}
	s.Counters[vocab.StatStreamNew] = 5
	if s.Evicted() != 4 {
		t.Errorf("evicted %d, want 4", s.Evicted())
	}
	s.Counters[vocab.StatStreamNew] = 0
	if s.Evicted() != 0 {
		t.Errorf("evicted %d with no stream_new", s.Evicted())
	}
	if s.Ago(7*time.Second) != 3*time.Second || s.Ago(0) != 0 || s.Ago(11*time.Second) != 0 {
		t.Errorf("ago %v %v %v", s.Ago(7*time.Second), s.Ago(0), s.Ago(11*time.Second))
	}
}
