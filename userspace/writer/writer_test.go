package writer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

var router = netip.MustParseAddr("192.0.2.1")

// clock is a manual clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// packet is a raw IPv4 packet of size bytes carrying its stream's SID and a
// sequence number.
func packet(k Key, seq, size int) []byte {
	b := make([]byte, size)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(size))
	b[9] = 17
	copy(b[12:], []byte{10, 0, 0, 1, 192, 0, 2, 99})
	binary.BigEndian.PutUint32(b[28:], uint32(seq))
	binary.BigEndian.PutUint32(b[32:], k.SID)
	return b
}

func newManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func write(t testing.TB, m *Manager, k Key, ts time.Time, seq, size int) bool {
	t.Helper()
	return m.Write(k, ts, router, pcapng.LinkRawIP, packet(k, seq, size))
}

// outDir is a fresh output directory, mode 0700 (t.TempDir's is 0755,
// which New warns about).
func outDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

func streamDirOf(dir string, k Key) string {
	return filepath.Join(dir, fmt.Sprintf("mid-%d", k.MID), fmt.Sprintf("sid-%d", k.SID))
}

// completed returns a stream's .pcapng files, in name order.
func completed(t testing.TB, dir string, k Key) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(streamDirOf(dir, k), "*.pcapng"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return files
}

func parts(t testing.TB, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "mid-*", "sid-*", "*.part"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// readSeqs reads a file of packet()s with capfile and returns their
// sequence numbers, checking their SID.
func readSeqs(t testing.TB, path string, k Key) []int {
	t.Helper()
	r, err := capfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var seqs []int
	for i := 0; i < 1<<22; i++ {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ip := fr.Data[14:]
		if sid := binary.BigEndian.Uint32(ip[32:]); sid != k.SID {
			t.Fatalf("%s: packet of sid %d in the file of %v", path, sid, k)
		}
		seqs = append(seqs, int(binary.BigEndian.Uint32(ip[28:])))
	}
	return seqs
}

func streamSeqs(t testing.TB, dir string, k Key) []int {
	t.Helper()
	var all []int
	for _, f := range completed(t, dir, k) {
		all = append(all, readSeqs(t, f, k)...)
	}
	return all
}

func upTo(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func tsharkCount(t testing.TB, path string) int {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "tshark"), "-n", "-r", path, "-T", "fields", "-e", "frame.number")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", path, err, stderr.Bytes())
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0
	}
	return len(strings.Split(s, "\n"))
}

