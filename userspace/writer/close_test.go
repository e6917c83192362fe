package writer

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openFDs counts the process's open descriptors.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// closeScenario writes streams in every state Close meets, closes them with
// the given number of workers, and returns what came out: each completed
// file's name (under dir) and packets, the hook's view, the totals, and
// the most descriptors open during Close above those open before New.
type closeOutcome struct {
	files   map[string][]int
	hooked  map[string]int64
	stats   Stats
	peakFDs int
}

const scenarioMaxOpen = 40

func closeScenario(t *testing.T, workers int) closeOutcome {
	dir := outDir(t)
	clk := newClock()
	out := closeOutcome{files: map[string][]int{}, hooked: map[string]int64{}}
	var mu sync.Mutex
	base := openFDs(t)
	hook := func(c Completed) {
		mu.Lock() // one ReadDir of /proc at a time: its own descriptor
		defer mu.Unlock()
		if _, dup := out.hooked[c.Path]; dup {
			t.Errorf("hook told twice of %s", c.Path)
		}
		out.hooked[c.Path] = c.Size
		if fi, err := os.Lstat(c.Path); err != nil || fi.Size() != c.Size {
			t.Errorf("hook told of %s (%d bytes) before it is so: %v %v", c.Path, c.Size, fi, err)
		}
	}
	m := newManager(t, Config{Dir: dir, Now: clk.Now, MaxOpen: scenarioMaxOpen, CloseWorkers: workers,
		RotateSize: 3000, OnComplete: hook})
	const n = 600
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = Key{MID: uint32(i % 7), SID: uint32(i)}
	}
	seq := 0
	// Round 1: a packet each; the files of all but the last MaxOpen are
	// closed (evicted) with nothing buffered.
	for _, k := range keys {
		write(t, m, k, clk.Now(), seq, 100)
		seq++
	}
	// Round 2: even streams buffer a packet in a closed file (Close must
	// reopen it), every tenth fills files past RotateSize (rotations).
	for i, k := range keys {
		if i%2 == 0 {
			write(t, m, k, clk.Now(), seq, 100)
			seq++
		}
		if i%10 == 0 {
			for range 40 {
				write(t, m, k, clk.Now(), seq, 100)
				seq++
			}
		}
		clk.Advance(time.Microsecond)
	}
	// A closed file with a packet buffered, deleted behind the writer's
	// back: Close starts it afresh with what is buffered.
	vanish := keys[2]
	for _, p := range parts(t, dir) {
		if strings.Contains(p, fmt.Sprintf("/sid-%d/", vanish.SID)) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := m.Stats(); st.OpenFiles != scenarioMaxOpen || st.Buffered == 0 {
		t.Fatalf("before Close: %+v", st)
	}
	// Count the descriptors while Close runs.
	stop, sampled := make(chan struct{}), make(chan int)
	go func() {
		peak := 0
		for {
			select {
			case <-stop:
				sampled <- peak
				return
			default:
				peak = max(peak, openFDs(t)-base)
			}
		}
	}()
	err := m.Close()
	close(stop)
	out.peakFDs = <-sampled
	if err != nil {
		t.Fatal(err)
	}
	out.stats = m.Stats()
	if p := parts(t, dir); len(p) != 0 {
		t.Errorf(".part files after Close: %v", p)
	}
	for _, k := range keys {
		for _, f := range completed(t, dir, k) {
			rel, _ := filepath.Rel(dir, f)
			out.files[rel] = readSeqs(t, f, k)
		}
	}
	hooked := map[string]int64{}
	for p, size := range out.hooked {
		rel, _ := filepath.Rel(dir, p)
		hooked[rel] = size
	}
	out.hooked = hooked
	return out
}

// TestParallelClose: Close completes every file on CloseWorkers goroutines
// with the same outcome, file by file and count by count, as one after
// another, with files open, closed with and without a buffer, rotated and
// vanished; the hook hears of each once, after its rename; and it never
// holds more than MaxOpen stream files open (go test -race checks that
// the workers share nothing with the bookkeeping).
func TestParallelClose(t *testing.T) {
	seq := closeScenario(t, 1)
	par := closeScenario(t, 8)
	if len(seq.files) < 600 || !maps.EqualFunc(seq.files, par.files, slices.Equal[[]int]) {
		t.Errorf("one after another: %d files, in parallel: %d; differ", len(seq.files), len(par.files))
	}
	for _, o := range []closeOutcome{seq, par} {
		var files []string
		for f := range o.files {
			files = append(files, f)
		}
		if hooked := slices.Sorted(maps.Keys(o.hooked)); !slices.Equal(hooked, slices.Sorted(slices.Values(files))) {
			t.Errorf("hook heard of %d files, %d completed", len(hooked), len(files))
		}
		if o.stats.Buffered != 0 || o.stats.OpenFiles != 0 || o.stats.FilesCompleted != uint64(len(o.files)) || o.stats.Reopens < 290 {
			t.Errorf("stats %+v", o.stats)
		}
		// The Manager's lock file, and the sampler's ReadDir of /proc.
		if o.peakFDs > scenarioMaxOpen+2 {
			t.Errorf("%d descriptors open during Close, MaxOpen %d", o.peakFDs, scenarioMaxOpen)
		}
	}
	// The counts are the same, but for the few files evicted to leave
	// each worker room for one it reopens.
	if d := int(par.stats.Evictions) - int(seq.stats.Evictions); d < -8 || d > 8 {
		t.Errorf("%d evictions in parallel, %d one after another", par.stats.Evictions, seq.stats.Evictions)
	}
	t.Logf("%d files; parallel: peak %d descriptors, %d reopened, %d evicted first; one after another: peak %d",
		len(par.files), par.peakFDs, par.stats.Reopens, int(par.stats.Evictions)-int(seq.stats.Evictions), seq.peakFDs)
	par.stats.Evictions = seq.stats.Evictions
	if seq.stats != par.stats {
		t.Errorf("stats differ:\n one after another %+v\n in parallel       %+v", seq.stats, par.stats)
	}
	var vanished []int
	for f, seqs := range par.files {
		if strings.Contains(f, "/sid-2/") {
			vanished = append(vanished, seqs...)
		}
	}
	if len(vanished) != 1 {
		t.Errorf("the vanished file's stream: files hold %v, want its buffered packet", vanished)
	}
}

