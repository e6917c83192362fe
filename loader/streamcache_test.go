package loader_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/loader"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// pinCPU runs the calling goroutine on cpu alone until the test ends:
// BPF_PROG_TEST_RUN runs the program on the caller's CPU, and the cache's
// slots are per CPU.
func pinCPU(t testing.TB, cpu int) {
	t.Helper()
	if cpu >= runtime.NumCPU() {
		t.Skipf("needs %d CPUs, have %d", cpu+1, runtime.NumCPU())
	}
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	})
}

// repin moves the pinned goroutine to another CPU.
func repin(t testing.TB, cpu int) {
	t.Helper()
	if cpu >= runtime.NumCPU() {
		t.Skipf("needs %d CPUs, have %d", cpu+1, runtime.NumCPU())
	}
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
}

// nextJiffy waits until the program's per-jiffy clock has moved on: a slot
// is taken only from a stream that has not counted in it this jiffy.
func nextJiffy() { time.Sleep(25 * time.Millisecond) }

// collider finds a stream of router1 (mid above 1000) whose cache slot is
// k's.
func collider(t *testing.T, p *loader.Program, k vocab.StreamKey) vocab.StreamKey {
	t.Helper()
	want, ok := p.Maps.StreamSlot(k)
	if !ok {
		t.Fatal("no stream cache")
	}
	for mid := uint32(1001); mid < 1001+1<<20; mid++ {
		c := vocab.StreamKey{Router: k.Router, MID: mid, SID: k.SID}
		if idx, _ := p.Maps.StreamSlot(c); idx == want {
			return c
		}
	}
	t.Fatal("no colliding stream found")
	return vocab.StreamKey{}
}

// tableEntry is the raw jm_streams entry, without the cache: ok is false
// when absent.
func tableEntry(t *testing.T, p *loader.Program, k vocab.StreamKey) (bpf.StreamValue, bool) {
	t.Helper()
	var v bpf.StreamValue
	key := bpf.StreamKey{Router: k.Router.As16(), Mid: k.MID, Sid: k.SID}
	err := p.Objects().JmStreams.Lookup(&key, &v)
	if err != nil && !strings.Contains(err.Error(), "not exist") {
		t.Fatal(err)
	}
	return v, err == nil
}

func packetsOf(v bpf.StreamValue) uint64 {
	var n uint64
	for _, x := range v.Inner {
		n += x
	}
	return n
}

// slotOn is the cache slot idx on cpu.
func slotOn(t *testing.T, p *loader.Program, k vocab.StreamKey, cpu int) bpf.StreamSlot {
	t.Helper()
	idx, _ := p.Maps.StreamSlot(k)
	var per []bpf.StreamSlot
	if err := p.Objects().JmStreamCache.Lookup(idx, &per); err != nil {
		t.Fatal(err)
	}
	return per[cpu]
}

func runN(t *testing.T, p *loader.Program, f []byte, n int, want vocab.Verdict) {
	t.Helper()
	for range n {
		v, err := p.Run(f)
		if err != nil || v != want {
			t.Fatalf("run: %v %v, want %v", v, err, want)
		}
	}
}

// wantStream checks a stream's exact counts through Stream and EachStream.
func wantStream(t *testing.T, p *loader.Program, k vocab.StreamKey, packets, bytesPer uint64) vocab.StreamStats {
	t.Helper()
	st, ok, err := p.Maps.Stream(k)
	if err != nil || !ok || st.Packets != packets || st.Bytes != packets*bytesPer || st.Inner[vocab.InnerIPv4] != packets {
		t.Fatalf("stream %v: %+v ok=%v err=%v, want %d packets of %d bytes", k, st, ok, err, packets, bytesPer)
	}
	found := 0
	err = p.Maps.EachStream(func(s vocab.Stream) {
		if s.StreamKey == k {
			found++
			if s.StreamStats != st {
				t.Errorf("EachStream %v: %+v, Stream %+v", k, s.StreamStats, st)
			}
		}
	})
	if err != nil || found != 1 {
		t.Fatalf("EachStream: %d entries of %v, err %v", found, k, err)
	}
	return st
}

