package retention

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// base is the tests' "now" for files: mtimes are base plus minutes.
var base = time.Date(2025, 3, 4, 5, 0, 0, 0, time.UTC)

// put writes a file of size bytes at DIR/rel, modified at base+minute.
func put(t *testing.T, dir, rel string, size int, minute int) string {
	t.Helper()
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	mt := base.Add(time.Duration(minute) * time.Minute)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	return p
}

// name is a completed file's name for minute m.
func name(m int) string {
	return base.Add(time.Duration(m)*time.Minute).Format("20060102T150405.000000000Z") + ".pcapng"
}

// files lists the regular files and symlinks under dir, relative, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func newKeeper(t *testing.T, cfg Config) *Keeper {
	t.Helper()
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return base.Add(time.Hour) }
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k.Start()
	t.Cleanup(func() { k.Close() })
	return k
}

// settle waits for the first walk, then for two ticks to pass.
func settle(t *testing.T, k *Keeper) {
	t.Helper()
	testenv.WaitFor(t, "the first walk", 10*time.Second, func() bool { return k.Stats().Scanned })
	time.Sleep(5 * k.cfg.Interval)
}

func sorted(s ...string) []string {
	for i := range s {
		s[i] = filepath.FromSlash(s[i])
	}
	slices.Sort(s)
	return s
}

// TestIndexFromExistingTree: the first walk indexes exactly the completed
// files of an earlier run: not .part files, not other names, not what is
// outside the mid-*/sid-* layout.
func TestIndexFromExistingTree(t *testing.T) {
	dir := t.TempDir()
	put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	put(t, dir, "mid-1/sid-1/"+name(2), 200, 2)
	put(t, dir, "mid-1/sid-2/"+name(1), 300, 1)
	put(t, dir, "mid-7/sid-3/"+name(1), 400, 1)
	put(t, dir, "mid-7/sid-3/"+name(2)+".part", 5000, 2)
	put(t, dir, "mid-7/sid-3/notes.txt", 5000, 2)
	put(t, dir, "mid-7/x.pcapng", 5000, 2)
	put(t, dir, "other/sid-1/"+name(1), 5000, 2)
	put(t, dir, "mid-01/sid-1/"+name(1), 5000, 2)
	put(t, dir, ".jmxdp-writer.lock", 0, 2)
	k := newKeeper(t, Config{Dir: dir})
	settle(t, k)
	if st := k.Stats(); st.Files != 4 || st.Bytes != 1000 {
		t.Errorf("indexed %d files, %d bytes; want 4, 1000", st.Files, st.Bytes)
	}
}

// TestMaxBytesAll: over the budget, the oldest files of any stream go
// first, until all the completed files fit; each is logged and counted.
func TestMaxBytesAll(t *testing.T) {
	dir := t.TempDir()
	put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	put(t, dir, "mid-2/sid-1/"+name(2), 100, 2)
	put(t, dir, "mid-1/sid-1/"+name(3), 100, 3)
	put(t, dir, "mid-2/sid-1/"+name(4), 100, 4)
	put(t, dir, "mid-1/sid-2/"+name(5), 100, 5)
	var log testenv.LogBuffer
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 250, Logger: log.Logger()})
	settle(t, k)
	want := sorted("mid-2/sid-1/"+name(4), "mid-1/sid-2/"+name(5))
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	st := k.Stats()
	if st.DeletedFiles[MaxBytes] != 3 || st.DeletedBytes[MaxBytes] != 300 || st.DeletedFiles[MaxAge] != 0 || st.Bytes != 200 {
		t.Errorf("stats %+v", st)
	}
	lines := log.Lines("deleted a completed stream file")
	if len(lines) != 3 || !strings.Contains(lines[0], "mid-1/sid-1/"+name(1)) || !strings.Contains(lines[0], "reason=max_bytes") {
		t.Errorf("log lines %q", lines)
	}

	// A completion pushes it over again: its oldest goes.
	p := put(t, dir, "mid-3/sid-1/"+name(6), 100, 6)
	k.Add(p, 100, base.Add(6*time.Minute))
	testenv.WaitFor(t, "the deletion", 10*time.Second, func() bool { return k.Stats().DeletedFiles[MaxBytes] == 4 })
	want = sorted("mid-1/sid-2/"+name(5), "mid-3/sid-1/"+name(6))
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
}