// TestDefaultCloseWorkers: the documented bound.
func TestDefaultCloseWorkers(t *testing.T) {
	if w := DefaultCloseWorkers(); w < 1 || w > 16 {
		t.Errorf("DefaultCloseWorkers %d, want 1..16", w)
	}
	m := &Manager{cfg: Config{MaxOpen: 3}}
	if w := m.closeWorkers(100); w != 3 {
		t.Errorf("%d workers with MaxOpen 3", w)
	}
	m.cfg.CloseWorkers = 2
	if w := m.closeWorkers(100); w != 2 {
		t.Errorf("%d workers with CloseWorkers 2", w)
	}
	if w := m.closeWorkers(0); w != 1 {
		t.Errorf("%d workers for no file", w)
	}
}

// TestRenameNoReplace: an existing name is never replaced, on tmpfs and
// on the test's disk.
func TestRenameNoReplace(t *testing.T) {
	for name, dir := range map[string]string{"disk": outDir(t), "tmpfs": mountTmpfs(t, "1m")} {
		a, b := filepath.Join(dir, "a.pcapng.part"), filepath.Join(dir, "b.pcapng")
		os.WriteFile(a, []byte("a"), 0o600)
		os.WriteFile(b, []byte("b"), 0o600)
		if err := renameNoReplace(a, b); !os.IsExist(err) {
			t.Errorf("%s: rename over a file: %v", name, err)
		}
		if got, _ := os.ReadFile(b); string(got) != "b" {
			t.Errorf("%s: replaced: %q", name, got)
		}
		if got, err := renameNoClobber(a, b); err != nil || got != filepath.Join(dir, "b-1.pcapng") {
			t.Errorf("%s: renameNoClobber: %q %v", name, got, err)
		}
		if _, err := os.Lstat(a); !os.IsNotExist(err) {
			t.Errorf("%s: source still there: %v", name, err)
		}
	}
}

// raiseNoFile lets the process open n more files (root may raise the hard
// limit up to fs.nr_open); it reports whether it could.
func raiseNoFile(t testing.TB, n uint64) bool {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return true
	}
	want := syscall.Rlimit{Cur: n, Max: max(lim.Max, n)}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) == nil
}

// BenchmarkClose times Close of 100k streams with a .part file and a
// packet buffered each (as TestMemory makes them), one after another and
// on DefaultCloseWorkers, on the test's disk and on tmpfs, with the files
// open (as with the default max_open_files: as many as RLIMIT_NOFILE
// allows) and closed to stay under MaxOpen (Close reopens each). Each
// iteration makes the files again: run with -benchtime=1x or 3x.
// docs/operating.md quotes the figures.
func BenchmarkClose(b *testing.B) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	fsys := map[string]func(testing.TB) string{
		"disk":  func(tb testing.TB) string { return outDir(tb) },
		"tmpfs": func(tb testing.TB) string { return mountTmpfs(tb, "4g,nr_inodes=0") },
	}
	for _, fs := range []string{"disk", "tmpfs"} {
		for _, state := range []string{"open", "closed"} {
			for _, workers := range []int{1, DefaultCloseWorkers()} {
				b.Run(fmt.Sprintf("fs=%s/files=%s/workers=%d", fs, state, workers), func(b *testing.B) {
					n, maxOpen := n, 8
					if state == "open" {
						if !raiseNoFile(b, uint64(n+1024)) {
							// Without CAP_SYS_RESOURCE: as many as the limit allows.
							var lim syscall.Rlimit
							syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
							syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
							n = min(n, int(lim.Max)-1024)
						}
						maxOpen = n + 64
					}
					var total time.Duration
					for range b.N {
						b.StopTimer()
						dir := fsys[fs](b)
						m, err := New(Config{Dir: dir, MaxOpen: maxOpen, CloseWorkers: workers, FlushInterval: time.Hour})
						if err != nil {
							b.Fatal(err)
						}
						t0 := time.Now()
						for pass := range 2 {
							if pass == 1 && state == "open" {
								break
							}
							// Closed: the second packet waits in a closed file's buffer.
							for i := range n {
								write(b, m, Key{MID: uint32(i % 16), SID: uint32(i)}, t0, i, 100)
							}
						}
						// Written back before the clock starts: the kernel's
						// writeback of the files just made is not Close's work.
						syscall.Sync()
						b.StartTimer()
						start := time.Now()
						if err := m.Close(); err != nil {
							b.Fatal(err)
						}
						total += time.Since(start)
						b.StopTimer()
						if st := m.Stats(); st.FilesCompleted != uint64(n) {
							b.Fatalf("completed %d of %d", st.FilesCompleted, n)
						}
						os.RemoveAll(dir) // before the next iteration's files
					}
					perFile := total / time.Duration(b.N*n)
					b.ReportMetric(float64(n), "files")
					b.ReportMetric(float64(perFile.Nanoseconds())/1000, "µs/file")
					b.ReportMetric((perFile * 738000).Seconds(), "s/738k")
				})
			}
		}
	}
}
