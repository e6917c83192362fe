package writer

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// waitRecovered waits for m's background recovery to be over.
func waitRecovered(t testing.TB, m *Manager) {
	t.Helper()
	if m.rec == nil {
		return
	}
	select {
	case <-m.rec.done:
	case <-time.After(time.Minute):
		t.Fatalf("recovery not over after a minute: %d left", m.rec.left())
	}
}

// oldPart writes an earlier run's .part file of stream k named at ts with
// the given packets (sequence numbers), by pcapng.Writer as a run would.
func oldPart(t testing.TB, dir string, k Key, ts time.Time, seqs ...int) string {
	t.Helper()
	p := filepath.Join(streamDirOf(dir, k), ts.UTC().Format(nameLayout)+fileExt+partExt)
	w, err := pcapng.Create(p, k.MID, k.SID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seqs {
		if err := w.WritePacket(ts, router, pcapng.LinkRawIP, packet(k, s, 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// gate holds the background recovery: every file waits in recoverHook
// until open is closed; entered counts the files that got there.
type gate struct {
	open    chan struct{}
	mu      sync.Mutex
	entered []string
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) hook(part string) {
	g.mu.Lock()
	g.entered = append(g.entered, part)
	g.mu.Unlock()
	<-g.open
}

func (g *gate) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.entered)
}

// TestBackgroundRecovery: New returns while an earlier run's .part files
// (valid, torn, empty, header only, not pcapng) wait to be completed, and
// the Manager writes at once, also into their directories and under a name
// one of them holds; then every old file is completed as before (torn tail
// cut, empty ones removed, the foreign one left) and told to OnComplete
// once, and no file of this run is touched.
func TestBackgroundRecovery(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	old := clk.Now().Add(-time.Hour)
	const valid = 150
	want := map[string][]int{} // final name: its packets
	var torn []string
	for i := range valid {
		k := Key{7, uint32(i)}
		p := oldPart(t, dir, k, old, i, i+1000)
		want[strings.TrimSuffix(p, partExt)] = []int{i, i + 1000}
		if i%10 == 0 {
			// A block cut short by the crash: the first 100 bytes of
			// another packet block (the last one's, by its trailer).
			b, _ := os.ReadFile(p)
			last := len(b) - int(binary.LittleEndian.Uint32(b[len(b)-4:]))
			f, _ := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(b[last : last+100])
			f.Close()
			torn = append(torn, p)
		}
	}
	// Stream (7, 0)'s next file would be named as its old one: this run
	// takes another name.
	clash := oldPart(t, dir, Key{7, 0}, clk.Now(), 5)
	want[strings.TrimSuffix(clash, partExt)] = []int{5}
	var empties []string
	for i := range 20 {
		k := Key{9, uint32(i)}
		if i%2 == 0 {
			empties = append(empties, oldPart(t, dir, k, old)) // a section header, no packet
		} else {
			p := filepath.Join(streamDirOf(dir, k), old.Format(nameLayout)+fileExt+partExt)
			os.MkdirAll(filepath.Dir(p), 0o700)
			os.WriteFile(p, nil, 0o600) // created, never written
			empties = append(empties, p)
		}
	}
	foreign := filepath.Join(streamDirOf(dir, Key{9, 99}), "x.pcapng.part")
	os.MkdirAll(filepath.Dir(foreign), 0o700)
	os.WriteFile(foreign, []byte("not a capture, and long enough to be read"), 0o600)
	total := valid + 1 + len(empties) + 1

	var mu sync.Mutex
	hooked := map[string]int{}
	g := newGate()
	var logs testenv.LogBuffer
	m := newManager(t, Config{Dir: dir, Now: clk.Now, CloseWorkers: 4, Logger: logs.Logger(), recoverHook: g.hook,
		OnComplete: func(c Completed) {
			mu.Lock()
			hooked[c.Path]++
			mu.Unlock()
		}})
	// Capturing while nothing is recovered yet.
	for g.count() < 4 {
		time.Sleep(time.Millisecond)
	}
	if st := m.Stats(); st.RecoveryPending != total || st.RecoveredFiles != 0 {
		t.Fatalf("before recovery: %+v, %d parts", st, total)
	}
	mine := []Key{{7, 0}, {7, 1}, {8, 1}}
	for i, k := range mine {
		if !write(t, m, k, clk.Now(), 100+i, 300) {
			t.Fatalf("%v: write during recovery dropped", k)
		}
	}
	m.Tick()
	var current []string
	for _, ss := range m.Streams() {
		if ss.CurrentFile != "" {
			current = append(current, ss.CurrentFile)
		}
	}
	if len(current) != len(mine) || slices.Contains(current, clash) {
		t.Fatalf("this run's files %v (the old one %s)", current, clash)
	}
	if m.Stats().RecoveryPending != total {
		t.Fatal("recovered past the gate")
	}
	close(g.open)
	waitRecovered(t, m)

	st := m.Stats()
	if st.RecoveredFiles != valid+1 || st.RecoveredBytes != int64(100*len(torn)) || st.RecoveryPending != 0 {
		t.Errorf("stats %+v; want %d files, %d bytes cut", st, valid+1, 100*len(torn))
	}
	for final, seqs := range want {
		var k Key
		fmt.Sscanf(strings.TrimPrefix(final, dir), "/mid-%d/sid-%d/", &k.MID, &k.SID)
		if got := readSeqs(t, final, k); !slices.Equal(got, seqs) {
			t.Errorf("%s holds %v, want %v", final, got, seqs)
		}
		if hooked[final] != 1 {
			t.Errorf("%s told to OnComplete %d times", final, hooked[final])
		}
	}
	if len(hooked) != len(want) {
		t.Errorf("OnComplete heard of %d files, %d recovered", len(hooked), len(want))
	}
	for _, p := range empties {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("empty %s not removed: %v", p, err)
		}
	}
	left := parts(t, dir)
	slices.Sort(left)
	slices.Sort(current)
	if wantLeft := slices.Sorted(slices.Values(append([]string{foreign}, current...))); !slices.Equal(left, wantLeft) {
		t.Errorf(".part files after recovery %v, want %v", left, wantLeft)
	}
	info := logs.Lines("level=INFO")
	if len(info) != 2 || !strings.Contains(info[0], fmt.Sprintf("found=%d", total)) || !strings.Contains(info[1], fmt.Sprintf("completed=%d", valid+1)) ||
		!strings.Contains(info[1], fmt.Sprintf("removed_empty=%d", len(empties))) || !strings.Contains(info[1], "failed=1") || !strings.Contains(info[1], "left=0") {
		t.Errorf("log %q", info)
	}

	// This run's files complete at Close, the clashing one beside the old.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for i, k := range mine {
		final := strings.TrimSuffix(current[slices.IndexFunc(current, func(p string) bool {
			return strings.Contains(p, fmt.Sprintf("/mid-%d/sid-%d/", k.MID, k.SID))
		})], partExt)
		if got := readSeqs(t, final, k); !slices.Equal(got, []int{100 + i}) {
			t.Errorf("%v: this run's file %s holds %v", k, final, got)
		}
	}
	if got, clashed := completed(t, dir, Key{7, 0}), strings.TrimSuffix(clash, fileExt+partExt)+"-1"+fileExt; len(got) != 3 || !slices.Contains(got, clashed) {
		t.Errorf("stream (7, 0): %v, want the old, the clashing old and this run's %s", got, clashed)
	}
}

// TestCloseStopsRecovery: Close during the recovery lets the files being
// repaired finish and leaves the rest as .part; the next start completes
// them, each once.
func TestCloseStopsRecovery(t *testing.T) {
	dir := outDir(t)
	old := time.Now().Add(-time.Hour)
	const n = 50
	for i := range n {
		oldPart(t, dir, Key{3, uint32(i)}, old, i)
	}
	g := newGate()
	var logs testenv.LogBuffer
	m, err := New(Config{Dir: dir, CloseWorkers: 2, recoverHook: g.hook, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	for g.count() < 2 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan error)
	go func() { closed <- m.Close() }()
	for !m.rec.stop.Load() {
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned while recovery was renaming: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.open)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	st := m.Stats()
	if g.count() != 2 || st.RecoveredFiles != 2 || st.RecoveryPending != 0 {
		t.Errorf("%d files begun, stats %+v", g.count(), st)
	}
	if p := parts(t, dir); len(p) != n-2 {
		t.Errorf("%d .part files left, want %d", len(p), n-2)
	}
	if info := logs.Lines("level=INFO"); len(info) != 2 || !strings.Contains(info[1], "stopped") || !strings.Contains(info[1], fmt.Sprintf("left=%d", n-2)) {
		t.Errorf("log %q", info)
	}

	m2 := newManager(t, Config{Dir: dir})
	waitRecovered(t, m2)
	if st := m2.Stats(); st.RecoveredFiles != n-2 {
		t.Errorf("second start recovered %d", st.RecoveredFiles)
	}
	for i := range n {
		k := Key{3, uint32(i)}
		if f := completed(t, dir, k); len(f) != 1 || !slices.Equal(readSeqs(t, f[0], k), []int{i}) {
			t.Errorf("%v: %v", k, f)
		}
	}
	if p := parts(t, dir); len(p) != 0 {
		t.Errorf(".part files left: %v", p)
	}
}

// BenchmarkRecovery: an earlier run killed with 200k streams, a .part
// file each (one packet written out), on the test's disk. It reports how
// long New takes to list them (the walk: capture waits for it) and how
// long the background recovery then takes, one file after another and on
// DefaultCloseWorkers. Run with -benchtime=1x; docs/operating.md quotes
// the figures.
func BenchmarkRecovery(b *testing.B) {
	n := 200000
	if testing.Short() {
		n = 20000
	}
	dir := outDir(b)
	m, err := New(Config{Dir: dir, MaxOpen: 8})
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	for i := range n {
		write(b, m, Key{MID: uint32(i % 16), SID: uint32(i)}, t0, i, 100)
	}
	m.abandon(b)
	// unfinish makes the completed files .part again, as the kill left them.
	unfinish := func() {
		files, _ := filepath.Glob(filepath.Join(dir, "mid-*", "sid-*", "*"+fileExt))
		for _, f := range files {
			if err := os.Rename(f, f+partExt); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, workers := range []int{1, DefaultCloseWorkers()} {
		b.Run(fmt.Sprintf("parts=%d/workers=%d", n, workers), func(b *testing.B) {
			var walk, recover time.Duration
			for range b.N {
				b.StopTimer()
				unfinish()
				b.StartTimer()
				start := time.Now()
				m, err := New(Config{Dir: dir, CloseWorkers: workers})
				if err != nil {
					b.Fatal(err)
				}
				walk += time.Since(start)
				waitRecovered(b, m)
				recover += time.Since(start)
				b.StopTimer()
				if st := m.Stats(); st.RecoveredFiles != uint64(n) {
					b.Fatalf("recovered %d of %d", st.RecoveredFiles, n)
				}
				m.Close()
			}
			b.ReportMetric(walk.Seconds()/float64(b.N), "s-walk")
			b.ReportMetric(recover.Seconds()/float64(b.N), "s-recovery")
		})
	}
}
