package loader_test

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// countFrame is a frame the counter variants count into stream
// (router r, mid, sid): its first 24 bytes are the key, size its bytes.
func countFrame(r byte, mid, sid uint32, size int) ([]byte, loader.CountKey) {
	f := make([]byte, size)
	f[0], f[15] = 0x20, r
	binary.LittleEndian.PutUint32(f[16:], mid)
	binary.LittleEndian.PutUint32(f[20:], sid)
	var k loader.CountKey
	copy(k.Router[:], f[:16])
	k.Mid, k.Sid = mid, sid
	return f, k
}

func loadCountBench(t *testing.T, opts loader.CountBenchOptions) *loader.CountBench {
	t.Helper()
	testenv.RequireRoot(t)
	c, err := loader.LoadCountBench(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type sentStream struct {
	frame []byte
	key   loader.CountKey
	want  loader.Count
}

// sendRoundRobin sends rounds of one frame of each stream, so that streams
// sharing a cache slot keep taking it from each other. One run per frame:
// a run of many repeats that a signal interrupts is started again whole
// (cilium/ebpf, EINTR), and the repeats run before the signal count too.
func sendRoundRobin(t *testing.T, c *loader.CountBench, v loader.CounterVariant, streams []sentStream, rounds int) loader.Count {
	t.Helper()
	var sent loader.Count
	for range rounds {
		for i := range streams {
			s := &streams[i]
			if verdict, err := c.Run(v, s.frame); err != nil || verdict != drop {
				t.Fatalf("%s: run: verdict %v, %v", v, verdict, err)
			}
			s.want.Packets++
			s.want.Bytes += uint64(len(s.frame))
			sent.Packets++
			sent.Bytes += uint64(len(s.frame))
		}
	}
	return sent
}

func makeStreams(n, routers int) []sentStream {
	s := make([]sentStream, n)
	for i := range s {
		s[i].frame, s[i].key = countFrame(byte(i%routers), uint32(i/routers+1), uint32(i), 64+i%7)
	}
	return s
}

// TestCounterVariantsExact: every variant counts every packet and byte of
// every stream exactly (per-CPU values summed, cache slots included) when
// its table holds them all; the cache is smaller than the streams, so
// cache_fold's slots are taken and flushed many times over.
func TestCounterVariantsExact(t *testing.T) {
	for _, v := range loader.CounterVariants() {
		t.Run(string(v), func(t *testing.T) {
			c := loadCountBench(t, loader.CountBenchOptions{MaxStreams: 256, CacheSlots: 8})
			streams := makeStreams(40, 4)
			sent := sendRoundRobin(t, c, v, streams, 70)
			tot, err := c.Totals(v)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range streams {
				if got := tot.Stream(s.key); got != s.want {
					t.Errorf("stream %d: counted %+v, sent %+v", s.key.Sid, got, s.want)
				}
			}
			if got := tot.Sum(); got != sent {
				t.Errorf("whole count %+v, sent %+v", got, sent)
			}
			if len(tot.Routers) != 0 || tot.Lost != (loader.Count{}) {
				t.Errorf("router totals %v, lost %+v with room for every stream", tot.Routers, tot.Lost)
			}
		})
	}
}

// TestCounterVariantsEvict: with a table smaller than the streams, the
// fold variants still account for every packet (table + cache + router
// totals + lost), folding into router totals the streams the table had no
// room for, and the LRU variants lose what they evict (why jmxdp's choice
// must fold, docs/datapath.md "Counter cost").
func TestCounterVariantsEvict(t *testing.T) {
	const tableSize, routers = 8, 4
	for _, v := range loader.CounterVariants() {
		t.Run(string(v), func(t *testing.T) {
			// Router totals for 2 of the 4 routers: the others go to lost.
			c := loadCountBench(t, loader.CountBenchOptions{MaxStreams: tableSize, CacheSlots: 4, MaxRouters: 2})
			streams := makeStreams(64, routers)
			sent := sendRoundRobin(t, c, v, streams, 5)
			tot, err := c.Totals(v)
			if err != nil {
				t.Fatal(err)
			}
			if len(tot.Streams) > tableSize {
				t.Errorf("%d streams in a table of %d", len(tot.Streams), tableSize)
			}
			for _, s := range streams {
				if got := tot.Stream(s.key); got.Packets > s.want.Packets || got.Bytes > s.want.Bytes {
					t.Errorf("stream %d: counted %+v, more than sent %+v", s.key.Sid, got, s.want)
				}
			}
			got := tot.Sum()
			if !v.Folds() {
				if got.Packets >= sent.Packets {
					t.Errorf("LRU variant counted %+v of %+v after evicting: expected a loss", got, sent)
				}
				return
			}
			if got != sent {
				t.Errorf("whole count %+v, sent %+v", got, sent)
			}
			if len(tot.Routers) == 0 || len(tot.Routers) > 2 {
				t.Errorf("router totals %v: want 1 or 2 routers folded", tot.Routers)
			}
			if tot.Lost.Packets == 0 {
				t.Errorf("nothing in lost with router totals for 2 of %d routers", routers)
			}
		})
	}
}

// BenchmarkCounterVariants measures each counter variant on one stream's
// frame (hit: chunks of 10000 repeats) next to xdp_pass, alternating in the same run (kernel-reported ns/frame,
// pass-ns/frame and x_pass as BenchmarkProgram).
func BenchmarkCounterVariants(b *testing.B) {
	testenv.RequireRoot(b)
	bl := loadBaselines(b)
	c, err := loader.LoadCountBench(loader.CountBenchOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	f, _ := countFrame(1, 1, 1, 114)
	for _, v := range loader.CounterVariants() {
		b.Run(string(v), func(b *testing.B) {
			benchChunks(b, bl, func(f []byte, n int) (vocab.Verdict, time.Duration, error) { return c.Benchmark(v, f, n) }, f)
		})
	}
}

// coarseNow is CLOCK_MONOTONIC_COARSE, the clock a stream's first and last
// seen are in.
func coarseNow(t *testing.T) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// TestLastSeenFollowsClock: with the coarse clock read once per jiffy
// (jm_clock), a stream's first and last seen are still the coarse clock
// of their frames, to a tick: a frame 50 ms after the first moves last
// seen on by about that, never past the clock read after it.
func TestLastSeenFollowsClock(t *testing.T) {
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	f, err := mirror(7, 7, ipv4Echo()).Frame()
	if err != nil {
		t.Fatal(err)
	}
	k := vocab.StreamKey{Router: router1, MID: 7, SID: 7}
	// A tick is at most 10 ms (HZ >= 100); the lag allowed is one.
	const tick = 10 * time.Millisecond
	read := func() vocab.StreamStats {
		t.Helper()
		s, ok, err := p.Maps.Stream(k)
		if err != nil || !ok {
			t.Fatalf("stream %v: %v, %v", k, ok, err)
		}
		return s
	}
	before := coarseNow(t)
	if v, err := p.Run(f); err != nil || v != drop {
		t.Fatalf("run: %v, %v", v, err)
	}
	first := read()
	after := coarseNow(t)
	if first.FirstSeen < before-tick || first.FirstSeen > after || first.LastSeen != first.FirstSeen {
		t.Fatalf("first frame: first/last seen %v/%v, clock %v..%v", first.FirstSeen, first.LastSeen, before, after)
	}
	time.Sleep(50 * time.Millisecond)
	before = coarseNow(t)
	if v, err := p.Run(f); err != nil || v != drop {
		t.Fatalf("run: %v, %v", v, err)
	}
	second := read()
	after = coarseNow(t)
	if second.FirstSeen != first.FirstSeen || second.LastSeen < before-tick || second.LastSeen > after {
		t.Errorf("second frame: first/last seen %v/%v, clock %v..%v (first frame's %v)", second.FirstSeen, second.LastSeen, before, after, first.FirstSeen)
	}
}