// TestMaxBytesStream: each stream is bounded on its own; a stream within
// its budget keeps its files, however old.
func TestMaxBytesStream(t *testing.T) {
	dir := t.TempDir()
	put(t, dir, "mid-1/sid-1/"+name(1), 100, 1) // old, but its stream fits
	put(t, dir, "mid-2/sid-1/"+name(2), 100, 2)
	put(t, dir, "mid-2/sid-1/"+name(3), 100, 3)
	put(t, dir, "mid-2/sid-1/"+name(4), 100, 4)
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 200, Scope: Stream})
	settle(t, k)
	want := sorted("mid-1/sid-1/"+name(1), "mid-2/sid-1/"+name(3), "mid-2/sid-1/"+name(4))
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if st := k.Stats(); st.DeletedFiles[MaxBytes] != 1 {
		t.Errorf("stats %+v", st)
	}
	// Its stream over now: mid-1's oldest goes, not mid-2's.
	p := put(t, dir, "mid-1/sid-1/"+name(5), 150, 5)
	k.Add(p, 150, base.Add(5*time.Minute))
	testenv.WaitFor(t, "the deletion", 10*time.Second, func() bool { return k.Stats().DeletedFiles[MaxBytes] == 2 })
	want = sorted("mid-1/sid-1/"+name(5), "mid-2/sid-1/"+name(3), "mid-2/sid-1/"+name(4))
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
}

// TestMaxAge: a file completed longer than max_age ago goes, checked on
// the tick as the clock moves.
func TestMaxAge(t *testing.T) {
	dir := t.TempDir()
	put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	put(t, dir, "mid-1/sid-1/"+name(20), 100, 20)
	put(t, dir, "mid-2/sid-1/"+name(40), 100, 40)
	var mu sync.Mutex
	now := base.Add(30 * time.Minute)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	var log testenv.LogBuffer
	k := newKeeper(t, Config{Dir: dir, MaxAge: 15 * time.Minute, Now: clock, Logger: log.Logger()})
	settle(t, k)
	want := sorted("mid-1/sid-1/"+name(20), "mid-2/sid-1/"+name(40))
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	mu.Lock()
	now = base.Add(50 * time.Minute)
	mu.Unlock()
	testenv.WaitFor(t, "the second deletion", 10*time.Second, func() bool { return k.Stats().DeletedFiles[MaxAge] == 2 })
	if got, want := files(t, dir), sorted("mid-2/sid-1/"+name(40)); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
	if st := k.Stats(); st.DeletedBytes[MaxAge] != 200 || st.DeletedFiles[MaxBytes] != 0 {
		t.Errorf("stats %+v", st)
	}
	if l := log.Lines("reason=max_age"); len(l) != 2 {
		t.Errorf("log lines %q", l)
	}
}

// TestNeverPart: a .part file, however old and large, is never deleted,
// found by the walk or named by Add.
func TestNeverPart(t *testing.T) {
	dir := t.TempDir()
	part := put(t, dir, "mid-1/sid-1/"+name(1)+".part", 10000, 1)
	put(t, dir, "mid-1/sid-1/"+name(2), 100, 2)
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 1, MaxAge: time.Minute, Scope: Stream})
	k.Add(part, 10000, base)
	settle(t, k)
	if got, want := files(t, dir), sorted("mid-1/sid-1/"+name(1)+".part"); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
}

