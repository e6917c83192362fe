// Package retention keeps the completed stream files within a budget
// (output.max_bytes, output.max_age), as tcpdump -W does: it deletes the
// oldest completed files of a stream, or of all streams, and never a .part
// file (the one being written).
//
// It keeps an index of the completed files in memory rather than walking
// the output directory on every check: one walk at start, in the
// background (capture does not wait for it), then the writer's completion
// events (Add), and a walk again every Rescan to learn of files that others
// moved or deleted. The work is done on one goroutine of its own, about
// once a second and after each batch of completions, never on the capture
// path.
//
// Deleting goes down from the output directory with openat(O_NOFOLLOW) and
// unlinkat: a symlink planted in the tree is never followed, so nothing
// outside the directory is touched.
//
// See docs/output.md, "Retention and hand-off".
package retention

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/iheap"
)

// Scope is what output.max_bytes bounds.
type Scope int

const (
	// All bounds the completed files of all streams together: the oldest
	// file of any stream goes first. It is what bounds the disk.
	All Scope = iota
	// Stream bounds each stream's completed files on its own: a busy
	// stream does not push out a quiet one's files.
	Stream
)

func (s Scope) String() string {
	if s == Stream {
		return "stream"
	}
	return "all"
}

// ParseScope reads "all" or "stream".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "all":
		return All, nil
	case "stream":
		return Stream, nil
	}
	return All, fmt.Errorf("%q is not a retention scope (want all or stream)", s)
}

// Reason says which limit a file was deleted for.
type Reason int

const (
	// MaxBytes: the stream's (or all streams') completed files were over
	// Config.MaxBytes.
	MaxBytes Reason = iota
	// MaxAge: the file was completed longer ago than Config.MaxAge.
	MaxAge
	// NumReasons is the number of reasons.
	NumReasons
)