func permOf(t testing.TB, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestRotateBySize(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := outDir(t)
	const limit = 10000
	m := newManager(t, Config{Dir: dir, RotateSize: limit})
	keys := []Key{{1, 10}, {1, 11}, {2, 10}}
	const n = 400
	t0 := time.Now()
	for i := 0; i < n; i++ {
		for _, k := range keys {
			if !write(t, m, k, t0.Add(time.Duration(i)*time.Microsecond), i, 200) {
				t.Fatalf("write %v %d dropped", k, i)
			}
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if p := parts(t, dir); len(p) != 0 {
		t.Errorf(".part files after Close: %v", p)
	}
	var nfiles int
	for _, k := range keys {
		files := completed(t, dir, k)
		nfiles += len(files)
		if len(files) < 5 {
			t.Fatalf("%v: %d files, want rotation", k, len(files))
		}
		for i, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			// A file is closed by the packet that takes it to the limit:
			// at most one packet block (under 300 bytes) more.
			if fi.Size() > limit+300 || (i < len(files)-1 && fi.Size() < limit) {
				t.Errorf("%s: %d bytes, limit %d", f, fi.Size(), limit)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Errorf("%s: mode %o", f, m)
			}
		}
		// Name order is time order: every packet once, in order.
		if got := streamSeqs(t, dir, k); !slices.Equal(got, upTo(n)) {
			t.Errorf("%v: files hold %v", k, got)
		}
		for _, d := range []string{filepath.Dir(streamDirOf(dir, k)), streamDirOf(dir, k)} {
			if m := permOf(t, d); m != 0o700 {
				t.Errorf("%s: mode %o", d, m)
			}
		}
	}
	if f := completed(t, dir, keys[0]); tsharkCount(t, f[0]) != len(readSeqs(t, f[0], keys[0])) {
		t.Errorf("tshark disagrees on %s", f[0])
	}
	st := m.Stats()
	if st.Packets != n*3 || st.Bytes != n*3*200 || st.FilesCompleted != uint64(nfiles) || st.FilesCreated != uint64(nfiles) ||
		st.RotationsSize != uint64(nfiles-3) || st.Buffered != 0 || st.OpenFiles != 0 {
		t.Errorf("stats %+v, %d files", st, nfiles)
	}
	for _, ss := range m.Streams() {
		if ss.Packets != n || ss.Drops != 0 || ss.CurrentFile != "" || ss.LastWrite.IsZero() {
			t.Errorf("stream %+v", ss)
		}
	}
}

func TestRotateByAge(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	m := newManager(t, Config{Dir: dir, RotateAge: time.Minute, MaxOpen: 2, Now: clk.Now})
	a, b, c, d := Key{1, 1}, Key{1, 2}, Key{1, 3}, Key{1, 4}
	ts := clk.Now()
	write(t, m, a, ts, 0, 100)
	write(t, m, b, ts, 0, 100)
	clk.Advance(time.Second)
	write(t, m, c, ts, 0, 100) // evicts a: its file stays .part, closed
	if st := m.Stats(); st.OpenFiles != 2 || st.Evictions != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(parts(t, dir)) != 3 {
		t.Fatalf(".part files %v", parts(t, dir))
	}
	clk.Advance(59 * time.Second)
	m.Tick() // a and b are 60 s old, c 59 s
	if got := len(parts(t, dir)); got != 1 || len(completed(t, dir, a)) != 1 || len(completed(t, dir, b)) != 1 {
		t.Fatalf("after 60 s: %d .part, %v, %v", got, completed(t, dir, a), completed(t, dir, b))
	}
	clk.Advance(time.Second)
	m.Tick()
	if len(parts(t, dir)) != 0 || len(completed(t, dir, c)) != 1 {
		t.Fatalf("after 61 s: %v", parts(t, dir))
	}
	if st := m.Stats(); st.RotationsAge != 3 || st.OpenFiles != 0 || st.FilesCompleted != 3 {
		t.Errorf("stats %+v", st)
	}
	// Write checks the age too, without Tick.
	write(t, m, d, ts, 0, 100)
	clk.Advance(time.Minute)
	write(t, m, d, ts, 1, 100)
	if files := completed(t, dir, d); len(files) != 1 || len(parts(t, dir)) != 1 {
		t.Fatalf("d: %v, %v", files, parts(t, dir))
	}
	// The next file of a is new, named by its own start.
	write(t, m, a, ts, 1, 100)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	files := completed(t, dir, a)
	if len(files) != 2 || !strings.HasSuffix(files[0], "20250304T050607.000000000Z.pcapng") ||
		!strings.HasSuffix(files[1], "20250304T050808.000000000Z.pcapng") {
		t.Errorf("a's files: %v", files)
	}
	for _, k := range []Key{a, d} {
		if got := streamSeqs(t, dir, k); !slices.Equal(got, []int{0, 1}) {
			t.Errorf("%v: %v", k, got)
		}
	}
}

// ourFDs counts this process's descriptors open on .part or .pcapng files
// under dir.
func ourFDs(t testing.TB, dir string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own descriptor, closed meanwhile
		}
		if strings.HasPrefix(target, dir+"/") && (strings.HasSuffix(target, ".part") || strings.HasSuffix(target, ".pcapng")) {
			n++
		}
	}
	return n
}