// TestSymlinksNotFollowed: symlinks planted in the output directory (to a
// file, to a stream directory, to a mid directory) are never followed:
// nothing outside is deleted, even with a budget of one byte.
func TestSymlinksNotFollowed(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := put(t, outside, "victim.pcapng", 100, 0)
	put(t, outside, "sid-1/"+name(0), 100, 0)
	put(t, outside, "sub/"+name(0), 100, 0)
	put(t, dir, "mid-1/sid-1/"+name(5), 100, 5)
	must(t, os.Symlink(victim, filepath.Join(dir, "mid-1/sid-1/"+name(1))))
	must(t, os.Symlink(outside, filepath.Join(dir, "mid-9")))
	must(t, os.MkdirAll(filepath.Join(dir, "mid-2"), 0o700))
	must(t, os.Symlink(filepath.Join(outside, "sub"), filepath.Join(dir, "mid-2/sid-2")))
	var log testenv.LogBuffer
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 1, Logger: log.Logger()})
	// Completions named through the symlinks (they cannot come from the
	// writer, but an index must not trust them).
	k.Add(filepath.Join(dir, "mid-9/sid-1/"+name(0)), 100, base)
	k.Add(filepath.Join(dir, "mid-2/sid-2/"+name(0)), 100, base)
	k.Add(filepath.Join(dir, "mid-1/sid-1/"+name(1)), 100, base)
	settle(t, k)
	testenv.WaitFor(t, "the real file's deletion", 10*time.Second, func() bool { return k.Stats().DeletedFiles[MaxBytes] == 1 })
	wantOutside := sorted("sid-1/"+name(0), "sub/"+name(0), "victim.pcapng")
	if got := files(t, outside); !slices.Equal(got, wantOutside) {
		t.Errorf("outside the output directory: left %v, want %v", got, wantOutside)
	}
	// The symlinks themselves are left alone too.
	for _, l := range []string{"mid-1/sid-1/" + name(1), "mid-9", "mid-2/sid-2"} {
		if fi, err := os.Lstat(filepath.Join(dir, l)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s: %v, %v", l, fi, err)
		}
	}
	if st := k.Stats(); st.DeletedFiles[MaxBytes] != 1 || st.Errors != 3 {
		t.Errorf("stats %+v: want 1 deletion, 3 refusals", st)
	}
	if l := log.Lines("cannot delete"); len(l) != 3 {
		t.Errorf("log lines %q", l)
	}
}

// TestFileSwappedForSymlink: a file indexed, then replaced by a symlink,
// is refused at deletion time.
func TestFileSwappedForSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := put(t, outside, "victim", 100, 0)
	hold := make(chan struct{})
	p := put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	put(t, dir, "mid-1/sid-1/"+name(2), 100, 2)
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 150, Hold: func(string) bool {
		select {
		case <-hold:
			return false
		default:
			return true
		}
	}})
	settle(t, k)
	must(t, os.Remove(p))
	must(t, os.Symlink(victim, p))
	close(hold)
	testenv.WaitFor(t, "the refusal", 10*time.Second, func() bool { return k.Stats().Errors == 1 })
	if _, err := os.Stat(victim); err != nil {
		t.Error(err)
	}
	if _, err := os.Lstat(p); err != nil {
		t.Error(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHoldWaits: a held file (hand-off pending) is not deleted, nor any
// newer one in its place: retention waits, then deletes it once released.
func TestHoldWaits(t *testing.T) {
	dir := t.TempDir()
	first := put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	put(t, dir, "mid-1/sid-1/"+name(2), 100, 2)
	put(t, dir, "mid-1/sid-1/"+name(3), 100, 3)
	var mu sync.Mutex
	held := map[string]bool{first: true}
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 150, Hold: func(p string) bool {
		mu.Lock()
		defer mu.Unlock()
		return held[p]
	}})
	settle(t, k)
	if got := files(t, dir); len(got) != 3 || k.Stats().DeletedFiles[MaxBytes] != 0 {
		t.Fatalf("deleted while the oldest is held: left %v", got)
	}
	mu.Lock()
	delete(held, first)
	mu.Unlock()
	testenv.WaitFor(t, "the deletions", 10*time.Second, func() bool { return k.Stats().DeletedFiles[MaxBytes] == 2 })
	if got, want := files(t, dir), sorted("mid-1/sid-1/"+name(3)); !slices.Equal(got, want) {
		t.Errorf("left %v, want %v", got, want)
	}
}