// Streams that share a cache slot count exactly: the slot's holder in the
// slot, a newcomer in the table within the holder's jiffy, and a flush
// moves the holder's counts into the table when the newcomer takes the
// slot; a second CPU's slot adds to the same stream.
func TestStreamCacheCollisionsExact(t *testing.T) {
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	pinCPU(t, 0)
	a := k1(5, 1)
	b := collider(t, p, a)
	ma, mb := mirror(a.MID, a.SID, ipv4Echo()), mirror(b.MID, b.SID, ipv4Echo())
	fa, fb := frame(t, ma), frame(t, mb)
	per := uint64(len(ipv4Echo()))

	runN(t, p, fa, 5, drop)
	if v, ok := tableEntry(t, p, a); !ok || packetsOf(v) != 1 {
		t.Fatalf("table entry of a: %+v ok=%v, want its first frame only (the rest in the slot)", v, ok)
	}
	if s := slotOn(t, p, a, 0); s.Valid == 0 || s.Inner[vocab.InnerIPv4] != 4 {
		t.Fatalf("slot of a: %+v, want 4 packets", s)
	}
	sa := wantStream(t, p, a, 5, per)
	if v, _ := tableEntry(t, p, a); sa.FirstSeen != time.Duration(v.FirstSeenNs) || sa.LastSeen < sa.FirstSeen {
		t.Errorf("a first seen %v, last %v; table first seen %v", sa.FirstSeen, sa.LastSeen, v.FirstSeenNs)
	}

	// b in a's jiffy (most likely): into the table, the slot stays a's.
	runN(t, p, fb, 3, drop)
	wantStream(t, p, a, 5, per)
	wantStream(t, p, b, 3, per)

	// A jiffy later b takes the slot: a's 4 move into the table.
	nextJiffy()
	runN(t, p, fb, 4, drop)
	if v, ok := tableEntry(t, p, a); !ok || packetsOf(v) != 5 || v.Bytes != 5*per {
		t.Fatalf("table entry of a after the flush: %+v ok=%v, want all 5", v, ok)
	}
	// b took the slot at its first frame after a's jiffy: here, or
	// already above if a jiffy ended between a's frames and b's (a
	// loaded machine); either way slot and entry hold b's 7 once.
	vb, _ := tableEntry(t, p, b)
	if s := slotOn(t, p, a, 0); s.Valid == 0 || s.Key.Mid != b.MID || s.Inner[vocab.InnerIPv4]+packetsOf(vb) != 7 || s.Seq%2 != 0 || s.Seq < 4 {
		t.Fatalf("slot after b took it: %+v (b's entry %d), want b's packets beyond its entry's, seq even and moved", s, packetsOf(vb))
	}
	wantStream(t, p, a, 5, per)
	sb := wantStream(t, p, b, 7, per)
	if sb.LastSeen <= sa.LastSeen {
		t.Errorf("b last seen %v not after a's %v", sb.LastSeen, sa.LastSeen)
	}
	c, err := p.Maps.Counters()
	if err != nil || c[vocab.StatStreamNew] != 2 || c[vocab.StatJmirror] != 12 || c[vocab.StatStreamFull] != 0 {
		t.Fatalf("counters: stream_new %d jmirror %d stream_full %d, err %v", c[vocab.StatStreamNew], c[vocab.StatJmirror], c[vocab.StatStreamFull], err)
	}

	// The other CPU: a's frames take its own slot.
	repin(t, 1)
	runN(t, p, fa, 3, drop)
	wantStream(t, p, a, 8, per)
	wantStream(t, p, b, 7, per)
	if s := slotOn(t, p, a, 1); s.Key.Mid != a.MID || s.Inner[vocab.InnerIPv4] != 2 {
		t.Fatalf("CPU 1 slot: %+v, want a with 2", s)
	}
}

