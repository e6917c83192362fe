package maps_test

import (
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

func testStream(i int) vocab.Stream {
	s := vocab.Stream{StreamKey: vocab.StreamKey{
		Router: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		MID:    uint32(i%7 + 1), SID: uint32(i),
	}}
	s.Inner = [vocab.NumInner]uint64{uint64(i), 1, 0, 0, 2}
	s.Packets = uint64(i) + 3
	s.Bytes = uint64(i) * 10
	s.FirstSeen = time.Duration(i)
	s.LastSeen = time.Duration(2 * i)
	return s
}

// PutStreams writes what EachStream reads back, each entry once (the batch
// reads span several batches), and Streams is the same set sorted.
func TestEachStream(t *testing.T) {
	testenv.RequireRoot(t)
	const capacity, n = 16384, 10000
	p, err := loader.Load(loader.Options{MaxStreams: capacity, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Maps.EachStream(func(vocab.Stream) { t.Fatal("empty table gave an entry") }); err != nil {
		t.Fatal(err)
	}
	if err := p.Maps.PutStreams(n, testStream); err != nil {
		t.Fatal(err)
	}
	seen := make(map[vocab.StreamKey]bool, n)
	var got []vocab.Stream
	if err := p.Maps.EachStream(func(s vocab.Stream) {
		if seen[s.StreamKey] {
			t.Errorf("%v seen twice", s.StreamKey)
		}
		seen[s.StreamKey] = true
		got = append(got, s)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("%d entries, want %d", len(got), n)
	}
	for _, s := range got {
		if want := testStream(int(s.SID)); s != want {
			t.Fatalf("read %+v, want %+v", s, want)
		}
	}
	sorted, err := p.Maps.Streams()
	if err != nil {
		t.Fatal(err)
	}
	vocab.SortStreams(got)
	if !slices.Equal(sorted, got) {
		t.Fatal("Streams differs from EachStream's entries sorted")
	}
}