// TestLRU keeps 4 files open for 50 streams. A packet only joins its
// stream's buffer; a buffer is written out by Tick (FlushInterval is 1 ns
// here), which reopens the file and closes the least recently used one:
// one open a buffer, not one a packet.
func TestLRU(t *testing.T) {
	old := syscall.Umask(0o222) // must not leak into modes
	defer syscall.Umask(old)
	dir := outDir(t)
	m := newManager(t, Config{Dir: dir, MaxOpen: 4, FlushInterval: time.Nanosecond})
	const nstreams, rounds, perRound = 50, 20, 5
	keys := make([]Key, nstreams)
	for i := range keys {
		keys[i] = Key{MID: uint32(i % 3), SID: uint32(1000 + i)}
	}
	maxFDs := 0
	t0 := time.Now()
	seq := 0
	for r := 0; r < rounds; r++ {
		for p := 0; p < perRound; p++ {
			for _, k := range keys {
				if !write(t, m, k, t0.Add(time.Duration(seq)), r*perRound+p, 120) {
					t.Fatalf("%v round %d dropped", k, r)
				}
				seq++
				maxFDs = max(maxFDs, ourFDs(t, dir))
			}
		}
		before := m.Stats()
		time.Sleep(time.Millisecond) // every buffer is older than 1 ns
		m.Tick()
		maxFDs = max(maxFDs, ourFDs(t, dir))
		if st := m.Stats(); r > 0 && (st.Reopens-before.Reopens < nstreams-4 || st.Reopens-before.Reopens > nstreams) {
			t.Errorf("round %d: %d reopens to write %d buffers of %d packets", r, st.Reopens-before.Reopens, nstreams, perRound)
		}
		// Tick wrote out every buffer, but those of the files it closed
		// to open others: those went out as the file closed.
		if st := m.Stats(); st.Buffered != 0 || st.FlushesAge-before.FlushesAge < nstreams-4 || st.Flushes-before.Flushes < nstreams {
			t.Errorf("round %d: after Tick %+v", r, st)
		}
	}
	if maxFDs > 4 {
		t.Errorf("up to %d files open, MaxOpen 4", maxFDs)
	}
	if maxFDs == 0 {
		t.Error("counted no open file: the check is broken")
	}
	st := m.Stats()
	if st.OpenFiles != 4 || st.Evictions < nstreams*(rounds-1) || st.Reopens < (nstreams-4)*(rounds-1) || st.FilesCreated != nstreams {
		t.Errorf("stats %+v", st)
	}
	// One open a buffer: never one a packet.
	if st.Reopens > nstreams*rounds {
		t.Errorf("%d reopens for %d buffers", st.Reopens, nstreams*rounds)
	}
	// Open or not, each stream has one .part file and no .pcapng yet.
	if p := parts(t, dir); len(p) != nstreams {
		t.Errorf("%d .part files, want %d", len(p), nstreams)
	}
	for _, ss := range m.Streams() {
		if !strings.HasSuffix(ss.CurrentFile, ".pcapng.part") {
			t.Errorf("%v: current file %q", ss.Key, ss.CurrentFile)
		}
		if _, err := os.Stat(ss.CurrentFile); err != nil {
			t.Error(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if ourFDs(t, dir) != 0 {
		t.Error("files left open after Close")
	}
	if p := parts(t, dir); len(p) != 0 {
		t.Errorf(".part files after Close: %v", p)
	}
	for _, k := range keys {
		files := completed(t, dir, k)
		if len(files) != 1 {
			t.Fatalf("%v: files %v", k, files)
		}
		if got := readSeqs(t, files[0], k); !slices.Equal(got, upTo(rounds*perRound)) {
			t.Errorf("%v: %v", k, got)
		}
		if m := permOf(t, files[0]); m != 0o600 {
			t.Errorf("%s: mode %o", files[0], m)
		}
		for _, d := range []string{filepath.Dir(streamDirOf(dir, k)), streamDirOf(dir, k)} {
			if m := permOf(t, d); m != 0o700 {
				t.Errorf("%s: mode %o", d, m)
			}
		}
	}
	if n := tsharkCount(t, completed(t, dir, keys[7])[0]); n != rounds*perRound {
		t.Errorf("tshark reads %d packets, want %d", n, rounds*perRound)
	}
	if st := m.Stats(); st.Packets != nstreams*rounds*perRound || st.Buffered != 0 || st.FilesCompleted != nstreams || st.BufferBytes != 0 {
		t.Errorf("stats after Close %+v", st)
	}
}

// abandon simulates a crash: buffers are written (as the kernel would have
// them) but no file is closed, completed or truncated, and the lock goes.
func (m *Manager) abandon(t testing.TB) {
	m.rec.cancel()
	m.rec.wait()
	for _, s := range m.streams {
		if c := s.cur; c != nil {
			if err := m.flushFile(c, m.now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.lock.Close()
	m.closed = true // its Cleanup Close does nothing
}

func TestRestartRecovery(t *testing.T) {
	dir := outDir(t)
	var logs testenv.LogBuffer
	m1 := newManager(t, Config{Dir: dir, Logger: logs.Logger()})
	if _, err := New(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Manager on the directory: %v", err)
	}
	keys := []Key{{5, 1}, {5, 2}, {5, 3}}
	t0 := time.Now()
	for i := 0; i < 30; i++ {
		for _, k := range keys {
			write(t, m1, k, t0.Add(time.Duration(i)), i, 300)
		}
	}
	m1.abandon(t)
	p := parts(t, dir)
	if len(p) != 3 {
		t.Fatalf(".part files %v", p)
	}
	slices.Sort(p)
	// Stream 1's file gets a torn tail: half a packet block.
	f1, _ := os.ReadFile(p[0])
	torn := f1[len(f1)-340 : len(f1)-340+150] // the start of the last block
	f, _ := os.OpenFile(p[0], os.O_WRONLY|os.O_APPEND, 0)
	f.Write(torn)
	f.Close()
	// Stream 2's file is cut in its section header, stream 3's has
	// nothing: both hold no packet.
	os.Truncate(p[1], 20)
	os.Truncate(p[2], 0)
	// A leftover whose contents are not ours stays as it is.
	odd := filepath.Join(dir, "mid-5", "sid-9", "x.pcapng.part")
	os.MkdirAll(filepath.Dir(odd), 0o700)
	os.WriteFile(odd, []byte("not a capture"), 0o600)

	logs = testenv.LogBuffer{}
	m2 := newManager(t, Config{Dir: dir, Logger: logs.Logger()})
	waitRecovered(t, m2) // in the background (recovery_test.go)
	st := m2.Stats()
	if st.RecoveredFiles != 1 || st.RecoveredBytes != 150 {
		t.Errorf("stats %+v", st)
	}
	if got := parts(t, dir); !slices.Equal(got, []string{odd}) {
		t.Errorf(".part files after recovery: %v", got)
	}
	if got := streamSeqs(t, dir, keys[0]); !slices.Equal(got, upTo(30)) {
		t.Errorf("recovered stream: %v", got)
	}
	if n := tsharkCount(t, completed(t, dir, keys[0])[0]); n != 30 {
		t.Errorf("tshark reads %d packets", n)
	}
	for _, k := range keys[1:] {
		if f := completed(t, dir, k); len(f) != 0 {
			t.Errorf("%v: empty file completed: %v", k, f)
		}
	}
	// A line when the recovery starts, one when it is over.
	info := logs.Lines("level=INFO")
	if len(info) != 2 || !strings.Contains(info[0], "in the background") || !strings.Contains(info[0], "found=4") {
		t.Errorf("start: %q", info)
	}
	if info = info[min(1, len(info)):]; len(info) != 1 || !strings.Contains(info[0], "completed=1") || !strings.Contains(info[0], "truncated_bytes=150") ||
		!strings.Contains(info[0], "removed_empty=2") || !strings.Contains(info[0], "failed=1") {
		t.Errorf("summary: %q", info)
	}
	// Writing goes on in new files.
	write(t, m2, keys[0], t0, 30, 300)
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamSeqs(t, dir, keys[0]); !slices.Equal(got, upTo(31)) {
		t.Errorf("after restart: %v", got)
	}
}

// TestFaultRetry makes file creation fail (a file where the stream's
// directory should be): drops are counted, the disk is left alone until
// RetryInterval has passed, one warning and one info line are logged.
func TestFaultRetry(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	var logs testenv.LogBuffer
	m := newManager(t, Config{Dir: dir, Now: clk.Now, RetryInterval: time.Second, Logger: logs.Logger()})
	bad := Key{7, 1}
	good := Key{8, 1}
	obstacle := filepath.Join(dir, "mid-7")
	os.WriteFile(obstacle, nil, 0o600)
	ts := clk.Now()
	if write(t, m, bad, ts, 0, 100) {
		t.Fatal("write under a file succeeded")
	}
	if !write(t, m, good, ts, 0, 100) {
		t.Fatal("other stream failed")
	}
	os.Remove(obstacle) // fixed, but the stream waits for its retry
	for i := 1; i < 10; i++ {
		clk.Advance(50 * time.Millisecond)
		if write(t, m, bad, ts, i, 100) {
			t.Fatalf("write %d within the retry interval succeeded", i)
		}
	}
	if _, err := os.Stat(obstacle); err == nil {
		t.Fatal("the disk was touched during the retry interval")
	}
	ss := m.Streams()
	if ss[0].Key != bad || ss[0].DropsByReason[DropDisk] != 10 || ss[0].Drops != 10 || ss[1].Drops != 0 {
		t.Fatalf("streams %+v", ss)
	}
	if st := m.Stats(); st.Faults != 1 || st.Drops[DropDisk] != 10 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(600 * time.Millisecond)
	if !write(t, m, bad, ts, 10, 100) {
		t.Fatal("retry failed")
	}
	if !write(t, m, bad, ts, 11, 100) {
		t.Fatal("write after the retry failed")
	}
	// The condition holds until writes have succeeded for recoverHold.
	if st := m.Stats(); st.Faults != 1 || len(logs.Lines("level=INFO")) != 0 {
		t.Errorf("condition over at the first success: stats %+v, info %q", st, logs.Lines("level=INFO"))
	}
	clk.Advance(recoverHold)
	m.Tick()
	if st := m.Stats(); st.Faults != 0 {
		t.Errorf("stats %+v", st)
	}
	warn, info := logs.Lines("level=WARN"), logs.Lines("level=INFO")
	if len(warn) != 1 || len(info) != 1 || !strings.Contains(info[0], "dropped=10") {
		t.Errorf("logs:\n%s", strings.Join(append(warn, info...), "\n"))
	}
	if !strings.Contains(warn[0], "not a directory") || !strings.Contains(warn[0], dir) {
		t.Errorf("warning %q lacks the error or the directory", warn[0])
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamSeqs(t, dir, bad); !slices.Equal(got, []int{10, 11}) {
		t.Errorf("bad stream: %v", got)
	}
}

// On a disk that fails and works by turns (a nearly full one), the fault
// condition does not flap: one warning, the gauge held at 1 throughout, and
// one "works again" once writes have succeeded for recoverHold (issue 19
// item 8).
func TestFaultDoesNotFlap(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	var logs testenv.LogBuffer
	// Every packet completes its file, so every write creates one: a file
	// where the stream's directory goes makes the create fail.
	m := newManager(t, Config{Dir: dir, Now: clk.Now, RetryInterval: time.Second, RotateSize: 1, Logger: logs.Logger()})
	k := Key{7, 1}
	obstacle := filepath.Join(dir, "mid-7")
	ts := clk.Now()
	seq := 0
	failures := 0
	for round := range 12 { // 12 s of a disk that fails and works by turns
		os.RemoveAll(obstacle)
		os.WriteFile(obstacle, nil, 0o600)
		seq++
		if !write(t, m, k, ts, seq, 100) {
			failures++
		}
		os.Remove(obstacle)
		clk.Advance(1100 * time.Millisecond)
		seq++
		if !write(t, m, k, ts, seq, 100) {
			t.Fatalf("round %d: the probe failed", round)
		}
		m.Tick()
		if st := m.Stats(); st.Faults != 1 {
			t.Fatalf("round %d: fault gauge %d, want it held at 1", round, st.Faults)
		}
	}
	if failures != 12 {
		t.Fatalf("%d of 12 writes failed: the test's premise", failures)
	}
	if w, i := logs.Lines("level=WARN"), logs.Lines("level=INFO"); len(w) != 1 || len(i) != 0 {
		t.Fatalf("a flapping disk logged %d warnings and %d recoveries: %q %q", len(w), len(i), w, i)
	}
	// Then it works for recoverHold: over, logged once.
	for range 11 {
		clk.Advance(time.Second)
		seq++
		if !write(t, m, k, ts, seq, 100) {
			t.Fatal("write failed with nothing in the way")
		}
		m.Tick()
	}
	if st := m.Stats(); st.Faults != 0 {
		t.Errorf("fault gauge %d after %v of success", st.Faults, recoverHold)
	}
	if i := logs.Lines("level=INFO"); len(i) != 1 || !strings.Contains(i[0], "works again") || !strings.Contains(i[0], "dropped=12") {
		t.Errorf("recovery lines %q", i)
	}
}

func TestDropsAndClose(t *testing.T) {
	dir := outDir(t)
	var logs testenv.LogBuffer
	m := newManager(t, Config{Dir: dir, Logger: logs.Logger()})
	k := Key{1, 2}
	m.Drop(k, DropQueue, 5)
	m.Drop(k, DropReassembly, 2)
	m.Drop(k, DropReason(99), 1)
	m.Drop(k, DropQueue, -3)
	now := time.Now()
	for i, bad := range []func() bool{
		func() bool { return m.Write(k, now, netip.Addr{}, pcapng.LinkRawIP, []byte{1}) },
		func() bool { return m.Write(k, now, router, pcapng.LinkKind(42), []byte{1}) },
		func() bool { return m.Write(k, time.Time{}, router, pcapng.LinkRawIP, []byte{1}) },
		func() bool { return m.Write(k, now, router, pcapng.LinkRawIP, make([]byte, pcapng.MaxPacketLen+1)) },
	} {
		if bad() {
			t.Errorf("invalid packet %d written", i)
		}
	}
	if !m.Write(k, now, router, pcapng.LinkUnknown, nil) {
		t.Error("empty packet dropped")
	}
	if len(parts(t, dir)) != 1 {
		t.Error("no file for the valid packet")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if m.Write(k, now, router, pcapng.LinkRawIP, []byte{0x45}) {
		t.Error("Write after Close succeeded")
	}
	m.Tick()
	st := m.Stats()
	want := [NumDropReasons]uint64{DropQueue: 5, DropReassembly: 2, DropOther: 1, DropInvalid: 4, DropClosed: 1}
	if st.Drops != want || st.Packets != 1 {
		t.Errorf("drops %v, packets %d", st.Drops, st.Packets)
	}
	if ss := m.Streams(); len(ss) != 1 || ss[0].DropsByReason != want || ss[0].Drops != 13 {
		t.Errorf("streams %+v", ss)
	}
	if w := logs.Lines("level=WARN"); len(w) != 1 {
		t.Errorf("warnings: %q", w)
	}
	for r := DropDisk; r <= NumDropReasons; r++ {
		if s := r.String(); s == "" || (r < NumDropReasons && strings.HasPrefix(s, "DropReason")) {
			t.Errorf("%d: %q", r, s)
		}
	}
}

func TestForgetIdleStreams(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	m := newManager(t, Config{Dir: dir, RotateAge: time.Minute, Now: clk.Now})
	for i := 0; i < 100; i++ {
		write(t, m, Key{1, uint32(i)}, clk.Now(), 0, 100)
	}
	m.Drop(Key{2, 1}, DropQueue, 1)
	for i := 0; i < 9; i++ {
		clk.Advance(time.Minute)
		m.Tick()
		write(t, m, Key{1, 0}, clk.Now(), i+1, 100) // stays busy
	}
	if st := m.Stats(); st.Streams != 101 || st.RotationsAge < 100 {
		t.Fatalf("stats %+v", st)
	}
	clk.Advance(2 * time.Minute)
	m.Tick()
	st := m.Stats()
	if st.Streams != 1 || st.Packets != 109 {
		t.Fatalf("after the idle limit: %+v", st)
	}
	if ss := m.Streams(); len(ss) != 1 || ss[0].Key != (Key{1, 0}) || ss[0].Packets != 10 {
		t.Errorf("streams %+v", ss)
	}
	// A forgotten stream starts again from zero, in a new file.
	write(t, m, Key{1, 5}, clk.Now(), 1, 100)
	m.Close()
	if got := streamSeqs(t, dir, Key{1, 5}); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("%v", got)
	}
}

// mountTmpfs mounts a tmpfs of the given size on a fresh directory,
// unmounted when the test ends.
func mountTmpfs(t testing.TB, size string) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := outDir(t)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testenv.SkipOrFail(t, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// TestDiskFull fills a real (tmpfs) file system: with all files open, and
// with evictions and rotations that fail too.
func TestDiskFull(t *testing.T) {
	t.Run("open", func(t *testing.T) { testDiskFull(t, Config{}) })
	t.Run("evict+rotate", func(t *testing.T) { testDiskFull(t, Config{MaxOpen: 2, RotateSize: 20000}) })
}

func testDiskFull(t *testing.T, cfg Config) {
	dir := mountTmpfs(t, "256k")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	var logs testenv.LogBuffer
	cfg.Dir, cfg.Now, cfg.RetryInterval, cfg.Logger = dir, clk.Now, time.Second, logs.Logger()
	m := newManager(t, cfg)
	keys := []Key{{1, 1}, {1, 2}, {1, 3}, {1, 4}}
	writes := map[Key]int{}
	failed := map[Key]int{}
	seq := 0
	next := func(k Key) bool {
		clk.Advance(10 * time.Millisecond)
		writes[k]++
		seq++
		ok := write(t, m, k, clk.Now(), seq, 1000)
		if !ok {
			failed[k]++
		}
		return ok
	}
	for i := 0; i < 2000 && (len(failed) < len(keys) || i < 1000); i++ {
		next(keys[i%len(keys)])
	}
	if len(failed) < len(keys) {
		t.Fatalf("the file system never filled: %v", failed)
	}
	st := m.Stats()
	var total int
	for _, n := range writes {
		total += n
	}
	if st.Faults != 1 || st.Drops[DropDisk] == 0 || st.Packets+st.Drops[DropDisk]+st.Buffered != uint64(total) {
		t.Fatalf("stats %+v after %d writes", st, total)
	}
	for _, ss := range m.Streams() {
		if ss.DropsByReason[DropDisk] < uint64(failed[ss.Key]) {
			t.Errorf("%v: %d disk drops, %d writes failed", ss.Key, ss.DropsByReason[DropDisk], failed[ss.Key])
		}
	}
	if w := logs.Lines("level=WARN"); len(w) != 1 || !strings.Contains(w[0], "no space left") || !strings.Contains(w[0], dir) {
		t.Fatalf("warnings: %q", w)
	}
	if i := logs.Lines("level=INFO"); len(i) != 0 {
		t.Fatalf("info lines while full: %q", i)
	}
	// Every file is valid meanwhile.
	for _, p := range parts(t, dir) {
		tsharkCount(t, p)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Second)
	for i := 0; i < 40; i++ {
		k := keys[i%len(keys)]
		if !next(k) {
			t.Fatalf("write %d after freeing space failed", i)
		}
	}
	clk.Advance(recoverHold)
	m.Tick()
	info := logs.Lines("level=INFO")
	if len(info) != 1 || !strings.Contains(info[0], "works again") {
		t.Fatalf("info lines: %q", info)
	}
	t.Logf("logged:\n%s\n%s", logs.Lines("level=WARN")[0], info[0])
	if st := m.Stats(); st.Faults != 0 {
		t.Errorf("faults %d after recovery", st.Faults)
	}
	if len(logs.Lines("level=WARN")) != 1 {
		t.Errorf("warnings: %q", logs.Lines("level=WARN"))
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	st = m.Stats()
	total = 0
	for _, n := range writes {
		total += n
	}
	if st.Buffered != 0 || st.Packets+st.Drops[DropDisk] != uint64(total) {
		t.Errorf("stats %+v after %d writes", st, total)
	}
	for _, ss := range m.Streams() {
		k := ss.Key
		if ss.Packets+ss.DropsByReason[DropDisk] != uint64(writes[k]) {
			t.Errorf("%v: %d written + %d dropped != %d", k, ss.Packets, ss.DropsByReason[DropDisk], writes[k])
		}
		got := streamSeqs(t, dir, k)
		if len(got) != int(ss.Packets) || !slices.IsSorted(got) {
			t.Errorf("%v: files hold %d packets (sorted %v), stats say %d", k, len(got), slices.IsSorted(got), ss.Packets)
		}
		n := 0
		for _, f := range completed(t, dir, k) {
			n += tsharkCount(t, f)
		}
		if n != len(got) {
			t.Errorf("%v: tshark reads %d packets, capfile %d", k, n, len(got))
		}
	}
	if p := parts(t, dir); len(p) != 0 {
		t.Errorf(".part files after Close: %v", p)
	}
}

// TestMemory writes one packet to each of many streams, keeping few files
// open, and reports the heap the Manager holds for them.
func TestMemory(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 10000
	}
	dir := outDir(t)
	var before, after runtime.MemStats
	// Twice: sync.Pool keeps buffers of earlier tests through one GC.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := newManager(t, Config{Dir: dir, MaxOpen: 8})
	t0 := time.Now()
	for i := 0; i < n; i++ {
		k := Key{MID: uint32(i % 16), SID: uint32(i)}
		if !write(t, m, k, t0, i, 100) {
			t.Fatalf("stream %d dropped", i)
		}
	}
	elapsed := time.Since(t0)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	st := m.Stats()
	t.Logf("%d streams (one packet, one .part file each, %d open): heap %.1f MiB, %d bytes per stream; written in %v",
		n, st.OpenFiles, float64(heap)/(1<<20), heap/int64(n), elapsed.Round(time.Millisecond))
	if st.Streams != n || st.OpenFiles != 8 {
		t.Errorf("stats %+v", st)
	}
	// StreamBytes, which capture.max_stream_memory is divided by, must
	// stay true.
	if perStream := heap / int64(n); perStream > StreamBytes {
		t.Errorf("%d bytes per stream: more than StreamBytes (%d), which sizes the max_stream_memory bound", perStream, StreamBytes)
	}
	runtime.KeepAlive(m)
	t1 := time.Now()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close completed %d files in %v", m.Stats().FilesCompleted, time.Since(t1).Round(time.Millisecond))
	if st := m.Stats(); st.FilesCompleted != uint64(n) || st.Packets != uint64(n) {
		t.Errorf("stats after Close %+v", st)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("no Dir accepted")
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(Config{Dir: file}); err == nil {
		t.Error("a file as Dir accepted")
	}
	if _, err := New(Config{Dir: outDir(t), RotateSize: -1}); err == nil {
		t.Error("negative RotateSize accepted")
	}
	// A missing directory is created, mode 0700.
	dir := filepath.Join(t.TempDir(), "a", "b")
	m, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if p := permOf(t, dir); p != 0o700 {
		t.Errorf("mode %o", p)
	}
	var logs testenv.LogBuffer
	open := t.TempDir()
	os.Chmod(open, 0o755)
	m2, err := New(Config{Dir: open, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if w := logs.Lines("level=WARN"); len(w) != 1 || !strings.Contains(w[0], "other users") {
		t.Errorf("no warning for an open directory: %q", w)
	}
}

// Stats and Streams run concurrently with the writer goroutine (go test
// -race checks the locking).
func TestConcurrentStats(t *testing.T) {
	m := newManager(t, Config{Dir: outDir(t), MaxOpen: 3, RotateSize: 5000})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				m.Stats()
				m.Streams()
			}
		}
	}()
	t0 := time.Now()
	for i := 0; i < 2000; i++ {
		write(t, m, Key{1, uint32(i % 10)}, t0, i, 100)
		if i%100 == 0 {
			m.Tick()
		}
	}
	m.Close()
	close(done)
	wg.Wait()
	if st := m.Stats(); st.Packets != 2000 {
		t.Errorf("stats %+v", st)
	}
}

func BenchmarkManagerWrite(b *testing.B) {
	for _, c := range []struct {
		name    string
		streams int
		maxOpen int
	}{
		{"streams=1000/open=all", 1000, 1024},
		{"streams=1000/open=100", 1000, 100},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := newManager(b, Config{Dir: outDir(b), MaxOpen: c.maxOpen, RotateSize: 64 << 20})
			keys := make([]Key, c.streams)
			pkts := make([][]byte, c.streams)
			for i := range keys {
				keys[i] = Key{MID: 1, SID: uint32(i)}
				pkts[i] = packet(keys[i], 0, 200)
			}
			ts := time.Now()
			b.SetBytes(200)
			b.ReportAllocs()
			i := 0
			start := time.Now()
			for b.Loop() {
				j := i % c.streams
				if !m.Write(keys[j], ts, router, pcapng.LinkRawIP, pkts[j]) {
					b.Fatal("dropped")
				}
				i++
			}
			b.ReportMetric(float64(i)/time.Since(start).Seconds(), "pkts/s")
			b.StopTimer()
			if err := m.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func TestTickFlush(t *testing.T) {
	dir := outDir(t)
	clk := newClock()
	m := newManager(t, Config{Dir: dir, Now: clk.Now, FlushInterval: time.Second})
	k := Key{3, 4}
	write(t, m, k, clk.Now(), 0, 100)
	part := parts(t, dir)[0]
	size := func() int64 {
		fi, err := os.Stat(part)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	clk.Advance(900 * time.Millisecond)
	m.Tick()
	if size() != 0 || m.Stats().Buffered != 1 || m.Stats().Packets != 0 {
		t.Fatalf("flushed early: %d bytes, %+v", size(), m.Stats())
	}
	write(t, m, k, clk.Now(), 1, 100) // does not restart the wait
	clk.Advance(100 * time.Millisecond)
	m.Tick()
	if got := readSeqs(t, part, k); !slices.Equal(got, []int{0, 1}) || m.Stats().Buffered != 0 || m.Stats().Packets != 2 {
		t.Fatalf("after FlushInterval the file holds %v; %+v", got, m.Stats())
	}
}

// A closed (evicted) current file deleted behind the writer's back: the
// stream starts a new file.
func TestEvictedFileVanished(t *testing.T) {
	dir := outDir(t)
	var logs testenv.LogBuffer
	m := newManager(t, Config{Dir: dir, MaxOpen: 1, Logger: logs.Logger()})
	a, b := Key{1, 1}, Key{1, 2}
	ts := time.Now()
	write(t, m, a, ts, 0, 100)
	write(t, m, b, ts, 0, 100) // evicts a
	for _, p := range parts(t, dir) {
		if strings.Contains(p, "sid-1/") {
			os.Remove(p)
		}
	}
	if !write(t, m, a, ts, 1, 100) {
		t.Fatal("write after the file vanished dropped")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamSeqs(t, dir, a); !slices.Equal(got, []int{1}) {
		t.Errorf("a: %v", got)
	}
	if w := logs.Lines("level=WARN"); len(w) != 1 || !strings.Contains(w[0], "vanished") {
		t.Errorf("warnings %q", w)
	}
}

// BenchmarkWriteAt is the capture's per-packet path: WriteAt with the
// clock set once a batch, packets of simple IMIX sizes round-robin over
// many streams (the worst case for caches), into files on the test's temp
// dir. Every stream's file exists before the timed loop.
func BenchmarkWriteAt(b *testing.B) {
	for _, streams := range []int{100, 3000, 100000} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			m := newManager(b, Config{Dir: outDir(b), RotateSize: 1 << 40})
			sizes := []int{64, 64, 64, 64, 64, 64, 64, 576, 576, 576, 576, 1400}
			pkts := make([][]byte, len(sizes))
			for i, n := range sizes {
				pkts[i] = packet(Key{1, 1}, i, n)
			}
			keys := make([]Key, streams)
			for i := range keys {
				keys[i] = Key{MID: uint32(1 + i/10), SID: uint32(i % 10)}
			}
			for j, k := range keys {
				m.WriteAt(k, uint64(j), router, pcapng.LinkRawIP, pkts[0])
			}
			b.ReportAllocs()
			i := 0
			const batch = 450
			for b.Loop() {
				if i%batch == 0 {
					m.SetClock(time.Now())
					if i%(batch*100) == 0 {
						m.Tick()
					}
				}
				if !m.WriteAt(keys[i%streams], uint64(i), router, pcapng.LinkRawIP, pkts[i%len(pkts)]) {
					b.Fatal("dropped")
				}
				i++
			}
			b.StopTimer()
			if err := m.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// A stream's directory removed behind the writer's back (a consumer
// cleaning up) is made again for the stream's next file.
func TestStreamDirRemoved(t *testing.T) {
	dir := outDir(t)
	m := newManager(t, Config{Dir: dir, RotateSize: 1})
	k := Key{4, 5}
	ts := time.Now()
	if !write(t, m, k, ts, 0, 100) { // completes its file at once (RotateSize 1)
		t.Fatal("first write dropped")
	}
	if err := os.RemoveAll(filepath.Join(dir, "mid-4")); err != nil {
		t.Fatal(err)
	}
	if !write(t, m, k, ts, 1, 100) {
		t.Fatalf("write after the directory went: %+v", m.Streams())
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamSeqs(t, dir, k); !slices.Equal(got, []int{1}) {
		t.Errorf("files hold %v", got)
	}
	if p := permOf(t, streamDirOf(dir, k)); p != 0o700 {
		t.Errorf("remade directory mode %o", p)
	}
}

// TestOnComplete: the hook hears of every file completed, after its
// rename, with its final size: by rotation, by Close, and the .part files
// of an earlier run completed at start. Never of a .part.
func TestOnComplete(t *testing.T) {
	dir := outDir(t)
	var mu sync.Mutex
	var got []Completed
	hook := func(c Completed) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, c)
		if strings.HasSuffix(c.Path, partExt) {
			t.Errorf("hook given a .part: %s", c.Path)
		}
		fi, err := os.Lstat(c.Path)
		if err != nil || fi.Size() != c.Size {
			t.Errorf("hook given %s of %d bytes before it exists so: %v, %v", c.Path, c.Size, fi, err)
		}
	}
	clk := newClock()
	m := newManager(t, Config{Dir: dir, RotateSize: 5000, Now: clk.Now, OnComplete: hook})
	k1, k2 := Key{1, 1}, Key{2, 7}
	for i := range 100 {
		write(t, m, k1, clk.Now(), i, 200)
		if i < 10 {
			write(t, m, k2, clk.Now(), i, 200)
		}
		clk.Advance(time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	want := append(completed(t, dir, k1), completed(t, dir, k2)...)
	var paths []string
	for _, c := range got {
		paths = append(paths, c.Path)
		if c.Time.After(clk.Now()) {
			t.Errorf("%s completed at %v, after the clock", c.Path, c.Time)
		}
	}
	slices.Sort(paths)
	slices.Sort(want)
	if len(want) < 4 || !slices.Equal(paths, want) {
		t.Fatalf("hook heard of %q, want every completed file %q", paths, want)
	}

	// An earlier run's .part, completed at start.
	m1 := newManager(t, Config{Dir: dir})
	write(t, m1, k2, clk.Now(), 99, 300)
	m1.abandon(t)
	left := parts(t, dir)
	got = nil
	waitRecovered(t, newManager(t, Config{Dir: dir, OnComplete: hook}))
	if len(left) != 1 || len(got) != 1 || got[0].Path != strings.TrimSuffix(left[0], partExt) {
		t.Errorf("recovery: .part %v, hook heard of %+v", left, got)
	}
}