// A stream whose table entry userspace removes while a slot holds counts
// for it keeps them: readers see the slot alone, and its flush inserts the
// entry again. RetireIdle folds idle entries into their router's retired
// total; a slot's counts stay listed with its stream.
func TestStreamCacheRemovedEntry(t *testing.T) {
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	pinCPU(t, 0)
	a := k1(6, 1)
	b := collider(t, p, a)
	fa, fb := frame(t, mirror(a.MID, a.SID, ipv4Echo())), frame(t, mirror(b.MID, b.SID, ipv4Echo()))
	per := uint64(len(ipv4Echo()))

	runN(t, p, fa, 4, drop)
	key := bpf.StreamKey{Router: a.Router.As16(), Mid: a.MID, Sid: a.SID}
	if err := p.Objects().JmStreams.Delete(&key); err != nil {
		t.Fatal(err)
	}
	st := wantStream(t, p, a, 3, per) // the slot's, the table's first frame gone with it
	nextJiffy()
	runN(t, p, fb, 2, drop) // b takes the slot: a's 3 inserted again
	v, ok := tableEntry(t, p, a)
	if !ok || packetsOf(v) != 3 || time.Duration(v.FirstSeenNs) != st.FirstSeen {
		t.Fatalf("a's entry from its flushed slot: %+v ok=%v, want 3 packets first seen %v", v, ok, st.FirstSeen)
	}
	wantStream(t, p, a, 3, per)

	// Retire everything idle: a, and b's table entry (its first frame);
	// b's slot keeps the packet it holds.
	far := time.Duration(1<<62 - 1)
	n, err := p.Maps.RetireIdle(far, 100)
	if err != nil || n != 2 {
		t.Fatalf("retired %d, err %v; want 2", n, err)
	}
	if _, ok, err := p.Maps.Stream(a); err != nil || ok {
		t.Fatalf("a after retirement: ok=%v err=%v", ok, err)
	}
	wantStream(t, p, b, 1, per)
	tot, err := p.Maps.RouterTotals()
	if err != nil {
		t.Fatal(err)
	}
	if r := tot[router1].Retired; r.Packets != 4 || r.Bytes != 4*per || r.Inner[vocab.InnerIPv4] != 4 || tot[router1].Overflow.Packets != 0 {
		t.Fatalf("router totals %+v, want 4 retired", tot[router1])
	}
	// 6 sent, less a's first frame that went with the raw Delete above.
	if streams, folded := sumAll(t, p); streams+folded != 5 {
		t.Fatalf("streams %d + folded %d, want 5", streams, folded)
	}
	// a again: a new entry, the retired total unchanged.
	runN(t, p, fa, 1, drop)
	wantStream(t, p, a, 1, per)
	if tot2, _ := p.Maps.RouterTotals(); tot2[router1] != tot[router1] {
		t.Fatalf("router totals moved: %+v then %+v", tot[router1], tot2[router1])
	}
}