func (r Reason) String() string {
	switch r {
	case MaxBytes:
		return "max_bytes"
	case MaxAge:
		return "max_age"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// Defaults of Config.
const (
	DefaultInterval = time.Second
	DefaultRescan   = 10 * time.Minute
	// DefaultQueue holds the completions of a burst (every stream's file
	// completed by the same rotation tick).
	DefaultQueue = 65536
	dropLogEvery = time.Minute
	fileExt      = ".pcapng"
)

// Config configures a Keeper.
type Config struct {
	// Dir is the writer's output directory (writer.Config.Dir). Files are
	// DIR/mid-<mid>/sid-<sid>/<name>.pcapng; nothing else is touched.
	Dir string
	// MaxBytes bounds the completed files' bytes, of each stream or of
	// all (Scope); 0 = no bound.
	MaxBytes int64
	// MaxAge deletes a file completed (last modified) longer ago than
	// this, whatever the scope; 0 = no bound.
	MaxAge time.Duration
	// Scope is what MaxBytes bounds.
	Scope Scope
	// Hold reports a file that must not be deleted yet (its hand-off is
	// queued or running). Retention waits for it: the deletions of that
	// stream (Scope Stream) or of all (Scope All, and MaxAge) stop at it
	// until it is released. Nil: nothing is held.
	Hold func(path string) bool
	// Logger gets a line per deletion; nil discards them.
	Logger *slog.Logger
	// FileAttr is how a file is named in log lines; default
	// slog.String("file", path).
	FileAttr func(path string) slog.Attr
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Interval is how often the limits are checked besides after each
	// completion; default DefaultInterval.
	Interval time.Duration
	// Rescan is how often the directory is walked again; default
	// DefaultRescan, negative never (after the first walk).
	Rescan time.Duration
	// Queue is how many completions may wait for the Keeper's goroutine;
	// default DefaultQueue. Add drops (and counts) beyond it.
	Queue int
}

// Stats are a Keeper's counters.
type Stats struct {
	// DeletedFiles and DeletedBytes count the files deleted, by reason.
	DeletedFiles, DeletedBytes [NumReasons]uint64
	// Errors counts deletions that failed (other than of a file already
	// gone), and files refused because they are not regular files.
	Errors uint64
	// Dropped counts completions Add dropped because its queue was full:
	// their files are indexed by the next walk.
	Dropped uint64
	// Files and Bytes are the completed files the index holds now.
	Files int
	Bytes int64
	// Scanned is true once the first walk is done: nothing is deleted
	// before (the oldest files are not known until then).
	Scanned bool
}

// file is a completed file in the index.
type file struct {
	st      *stream
	name    string
	size    int64
	mtime   int64  // unix ns
	seq     uint64 // when it was indexed, for merging a walk
	heapIdx int
}

// stream is a stream directory's completed files, oldest first.
type stream struct {
	dir   string // "mid-<mid>/sid-<sid>"
	files []*file
	bytes int64
	over  bool // in Keeper.over
}

type event struct {
	check bool // re-stat (after a hand-off), not a new file
	path  string
	size  int64
	mtime int64
}

type walkResult struct {
	files []walked
	err   error // some directory could not be read
}

type walked struct {
	dir, name   string
	size, mtime int64
}

// Keeper enforces the limits. Add and Check may be called from any
// goroutine and never block.
type Keeper struct {
	cfg    Config
	log    *slog.Logger
	root   int // fd of Dir
	events chan event
	stop   chan struct{}
	done   chan struct{}

	startOnce sync.Once

	dropped atomic.Uint64

	// The index; owned by the run goroutine.
	streams map[string]*stream
	byAge   ageHeap
	over    map[*stream]struct{}
	total   int64
	nfiles  int
	seq     uint64
	scanned bool
	// While a walk runs: when it started, and what was removed from the
	// index since (the walk may still have seen it).
	walking     bool
	walkSeq     uint64
	walkRemoved map[string]bool
	lastWalk    time.Time
	lastDrops   uint64
	lastDropLog time.Time

	mu    sync.Mutex
	stats Stats
}

// New opens cfg.Dir. Add may be called from then on; nothing is walked or
// deleted before Start.
func New(cfg Config) (*Keeper, error) {
	if cfg.Dir == "" {
		return nil, errors.New("retention: no output directory")
	}
	if cfg.MaxBytes < 0 || cfg.MaxAge < 0 || cfg.Interval < 0 || cfg.Queue < 0 {
		return nil, errors.New("retention: negative limit, interval or queue")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Rescan == 0 {
		cfg.Rescan = DefaultRescan
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FileAttr == nil {
		cfg.FileAttr = func(p string) slog.Attr { return slog.String("file", p) }
	}
	cfg.Dir = filepath.Clean(cfg.Dir)
	root, err := unix.Open(cfg.Dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("retention: open %s: %w", cfg.Dir, err)
	}
	k := &Keeper{
		cfg:     cfg,
		log:     cfg.Logger,
		root:    root,
		events:  make(chan event, cfg.Queue),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		streams: map[string]*stream{},
		over:    map[*stream]struct{}{},
	}
	return k, nil
}

// Start starts the Keeper's goroutine, which walks the directory in the
// background and then enforces the limits. The daemon calls it once the
// writers hold the directory's lock: a start refused because another
// daemon writes there deletes nothing. Calling it again does nothing.
func (k *Keeper) Start() {
	k.startOnce.Do(func() { go k.run() })
}

// Add indexes a completed file (writer.Config.OnComplete), completed at
// mtime. It never blocks: with the queue full, the file is counted in
// Dropped and left to the next walk.
func (k *Keeper) Add(path string, size int64, mtime time.Time) {
	k.send(event{path: path, size: size, mtime: mtime.UnixNano()})
}

// Check has the Keeper look at path again: after a hand-off, which may
// have moved the file away. It never blocks (dropped, and counted, if the
// queue is full).
func (k *Keeper) Check(path string) { k.send(event{check: true, path: path}) }

func (k *Keeper) send(e event) {
	select {
	case k.events <- e:
	default:
		k.dropped.Add(1)
	}
}

// Stats returns the counters. Safe for concurrent use.
func (k *Keeper) Stats() Stats {
	k.mu.Lock()
	st := k.stats
	k.mu.Unlock()
	st.Dropped = k.dropped.Load()
	return st
}

// Close stops the Keeper's goroutine (and a walk in progress) and waits
// for it. Calling it again does nothing.
func (k *Keeper) Close() error {
	select {
	case <-k.stop:
		return nil
	default:
	}
	close(k.stop)
	k.startOnce.Do(func() { close(k.done) }) // never started
	<-k.done
	return unix.Close(k.root)
}

func (k *Keeper) run() {
	defer close(k.done)
	walks := make(chan walkResult, 1)
	k.startWalk(walks)
	tick := time.NewTicker(k.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-k.stop:
			if k.walking {
				<-walks // it stops at the next directory
			}
			return
		case e := <-k.events:
			k.apply(e)
			// The rest of a burst, then one pass.
			for n := len(k.events); n > 0; n-- {
				k.apply(<-k.events)
			}
			k.enforce()
		case w := <-walks:
			k.merge(w)
			k.enforce()
		case <-tick.C:
			k.logDrops()
			if !k.walking && k.cfg.Rescan > 0 && k.cfg.Now().Sub(k.lastWalk) >= k.cfg.Rescan {
				k.startWalk(walks)
			}
			k.enforce()
		}
	}
}

// logDrops says when completions were dropped, once a minute at most.
func (k *Keeper) logDrops() {
	n := k.dropped.Load()
	if n == k.lastDrops {
		return
	}
	now := k.cfg.Now()
	if now.Sub(k.lastDropLog) < dropLogEvery {
		return
	}
	k.log.Warn("retention: completion events dropped (queue full); the next walk of the output directory indexes their files",
		"dropped", n-k.lastDrops, "next_walk_within", k.cfg.Rescan)
	k.lastDrops, k.lastDropLog = n, now
}

// split names the stream directory and file of a path under Dir, or
// returns ok false for anything else.
func (k *Keeper) split(path string) (dir, name string, ok bool) {
	rel, err := filepath.Rel(k.cfg.Dir, filepath.Clean(path))
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if len(parts) != 3 || !isStreamDir(parts[0], parts[1]) || !isFileName(parts[2]) {
		return "", "", false
	}
	return parts[0] + "/" + parts[1], parts[2], true
}

// isStreamDir: mid-<decimal>/sid-<decimal>, as the writer names them.
func isStreamDir(mid, sid string) bool {
	num := func(s, prefix string) bool {
		v, ok := strings.CutPrefix(s, prefix)
		if !ok || v == "" || (len(v) > 1 && v[0] == '0') {
			return false
		}
		_, err := strconv.ParseUint(v, 10, 32)
		return err == nil
	}
	return num(mid, "mid-") && num(sid, "sid-")
}

// isFileName: a completed file; a .part ends otherwise.
func isFileName(name string) bool {
	return strings.HasSuffix(name, fileExt) && len(name) > len(fileExt) && name[0] != '.'
}

func (k *Keeper) pathOf(f *file) string {
	return filepath.Join(k.cfg.Dir, filepath.FromSlash(f.st.dir), f.name)
}

func (k *Keeper) apply(e event) {
	dir, name, ok := k.split(e.path)
	if !ok {
		return // not a completed stream file of this directory
	}
	if e.check {
		f := k.lookup(dir, name)
		if f == nil {
			return
		}
		var st unix.Stat_t
		if err := k.statAt(f, &st); errors.Is(err, unix.ENOENT) {
			k.remove(f) // moved away by the hand-off
		}
		return
	}
	k.insert(dir, name, e.size, e.mtime)
}

func (k *Keeper) lookup(dir, name string) *file {
	st := k.streams[dir]
	if st == nil {
		return nil
	}
	for i := len(st.files) - 1; i >= 0; i-- { // the newest are looked up
		if st.files[i].name == name {
			return st.files[i]
		}
	}
	return nil
}

// insert indexes a file, or updates it if indexed.
func (k *Keeper) insert(dir, name string, size, mtime int64) {
	if f := k.lookup(dir, name); f != nil {
		k.account(f.st, size-f.size, 0)
		f.size = size
		k.maybeOver(f.st)
		return
	}
	st := k.streams[dir]
	if st == nil {
		st = &stream{dir: dir}
		k.streams[dir] = st
	}
	k.seq++
	f := &file{st: st, name: name, size: size, mtime: mtime, seq: k.seq}
	// Oldest first: a completion is almost always the newest.
	i := len(st.files)
	for i > 0 && older(f, st.files[i-1]) {
		i--
	}
	st.files = slices.Insert(st.files, i, f)
	heap.Push(&k.byAge, f)
	k.account(st, size, 1)
	k.maybeOver(st)
}

func (k *Keeper) maybeOver(st *stream) {
	if k.cfg.Scope == Stream && k.cfg.MaxBytes > 0 && st.bytes > k.cfg.MaxBytes && !st.over {
		st.over = true
		k.over[st] = struct{}{}
	}
}

func (k *Keeper) account(st *stream, bytes int64, files int) {
	st.bytes += bytes
	k.total += bytes
	k.nfiles += files
	k.mu.Lock()
	k.stats.Files, k.stats.Bytes = k.nfiles, k.total
	k.mu.Unlock()
}

// remove drops f from the index.
func (k *Keeper) remove(f *file) {
	st := f.st
	if i := slices.Index(st.files, f); i >= 0 {
		st.files = slices.Delete(st.files, i, i+1)
	}
	if f.heapIdx >= 0 {
		heap.Remove(&k.byAge, f.heapIdx)
	}
	k.account(st, -f.size, -1)
	if len(st.files) == 0 {
		delete(k.streams, st.dir)
		if st.over {
			delete(k.over, st)
			st.over = false
		}
	}
	if k.walking {
		k.walkRemoved[st.dir+"/"+f.name] = true
	}
}

// enforce deletes what the limits say, oldest first, stopping at a held
// file (retention waits for its hand-off).
func (k *Keeper) enforce() {
	if !k.scanned {
		return
	}
	if k.cfg.MaxAge > 0 {
		cutoff := k.cfg.Now().Add(-k.cfg.MaxAge).UnixNano()
		for len(k.byAge) > 0 && k.byAge[0].mtime < cutoff {
			if !k.delete(k.byAge[0], MaxAge) {
				break
			}
		}
	}
	if k.cfg.MaxBytes == 0 {
		return
	}
	if k.cfg.Scope == All {
		for k.total > k.cfg.MaxBytes && len(k.byAge) > 0 {
			if !k.delete(k.byAge[0], MaxBytes) {
				break
			}
		}
		return
	}
	for st := range k.over {
		for st.bytes > k.cfg.MaxBytes && len(st.files) > 0 {
			if !k.delete(st.files[0], MaxBytes) {
				break
			}
		}
		if st.bytes <= k.cfg.MaxBytes && st.over {
			st.over = false
			delete(k.over, st)
		}
	}
}

// delete removes f from the disk and the index, counting and logging it.
// It returns false if f is held (and stays), true otherwise, whether the
// file was deleted, was gone already or could not be deleted (then it is
// forgotten until the next walk, so that a failing file is not retried
// every second).
func (k *Keeper) delete(f *file, why Reason) bool {
	path := k.pathOf(f)
	if k.cfg.Hold != nil && k.cfg.Hold(path) {
		return false
	}
	size, err := k.unlink(f)
	k.remove(f)
	switch {
	case errors.Is(err, unix.ENOENT):
		k.log.Debug("retention: file already gone", k.cfg.FileAttr(path))
	case err != nil:
		k.mu.Lock()
		k.stats.Errors++
		k.mu.Unlock()
		k.log.Warn("retention: cannot delete a stream file; left until the next walk of the output directory",
			k.cfg.FileAttr(path), "reason", why.String(), "error", err)
	default:
		k.mu.Lock()
		k.stats.DeletedFiles[why]++
		k.stats.DeletedBytes[why] += uint64(size)
		k.mu.Unlock()
		k.log.Info("retention: deleted a completed stream file", k.cfg.FileAttr(path), "reason", why.String(), "bytes", size,
			"completed", time.Unix(0, f.mtime).UTC())
	}
	return true
}

// openStreamDir opens f's stream directory from the output directory, one
// component at a time, refusing symlinks.
func (k *Keeper) openStreamDir(f *file) (int, error) {
	mid, sid, _ := strings.Cut(f.st.dir, "/")
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	midFD, err := unix.Openat(k.root, mid, flags, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", mid, err)
	}
	defer unix.Close(midFD)
	sidFD, err := unix.Openat(midFD, sid, flags, 0)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", f.st.dir, err)
	}
	return sidFD, nil
}

func (k *Keeper) statAt(f *file, st *unix.Stat_t) error {
	fd, err := k.openStreamDir(f)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fstatat(fd, f.name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// unlink deletes f if it is a regular file, returning its size.
func (k *Keeper) unlink(f *file) (int64, error) {
	fd, err := k.openStreamDir(f)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstatat(fd, f.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return 0, fmt.Errorf("not a regular file (mode %o): refused", st.Mode)
	}
	if err := unix.Unlinkat(fd, f.name, 0); err != nil {
		return 0, fmt.Errorf("unlink: %w", err)
	}
	return st.Size, nil
}

// startWalk walks Dir on a goroutine of its own; the result comes on ch.
func (k *Keeper) startWalk(ch chan<- walkResult) {
	k.walking, k.walkSeq, k.walkRemoved = true, k.seq, map[string]bool{}
	k.lastWalk = k.cfg.Now()
	go func() { ch <- k.walk() }()
}

// walk lists DIR/mid-*/sid-*/*.pcapng, regular files only: a symlink (to
// a file or a directory) is not followed, nor listed.
func (k *Keeper) walk() walkResult {
	var res walkResult
	fail := func(err error) {
		if res.err == nil {
			res.err = err
		}
	}
	mids, err := os.ReadDir(k.cfg.Dir)
	if err != nil {
		res.err = err
		return res
	}
	for _, md := range mids {
		if !md.IsDir() || !strings.HasPrefix(md.Name(), "mid-") {
			continue
		}
		midDir := filepath.Join(k.cfg.Dir, md.Name())
		sids, err := os.ReadDir(midDir)
		if err != nil {
			fail(err)
			continue
		}
		for _, sd := range sids {
			select {
			case <-k.stop:
				fail(errors.New("stopped"))
				return res
			default:
			}
			if !sd.IsDir() || !isStreamDir(md.Name(), sd.Name()) {
				continue
			}
			sidDir := filepath.Join(midDir, sd.Name())
			files, err := os.ReadDir(sidDir)
			if err != nil {
				fail(err)
				continue
			}
			for _, fe := range files {
				if !fe.Type().IsRegular() || !isFileName(fe.Name()) {
					continue
				}
				fi, err := fe.Info()
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				if err != nil {
					fail(err)
					continue
				}
				res.files = append(res.files, walked{dir: md.Name() + "/" + sd.Name(), name: fe.Name(),
					size: fi.Size(), mtime: fi.ModTime().UnixNano()})
			}
		}
	}
	return res
}

// merge takes a walk's result into the index: files it found that the
// index lacks are added (unless removed meanwhile), and, if the walk read
// every directory, files indexed before it started that it did not find
// are dropped (moved or deleted by someone else).
func (k *Keeper) merge(w walkResult) {
	k.walking = false
	removed := k.walkRemoved
	k.walkRemoved = nil
	if w.err != nil {
		k.log.Warn("retention: cannot read all of the output directory; the index may miss files", "dir", k.cfg.Dir, "error", w.err)
	}
	if w.err == nil {
		found := make(map[string]map[string]bool, len(k.streams))
		for _, f := range w.files {
			m := found[f.dir]
			if m == nil {
				m = map[string]bool{}
				found[f.dir] = m
			}
			m[f.name] = true
		}
		var gone []*file
		for dir, st := range k.streams {
			for _, f := range st.files {
				if f.seq <= k.walkSeq && !found[dir][f.name] {
					gone = append(gone, f)
				}
			}
		}
		for _, f := range gone {
			k.remove(f)
		}
	}
	for _, f := range w.files {
		if removed[f.dir+"/"+f.name] {
			continue
		}
		if k.lookup(f.dir, f.name) == nil {
			k.insert(f.dir, f.name, f.size, f.mtime)
		}
	}
	if !k.scanned {
		k.scanned = true
		k.mu.Lock()
		k.stats.Scanned = true
		k.mu.Unlock()
		k.log.Info("retention: indexed the completed stream files", "dir", k.cfg.Dir, "files", k.nfiles, "bytes", k.total,
			"max_bytes", k.cfg.MaxBytes, "max_age", k.cfg.MaxAge, "scope", k.cfg.Scope.String())
	}
}

// older orders files by completion time, then name.
func older(a, b *file) bool {
	if a.mtime != b.mtime {
		return a.mtime < b.mtime
	}
	return cmp.Or(strings.Compare(a.st.dir, b.st.dir), strings.Compare(a.name, b.name)) < 0
}

// ageHeap holds every indexed file, oldest at the top.
type ageHeap = iheap.Heap[*file]

func (f *file) Before(o *file) bool { return older(f, o) }
func (f *file) SetIndex(i int)      { f.heapIdx = i }