// TestIndexFollowsOthers: a file moved away (after its hand-off, Check) or
// deleted by someone else (found by the next walk) leaves the index
// without being counted as deleted; a completion dropped for a full queue
// is counted and indexed by the next walk.
func TestIndexFollowsOthers(t *testing.T) {
	dir := t.TempDir()
	a := put(t, dir, "mid-1/sid-1/"+name(1), 100, 1)
	b := put(t, dir, "mid-1/sid-1/"+name(2), 100, 2)
	c := put(t, dir, "mid-1/sid-1/"+name(3), 100, 3)
	block := make(chan struct{})
	blocked := make(chan struct{}, 1)
	var mu sync.Mutex
	now := base.Add(time.Hour)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	k := newKeeper(t, Config{Dir: dir, MaxBytes: 1000, Queue: 1, Rescan: time.Hour, Now: clock,
		Hold: func(p string) bool {
			if strings.HasSuffix(p, "big.pcapng") {
				blocked <- struct{}{}
				<-block // stall the goroutine to fill the queue
			}
			return true
		}})
	settle(t, k)
	os.Remove(a)
	k.Check(a)
	testenv.WaitFor(t, "a to leave the index", 10*time.Second, func() bool { return k.Stats().Files == 2 })
	os.Remove(b)
	mu.Lock()
	now = now.Add(2 * time.Hour) // time for a walk
	mu.Unlock()
	testenv.WaitFor(t, "b to leave the index", 10*time.Second, func() bool { return k.Stats().Files == 1 })

	// Stall the goroutine in Hold, fill the queue, drop one.
	big := put(t, dir, "mid-1/sid-2/big.pcapng", 2000, 0)
	k.Add(big, 2000, base)
	<-blocked
	d := put(t, dir, "mid-1/sid-1/"+name(4), 100, 4)
	e := put(t, dir, "mid-1/sid-1/"+name(5), 100, 5)
	k.Add(d, 100, base)
	k.Add(e, 100, base)
	if st := k.Stats(); st.Dropped != 1 {
		t.Errorf("dropped %d, want 1", st.Dropped)
	}
	close(block)
	mu.Lock()
	now = now.Add(2 * time.Hour)
	mu.Unlock()
	testenv.WaitFor(t, "the walk to index the dropped file", 10*time.Second, func() bool { return k.Stats().Files == 4 })
	if st := k.Stats(); st.DeletedFiles != [NumReasons]uint64{} || st.Errors != 0 {
		t.Errorf("stats %+v", st)
	}
	_ = c
}

// TestManyFiles: the index and one pass over 100k files, as the docs say.
func TestManyFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	dir := t.TempDir()
	const streams, per = 20000, 5
	for s := range streams {
		d := filepath.Join(dir, fmt.Sprintf("mid-%d/sid-%d", s/100, s%100))
		must(t, os.MkdirAll(d, 0o700))
		for i := range per {
			must(t, os.WriteFile(filepath.Join(d, name(i)), []byte{1}, 0o600))
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	// The index alone: no limit, nothing deleted.
	before := heap()
	start := time.Now()
	idx := newKeeper(t, Config{Dir: dir, Interval: time.Hour})
	testenv.WaitFor(t, "the first walk", 10*time.Second, func() bool { return idx.Stats().Scanned })
	walked := time.Since(start)
	perFile := float64(heap()-before) / (streams * per)
	idx.Close()
	if st := idx.Stats(); st.Files != streams*per {
		t.Fatalf("indexed %d files", st.Files)
	}

	start = time.Now()
	k := newKeeper(t, Config{Dir: dir, MaxBytes: streams * per / 2, Interval: time.Second})
	testenv.WaitFor(t, "the first walk", 10*time.Second, func() bool { return k.Stats().Scanned })
	testenv.WaitFor(t, "the deletions", 10*time.Second, func() bool { return k.Stats().Bytes <= streams*per/2 })
	t.Logf("walked %d files in %v (index: %.0f bytes a file); walked again and deleted %d down to the budget in %v",
		streams*per, walked, perFile, k.Stats().DeletedFiles[MaxBytes], time.Since(start))
}
