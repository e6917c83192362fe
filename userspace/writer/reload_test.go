package writer

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// A reload's new rotation limits apply from the next Tick: a file opened
// with age rotation off completes once the new RotateAge passes, and a
// new RotateSize rotates the next file by size.
func TestSetRotation(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	m := newManager(t, Config{Dir: dir, Now: clk.Now}) // no rotation
	a := Key{1, 1}
	ts := clk.Now()
	write(t, m, a, ts, 0, 100)
	clk.Advance(2 * time.Minute)
	m.Tick()
	if n := len(completed(t, dir, a)); n != 0 {
		t.Fatalf("%d completed files before any rotation was set", n)
	}
	if err := m.SetRotation(0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := len(completed(t, dir, a)); n != 0 {
		t.Fatalf("SetRotation applied before Tick: %d completed", n)
	}
	m.Tick() // the open file is 2 min old: past the new limit
	if n := len(completed(t, dir, a)); n != 1 {
		t.Fatalf("after SetRotation(age 1m) and Tick: %d completed files, want 1", n)
	}
	if st := m.Stats(); st.RotationsAge != 1 {
		t.Errorf("RotationsAge %d, want 1", st.RotationsAge)
	}
	// By size now, age off: a file past 1 KiB completes at once.
	if err := m.SetRotation(1024, 0); err != nil {
		t.Fatal(err)
	}
	m.Tick()
	for i := 1; i <= 30; i++ {
		write(t, m, a, ts, i, 100)
	}
	clk.Advance(time.Hour)
	m.Tick()
	st := m.Stats()
	if st.RotationsSize == 0 {
		t.Errorf("no size rotation after SetRotation(1024, 0): %+v", st)
	}
	if st.RotationsAge != 1 {
		t.Errorf("age rotation still on after SetRotation(_, 0): %d", st.RotationsAge)
	}
	if err := m.SetRotation(-1, 0); err == nil {
		t.Error("negative size accepted")
	}
}

// MaxStreams bounds the remembered streams: beyond it the least recently
// seen are completed and forgotten, counted, and nothing they wrote is lost
// (issue 19 item 3).
func TestMaxStreamsEvicts(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	var logs testenv.LogBuffer
	m := newManager(t, Config{Dir: dir, Now: clk.Now, MaxStreams: 100, Logger: logs.Logger()})
	ts := clk.Now()
	const n = 1000
	for i := range n {
		clk.Advance(time.Millisecond)
		if !write(t, m, Key{MID: 1, SID: uint32(i)}, ts, i, 100) {
			t.Fatalf("stream %d dropped", i)
		}
		if st := m.Stats(); st.Streams > 100 {
			t.Fatalf("after %d streams, %d remembered (max 100)", i+1, st.Streams)
		}
	}
	st := m.Stats()
	if st.StreamEvictions < n-100 || st.StreamEvictions > n {
		t.Errorf("%d stream evictions for %d streams over a bound of 100", st.StreamEvictions, n)
	}
	// The evicted were the oldest: the newest stream is still there.
	last := Key{MID: 1, SID: n - 1}
	found := false
	for _, ss := range m.Streams() {
		found = found || ss.Key == last
	}
	if !found {
		t.Error("the most recent stream was evicted")
	}
	// An evicted stream that comes back starts a new file.
	if !write(t, m, Key{MID: 1, SID: 0}, ts, n, 100) {
		t.Fatal("an evicted stream's next packet dropped")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	st = m.Stats()
	if st.Packets != n+1 || st.Buffered != 0 {
		t.Errorf("packets %d buffered %d, want %d and 0: an eviction lost packets", st.Packets, st.Buffered, n+1)
	}
	if got := streamSeqs(t, dir, Key{MID: 1, SID: 0}); len(got) != 2 || len(completed(t, dir, Key{MID: 1, SID: 0})) != 2 {
		t.Errorf("stream 0: packets %v in %d files, want 2 in 2", got, len(completed(t, dir, Key{MID: 1, SID: 0})))
	}
	if w := logs.Lines("level=WARN"); len(w) != 1 || !strings.Contains(w[0], "max_stream_memory") {
		t.Errorf("warnings %q, want one", w)
	}
}

// A million streams (a sender inventing (mid, sid) pairs) under the
// default bound: the writer's heap stays under capture.max_stream_memory's
// default, 512 MiB (issue 19 item 3: it grew to 1.25 GB before).
func TestMemoryBoundedAtOneMillionStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("a million streams")
	}
	const bound = 512 << 20
	dir := outDir(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newManager(t, Config{Dir: dir, MaxStreams: bound / StreamBytes})
	const n = 1 << 20
	for i := range n {
		// Counted drops make a stream's state without a file: the same
		// allocation as a stream with one (its file lives in it).
		m.Drop(Key{MID: uint32(i >> 12), SID: uint32(i)}, DropInvalid, 1)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := m.Stats()
	t.Logf("%d streams seen, %d remembered (bound %d), %d evicted: heap %.0f MiB (bound %d MiB)",
		n, st.Streams, bound/StreamBytes, st.StreamEvictions, float64(heap)/(1<<20), bound>>20)
	if st.Streams > bound/StreamBytes {
		t.Errorf("%d streams remembered over a bound of %d", st.Streams, bound/StreamBytes)
	}
	if heap > bound {
		t.Errorf("heap %d MiB over the %d MiB bound", heap>>20, bound>>20)
	}
	if st.Drops[DropInvalid] != n {
		t.Errorf("drops %d, want %d: evictions lost counts", st.Drops[DropInvalid], n)
	}
	runtime.KeepAlive(m)
}

// BufferMemory bounds what the streams' buffers hold: past it, the oldest
// buffers go to their files early (FlushesMemory) and the bound holds.
func TestBufferMemoryBound(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	const bound = 64 << 10
	m := newManager(t, Config{Dir: dir, Now: clk.Now, BufferMemory: bound, BufferSize: 16 << 10})
	ts := clk.Now()
	for i := range 2000 {
		if !write(t, m, Key{MID: 1, SID: uint32(i % 200)}, ts, i, 200) {
			t.Fatalf("packet %d dropped", i)
		}
		if st := m.Stats(); st.BufferBytes > bound+16<<10 {
			t.Fatalf("after %d packets the buffers hold %d bytes, over the %d bound (and one buffer)", i+1, st.BufferBytes, bound)
		}
	}
	if st := m.Stats(); st.FlushesMemory == 0 {
		t.Errorf("no early flush for memory: %+v", st)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Packets != 2000 {
		t.Errorf("%d packets written, want 2000", st.Packets)
	}
}