// sumAll is every packet the program counted for router1: streams (table
// and slots) plus the router's folded totals.
func sumAll(t *testing.T, p *loader.Program) (streams, folded uint64) {
	t.Helper()
	tot, err := p.Maps.EachStreamAndRouters(func(s vocab.Stream) {
		if s.Router == router1 {
			streams += s.Packets
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return streams, tot[router1].Sum().Packets
}

// A full table refuses new streams and their frames, and any slot flushed
// for them, go to the router's overflow total: every packet is counted
// once, and nothing the table held is evicted.
func TestStreamTableFullFolds(t *testing.T) {
	const capacity = 4
	p := loadProgramSized(t, loader.Config{DefaultAction: vocab.ActionCount}, capacity)
	pinCPU(t, 0)
	sent := uint64(0)
	for mid := uint32(1); mid <= capacity; mid++ {
		runN(t, p, frame(t, mirror(mid, 1, ipv4Echo())), 2, drop)
		sent += 2
	}
	extra := k1(100, 1)
	fe := frame(t, mirror(extra.MID, extra.SID, ipv4Echo()))
	runN(t, p, fe, 5, drop) // 1 to the overflow at once, 4 in a slot
	sent += 5
	streams, folded := sumAll(t, p)
	if streams+folded != sent || folded == 0 {
		t.Fatalf("streams %d + folded %d, want %d with some folded", streams, folded, sent)
	}
	for mid := uint32(1); mid <= capacity; mid++ {
		if _, ok := tableEntry(t, p, k1(mid, 1)); !ok {
			t.Fatalf("stream %d evicted from a full table", mid)
		}
	}
	// The slot's stream flushed by a collider: into the overflow too.
	nextJiffy()
	runN(t, p, frame(t, mirror(collider(t, p, extra).MID, extra.SID, ipv4Echo())), 1, drop)
	sent++
	streams, folded = sumAll(t, p)
	if _, ok, _ := p.Maps.Stream(extra); ok || streams+folded != sent || folded != 6 {
		t.Fatalf("after the flush: extra listed %v, streams %d + folded %d, want %d with 6 folded", ok, streams, folded, sent)
	}
	c, err := p.Maps.Counters()
	if err != nil || c[vocab.StatStreamFull] != 6 || c[vocab.StatStreamLost] != 0 {
		t.Fatalf("stream_full %d lost %d err %v, want 6 and 0", c[vocab.StatStreamFull], c[vocab.StatStreamLost], err)
	}
	// Room again once idle streams are retired: a new stream gets an entry.
	if n, err := p.Maps.RetireIdle(time.Duration(1<<62-1), capacity); err != nil || n == 0 {
		t.Fatalf("retire: %d %v", n, err)
	}
	runN(t, p, frame(t, mirror(200, 1, ipv4Echo())), 1, drop)
	sent++
	if _, ok := tableEntry(t, p, k1(200, 1)); !ok {
		t.Fatal("no entry for a new stream after retiring")
	}
	if streams, folded = sumAll(t, p); streams+folded != sent {
		t.Fatalf("after retiring: streams %d + folded %d, want %d", streams, folded, sent)
	}
}

// Readers racing traffic on two CPUs, with streams sharing slots and
// flushing every few jiffies, never count a packet twice and never see a
// stream's counts go down; once traffic stops they see every packet.
func TestStreamReadsDuringTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	p := loadProgram(t, loader.Config{DefaultAction: vocab.ActionCount})
	a := k1(7, 1)
	keys := []vocab.StreamKey{a, collider(t, p, a), k1(8, 1), k1(9, 2)}
	keys = append(keys, collider(t, p, keys[2]))
	fs := make([][]byte, len(keys))
	for i, k := range keys {
		fs[i] = frame(t, mirror(k.MID, k.SID, ipv4Echo()))
	}
	const perWorker = 4000
	var sent [8]atomic.Uint64 // per key: incremented before the run
	var wg sync.WaitGroup
	done := make(chan struct{})
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var set unix.CPUSet
			set.Set(w)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				errs <- err
				return
			}
			for i := range perWorker {
				k := (i/7 + w) % len(keys) // runs of 7: hits, then a switch
				sent[k].Add(1)
				if v, err := p.Run(fs[k]); err != nil || v != drop {
					errs <- err
					return
				}
				if i%200 == 199 {
					time.Sleep(5 * time.Millisecond) // let jiffies pass: flushes
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	last := make(map[vocab.StreamKey]uint64)
	reads := 0
	check := func(final bool) {
		got := make(map[vocab.StreamKey]uint64)
		if err := p.Maps.EachStream(func(s vocab.Stream) {
			if _, dup := got[s.StreamKey]; dup {
				t.Errorf("stream %v given twice", s.StreamKey)
			}
			got[s.StreamKey] = s.Packets
		}); err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			n := got[k]
			if n < last[k] {
				t.Fatalf("read %d: stream %v went down %d -> %d", reads, k, last[k], n)
			}
			if s := sent[i].Load(); n > s {
				t.Fatalf("read %d: stream %v counts %d, only %d sent (a flush counted twice)", reads, k, n, s)
			} else if final && n != s {
				t.Errorf("stream %v: %d counted, %d sent", k, n, s)
			}
			last[k] = n
		}
		reads++
	}
	deadline := time.After(60 * time.Second)
loop:
	for {
		select {
		case <-done:
			break loop
		case err := <-errs:
			t.Fatal(err)
		case <-deadline:
			t.Fatal("traffic did not finish in 60 s")
		default:
			check(false)
		}
	}
	check(true)
	t.Logf("%d reads during %d frames", reads, 2*perWorker)
	if reads < 10 {
		t.Errorf("only %d reads raced the traffic", reads)
	}
}

// A stream table pinned by a jmxdp before issue 17 is an LRU hash: the
// loader copies its entries into the plain hash that replaces it.
func TestPinnedStreamsFromLRU(t *testing.T) {
	testenv.RequireRoot(t)
	dir := pinDir(t)
	p, err := loader.Load(loader.Options{MaxStreams: 1024, PinDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	path := filepath.Join(dir, "jm_streams")
	spec, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	lru, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.LRUHash, KeySize: spec.KeySize(), ValueSize: spec.ValueSize(), MaxEntries: 1024})
	spec.Close()
	if err != nil {
		t.Fatal(err)
	}
	key := bpf.StreamKey{Router: router1.As16(), Mid: 3, Sid: 4}
	val := bpf.StreamValue{Bytes: 500, FirstSeenNs: 10, LastSeenNs: 20}
	val.Inner[vocab.InnerIPv4] = 5
	if err := lru.Put(&key, &val); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := lru.Pin(path); err != nil {
		t.Fatal(err)
	}
	lru.Close()
	var logs bytes.Buffer
	p, err = loader.Load(loader.Options{MaxStreams: 1024, PinDir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if typ := p.Objects().JmStreams.Type(); typ != ebpf.Hash {
		t.Fatalf("stream table type %v after migration", typ)
	}
	st, ok, err := p.Maps.Stream(k1(3, 4))
	if err != nil || !ok || st.Packets != 5 || st.Bytes != 500 || st.FirstSeen != 10 || st.LastSeen != 20 {
		t.Fatalf("migrated stream %+v ok=%v err=%v", st, ok, err)
	}
	if !strings.Contains(logs.String(), "migrated its entries") || !strings.Contains(logs.String(), "map=jm_streams") {
		t.Errorf("log: %s", logs.String())
	}
}
