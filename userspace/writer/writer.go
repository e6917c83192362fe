// Package writer manages the per-stream pcapng files of the live capture
// daemon: one file at a time per Jmirror stream (mid, sid), rotated by size
// and age, written under a .part name and renamed when complete, with a
// bounded number of open files, and with disk faults turned into counted
// drops instead of corrupt files or a stuck daemon.
//
// See docs/output.md for the operator's view.
package writer

import (
	"cmp"
	"container/heap"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/iheap"
	"github.com/jmxdp/jmxdp/userspace/logid"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
)

// Key names a Jmirror stream: mirror id and session id.
type Key struct{ MID, SID uint32 }

// DropReason says why a packet never reached a file.
type DropReason int

const (
	// DropDisk: writing or creating the file failed, or the stream was
	// waiting to retry after such a fault. Includes packets that were
	// accepted (buffered) and lost when their write failed.
	DropDisk DropReason = iota
	// DropQueue: the daemon's queue to the writer was full (via Drop).
	DropQueue
	// DropReassembly: the outer IPv4 fragments never completed (via Drop).
	DropReassembly
	// DropInvalid: Write refused the packet (no router address, unknown
	// link kind, timestamp outside pcapng's range, longer than
	// pcapng.MaxPacketLen).
	DropInvalid
	// DropClosed: Write after Close.
	DropClosed
	// DropOther: any other reason given to Drop.
	DropOther
	// NumDropReasons is the number of reasons, for arrays indexed by them.
	NumDropReasons
)

func (r DropReason) String() string {
	switch r {
	case DropDisk:
		return "disk"
	case DropQueue:
		return "queue"
	case DropReassembly:
		return "reassembly"
	case DropInvalid:
		return "invalid"
	case DropClosed:
		return "closed"
	case DropOther:
		return "other"
	}
	return fmt.Sprintf("DropReason(%d)", int(r))
}

// Config configures a Manager.
type Config struct {
	// Dir is the output directory. It is created (mode 0700) if missing;
	// stream subdirectories are created with mode 0700, files 0600.
	Dir string
	// Group, if not 0, is the group given read access to the output:
	// directories get mode 2750 (setgid: what is made in them takes their
	// group) and that group, files 0640. Directories of an earlier run
	// are brought to the modes of this one when New starts.
	Group uint32
	// IDs names streams in log lines; nil logs their ids and paths
	// (logid).
	IDs *logid.Namer
	// RotateSize closes the current file of a stream once it reaches this
	// many bytes; 0 means never.
	RotateSize int64
	// RotateAge closes the current file of a stream once it is this old
	// (since its first packet), even when the stream has gone quiet; 0
	// means never.
	RotateAge time.Duration
	// MaxOpen is the most files open at once; the least recently flushed
	// is closed to open another. 0: DefaultMaxOpen(), from RLIMIT_NOFILE.
	MaxOpen int
	// AllowUntrustedDir writes into an output directory that another
	// user owns or can write (pcapng.CheckTrustedDir), where links could
	// be planted; refused otherwise.
	AllowUntrustedDir bool
	// MaxStreams bounds the streams remembered at once (their state
	// costs StreamBytes each): beyond it the least recently seen are
	// completed and forgotten (Stats.StreamEvictions). 0: no bound.
	MaxStreams int
	// FlushInterval: Tick writes out buffered packets that have waited
	// this long. Default 1s.
	FlushInterval time.Duration
	// RetryInterval: after a write fault, a stream's packets are dropped
	// without touching the disk until this much time has passed, then the
	// next packet retries. Default 1s.
	RetryInterval time.Duration
	// BufferSize is the largest buffer a stream holds between two writes
	// to its file; default DefaultBufferSize. A stream
	// starts with 1 KiB and doubles on each buffer it fills.
	BufferSize int
	// BufferMemory bounds the buffers of all streams together: beyond it,
	// the buffers that have waited longest are written out early. Default
	// DefaultBufferMemory.
	BufferMemory int64
	// PacketComments adds a "router=<address>" comment to every packet.
	// Off by default: each router has its own interface in the file,
	// named after it.
	PacketComments bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the few lines the Manager logs; nil discards them.
	Logger *slog.Logger

	// SingleFile writes each stream to one file for the whole run,
	// DIR/mid-<mid>/sid-<sid>.pcapng, as `jmxdp decode --out` does: written
	// as .part, renamed over an existing file of that name by Close; no
	// rotation (RotateSize and RotateAge are ignored), no lock file and no
	// recovery of an earlier run's .part files.
	SingleFile bool

	// OnComplete, if set, is called with each file the Manager completes
	// (renamed to .pcapng: by rotation, by Close, by a retried rename, or
	// recovered from an earlier run), right after the rename, on the
	// goroutine that writes (a capture goroutine), on one of Close's
	// workers, or on one of the background recovery's: it must be safe
	// for concurrent use and must not block. Hand the file to a bounded
	// queue and return.
	OnComplete func(Completed)

	// CloseWorkers is how many files Close (and the background recovery
	// of an earlier run's .part files) complete at once: each flush,
	// close and rename is a few system calls that wait on the file
	// system, so several in flight keep it busy. 0: DefaultCloseWorkers();
	// 1: one after another. Close uses at most MaxOpen.
	CloseWorkers int

	// shard: a Group's Manager after the first, which took the lock and
	// completed what an earlier run left.
	shard bool
	// recoverHook, if set, is called by the background recovery before
	// each .part file it completes: tests hold it there.
	recoverHook func(part string)
}

// Completed is a file a Manager has completed, for Config.OnComplete.
type Completed struct {
	// Path is the .pcapng file, under Config.Dir.
	Path string
	// Size is its size in bytes.
	Size int64
	// Time is when it was completed (Manager clock), or, for a file
	// completed late (an earlier run's, a retried rename), when it was
	// last written (its modification time).
	Time time.Time
}

// completed tells Config.OnComplete about a file renamed to path. A size
// below 0 or a zero time is read from the file: a file completed late
// (recovered, or its rename retried) was last written earlier.
func (m *Manager) completed(path string, size int64, at time.Time) {
	if m.cfg.OnComplete == nil {
		return
	}
	if size < 0 || at.IsZero() {
		fi, err := os.Lstat(path)
		if err != nil {
			return // gone already: nothing to hand on
		}
		size, at = fi.Size(), fi.ModTime()
	}
	m.cfg.OnComplete(Completed{Path: path, Size: size, Time: at})
}

// Stats are the Manager's totals.
type Stats struct {
	// Packets and Bytes (packet data, without pcapng framing) written to
	// files. A packet Write accepted is counted here once it is in the
	// file, in Drops[DropDisk] if its write failed, and in Buffered
	// until then.
	Packets, Bytes uint64
	// Buffered counts packets accepted but not yet written to a file.
	Buffered uint64
	// Drops counts the packets dropped, by reason.
	Drops [NumDropReasons]uint64
	// FilesCreated counts files created; FilesCompleted those renamed
	// from .part to .pcapng; FilesRemoved those deleted because all their
	// packets were lost to faults.
	FilesCreated, FilesCompleted, FilesRemoved uint64
	// RotationsSize and RotationsAge count files completed by rotation.
	RotationsSize, RotationsAge uint64
	// Evictions counts files closed to stay under MaxOpen, Reopens files
	// reopened to append after that.
	Evictions, Reopens uint64
	// StreamEvictions counts streams forgotten to stay under MaxStreams
	// (their files completed first).
	StreamEvictions uint64
	// Flushes counts buffers written to files: when full, when older than
	// FlushInterval (FlushesAge), or early because BufferMemory was
	// reached (FlushesMemory).
	Flushes, FlushesAge, FlushesMemory uint64
	// BufferBytes is the memory the streams' buffers hold now.
	BufferBytes int64
	// OpenFiles is the number of files open now, Streams the number of
	// streams the Manager remembers.
	OpenFiles, Streams int
	// Faults is the number of fault conditions (kinds of error, such as
	// "no space left on device") not yet cleared by a successful write.
	Faults int
	// RecoveredFiles counts the .part files of an earlier run that the
	// background recovery New starts completed, RecoveredBytes the torn
	// bytes it cut off them; RecoveryPending is how many it has not yet
	// looked at (0 once it is over, or stopped by Close).
	RecoveredFiles  uint64
	RecoveredBytes  int64
	RecoveryPending int
}

// StreamStats are one stream's counters. They restart if the stream is
// forgotten after a long idle time (see Manager).
type StreamStats struct {
	Key Key
	// Packets and Bytes written to files.
	Packets, Bytes uint64
	// Drops is the total of DropsByReason.
	Drops         uint64
	DropsByReason [NumDropReasons]uint64
	// FilesCompleted counts this stream's files renamed to .pcapng.
	FilesCompleted uint64
	// CurrentFile is the .part file being written, "" if none.
	CurrentFile string
	// LastWrite is when Write last accepted a packet (Manager clock), as
	// of the stream's last write to its file (so behind by at most
	// FlushInterval); zero if never.
	LastWrite time.Time
}

const (
	// DefaultBufferSize is Config.BufferSize's default: measured by hand
	// (docs/bench.md), 16 KiB buffers cost 12-14% less CPU than
	// 64 KiB ones at 100 and at 3000 streams (the buffers being written to
	// stay in cache; one write a 16 KiB costs less than the misses), and
	// 8 KiB ones more (twice the writes).
	DefaultBufferSize = 16 << 10
	// DefaultBufferMemory is Config.BufferMemory's default.
	DefaultBufferMemory = 256 << 20
	defaultInterval     = time.Second
	minIdle             = 10 * time.Minute
	sweepEvery          = time.Minute
	nameLayout          = "20060102T150405.000000000Z"
	partExt             = ".part"
	fileExt             = ".pcapng"
	maxSuffix           = 1000
	lockName            = ".jmxdp-writer.lock"
	maxUnrenamed        = 10000
)

type rotation int

const (
	rotSize rotation = iota
	rotAge
	rotClose
	rotEvict // the stream is forgotten to stay under MaxStreams
)

// stream is a stream's state. It must stay small: it lives as long as the
// stream is active (and minIdle after).
type stream struct {
	key            Key
	packets, bytes uint64
	drops          [NumDropReasons]uint64
	filesCompleted uint64
	// lastWrite is lastAccepted as of the stream's last flush, for
	// Streams: an atomic store per packet would wait for the packet's
	// copy into a cold buffer to complete.
	lastWrite    atomic.Int64 // unix ns, Manager clock; 0 = never
	lastAccepted int64        // when WriteAt last took a packet
	lastSeen     int64        // last Write or Drop
	lastName     int64        // name time of the newest file: names only increase
	cur          *curFile

	// Fault state: set while the stream waits to retry.
	fault      *faultCond
	faultEpoch uint32
	probe      bool  // the next write is flushed at once to test the disk
	retryAt    int64 // unix ns
	// failedBytes is the size of the write that failed last.
	failedBytes int

	// dirReady: the stream's directory exists (made by this Manager).
	dirReady bool

	// curStore is where the stream's current file lives when it is free
	// (almost always): one allocation for the stream, its file and its
	// Writer, which a packet then finds in neighbouring cache lines
	// rather than at the end of three pointers.
	curStore curFile
}

// curFile is a stream's current (.part) file and its writer, which keeps
// buffering while the file is closed (suspended): the file is only open
// to be written to, and at most MaxOpen are.
type curFile struct {
	s *stream
	w *pcapng.Writer
	// wStore is w's storage when the file was created here (w may be
	// another file's Writer after a restart).
	wStore  pcapng.Writer
	start   time.Time // Manager clock at creation: age is measured from it
	name    int64     // the time in the name, unix ns
	suffix  int       // -N on a name clash
	heapIdx int

	// open: in the LRU list of open files.
	open       bool
	prev, next *curFile
	// dirtySince is when the buffer got its oldest packet (unix ns), 0
	// if it is empty.
	dirtySince int64

	seenPkts  uint64 // committed packets already counted
	seenBytes uint64
	pending   uint64 // accepted, not committed
}

// dirtyEntry is a buffer in the order it became dirty; stale once the
// buffer was written (since no longer matches).
type dirtyEntry struct {
	c     *curFile
	since int64
}

// faultCond is a kind of write fault ("no space left on device"), logged
// once when it appears and once when writes succeed again.
type faultCond struct {
	kind      string
	active    bool
	epoch     uint32 // bumped when cleared: waiting streams resume at once
	dropped   uint64
	since     time.Time
	lastFault time.Time
	okSince   time.Time // a probe succeeded then, and nothing failed since; zero: failing
}

// Manager writes the streams' files. Write, WriteAt, SetClock, Drop, Tick
// and Close must be called from one goroutine; Stats and Streams may be
// called from any.
//
// A packet goes to its stream's buffer with no system call. A file is only
// written to when its buffer is full, older than FlushInterval, or
// BufferMemory is reached, and only then opened if it was closed to stay
// under MaxOpen: with more streams than open files, a reopen costs one
// open per buffer, not one per packet.
//
// A stream that has no current file and has seen no packet for twice
// RotateAge (at least 10 minutes) is forgotten: its StreamStats counters
// restart if it comes back; the totals in Stats do not.
type Manager struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	idleLimit time.Duration
	opts      pcapng.Options
	// clock is the time SetClock gave, used by WriteAt: one clock read a
	// batch, not one a packet. Zero: read now.
	clock time.Time

	// mu guards what Stats and Streams read: the streams map, the
	// counters in stream and in totals, and stream.cur. The writer
	// goroutine reads them without the lock (it is their only writer).
	mu      sync.Mutex
	streams map[Key]*stream
	totals  Stats
	// pending is the packets accepted and not yet in a file, kept by the
	// writer goroutine; buffered is its copy for Stats, published once a
	// batch (SetClock), a Write or a Tick: an atomic add per packet cost
	// the writer a tenth of its time, a lock more.
	pending  int64
	buffered atomic.Int64
	// memory is what the buffers hold (pcapng.Options.Memory).
	memory atomic.Int64

	lruHead, lruTail *curFile
	open             int
	dirty            []dirtyEntry // FIFO from dirtyHead
	dirtyHead        int
	ages             ageHeap
	conds            map[string]*faultCond
	unrenamed        []string // completed .part files whose rename failed
	lastSweep        time.Time
	lastRenameRetry  time.Time
	invalidLogged    bool
	evictLogged      bool
	// midOK: mids whose directory this Manager checked is no link.
	midOK  map[uint32]bool
	closed bool
	// umaskKeepsMode: the umask at New left the modes of new directories
	// and files (dirMode) alone, so they need no chmod.
	umaskKeepsMode bool
	dirMode        os.FileMode
	lock           *os.File
	// rec is the background recovery of an earlier run's .part files,
	// nil if there was nothing to recover (set by New, then read-only).
	rec *recovery
	// pendingRotation is a SetRotation that the next Tick applies.
	pendingRotation atomic.Pointer[rotationChange]
}

// New makes a Manager writing under cfg.Dir. It takes a lock on the
// directory (one Manager per directory), lists the .part files a previous
// run left behind (crash, kill), and returns while a background recovery
// completes them: each is repaired (a torn tail cut off) and renamed to
// .pcapng, or removed if it holds no packet (see recovery.go).
func New(cfg Config) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("writer: no output directory")
	}
	if cfg.RotateSize < 0 || cfg.RotateAge < 0 || cfg.FlushInterval < 0 || cfg.RetryInterval < 0 || cfg.MaxOpen < 0 || cfg.BufferSize < 0 || cfg.BufferMemory < 0 {
		return nil, errors.New("writer: negative size, interval or count in config")
	}
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen = DefaultMaxOpen()
	}
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = defaultInterval
	}
	if cfg.RetryInterval == 0 {
		cfg.RetryInterval = defaultInterval
	}
	if cfg.BufferMemory == 0 {
		cfg.BufferMemory = DefaultBufferMemory
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = DefaultBufferSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SingleFile {
		cfg.RotateSize, cfg.RotateAge = 0, 0
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		cfg:       cfg,
		log:       cfg.Logger,
		now:       cfg.Now,
		idleLimit: max(2*cfg.RotateAge, minIdle),
		streams:   make(map[Key]*stream),
		conds:     make(map[string]*faultCond),
	}
	m.dirMode, _ = pcapng.Modes(cfg.Group)
	m.umaskKeepsMode = umaskKeepsMode(m.dirMode.Perm())
	m.opts = pcapng.Options{BufferSize: cfg.BufferSize, Exclusive: !cfg.SingleFile, NoPacketComments: !cfg.PacketComments, Memory: &m.memory,
		UmaskKeepsMode: m.umaskKeepsMode, GID: cfg.Group}
	if err := pcapng.MkdirAllGroup(cfg.Dir, cfg.Group); err != nil {
		return nil, fmt.Errorf("writer: output directory: %w", err)
	}
	fi, err := os.Stat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("writer: output directory: %w", err)
	}
	if cfg.Group != 0 || fi.Mode()&os.ModeSetgid != 0 {
		// With a group, the setgid bit on it is what gives new files
		// the group; without, a run with a group left it: close it.
		if err := m.fixDir(cfg.Dir); err != nil {
			return nil, fmt.Errorf("writer: output directory: %w", err)
		}
		if fi, err = os.Stat(cfg.Dir); err != nil {
			return nil, fmt.Errorf("writer: output directory: %w", err)
		}
	}
	if !cfg.shard {
		if err := pcapng.CheckTrustedDir(cfg.Dir); err != nil {
			if !cfg.AllowUntrustedDir {
				return nil, fmt.Errorf("writer: %w (output.allow_untrusted_dir writes there anyway)", err)
			}
			m.log.Warn("writing into an output directory other users can change, as output.allow_untrusted_dir says", "err", err)
		}
	}
	if others := fi.Mode().Perm() &^ m.dirMode.Perm(); others != 0 {
		m.log.Warn("output directory is accessible to other users; intercepted traffic should not be",
			"dir", cfg.Dir, "mode", fmt.Sprintf("%o", fi.Mode().Perm()))
	}
	if !cfg.shard && !cfg.SingleFile {
		if err := m.takeLock(); err != nil {
			return nil, err
		}
		m.startRecovery(m.findParts())
	}
	now := m.now()
	m.lastSweep, m.lastRenameRetry = now, now
	return m, nil
}

func (m *Manager) takeLock() error {
	path := filepath.Join(m.cfg.Dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("writer: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("writer: %s is in use by another writer (lock %s held)", m.cfg.Dir, path)
		}
		return fmt.Errorf("writer: lock %s: %w", path, err)
	}
	m.lock = f
	return nil
}

// SetClock sets the time WriteAt takes as now until the next call: the
// caller reads the clock once for a batch of packets. The zero time makes
// WriteAt read the clock itself again.
func (m *Manager) SetClock(now time.Time) {
	m.clock = now
	m.publish()
	if m.pendingRotation.Load() != nil { // a reload: one load a batch
		m.applyRotation()
	}
}

func (m *Manager) publish() {
	if m.buffered.Load() != m.pending {
		m.buffered.Store(m.pending)
	}
}

// Write writes one packet of stream k. It returns false if the packet was
// dropped (and counted). It does not block on anything but the file system
// and never panics on any input.
func (m *Manager) Write(k Key, ts time.Time, router netip.Addr, kind pcapng.LinkKind, data []byte) bool {
	ok := m.write(k, pcapng.Nanos(ts), router, kind, data, m.now())
	m.publish()
	return ok
}

// WriteAt is Write with the packet's time in nanoseconds since 1970, and
// now taken from SetClock: the capture's per-packet path.
func (m *Manager) WriteAt(k Key, ns uint64, router netip.Addr, kind pcapng.LinkKind, data []byte) bool {
	now := m.clock
	if now.IsZero() {
		now = m.now()
	}
	return m.write(k, ns, router, kind, data, now)
}

func (m *Manager) write(k Key, ns uint64, router netip.Addr, kind pcapng.LinkKind, data []byte, now time.Time) bool {
	if m.closed {
		m.mu.Lock()
		m.totals.Drops[DropClosed]++
		if s := m.streams[k]; s != nil {
			s.drops[DropClosed]++
		}
		m.mu.Unlock()
		return false
	}
	s := m.get(k)
	s.lastSeen = now.UnixNano()
	if err := pcapng.CheckPacketAt(ns, router, kind, len(data)); err != nil {
		m.invalid(s, err)
		return false
	}
	if s.fault != nil && !m.retryDue(s, now) {
		m.dropFaulted(s, 1)
		return false
	}
	if c := s.cur; c != nil && m.cfg.RotateAge > 0 && now.Sub(c.start) >= m.cfg.RotateAge {
		m.finalize(s, now, rotAge)
		if s.fault != nil && !s.probe {
			// Completing the old file failed: the disk is in trouble.
			m.dropFaulted(s, 1)
			return false
		}
	}
	c := s.cur
	if c == nil {
		var err error
		if c, err = m.create(s, now); err != nil {
			m.fault(s, now, err, 1)
			return false
		}
	}
	err := c.w.WritePacketAt(ns, router, kind, data)
	if errors.Is(err, pcapng.ErrNeedsFile) {
		// The buffer is full and the file closed: open it to write the
		// buffer out, then the packet goes to a fresh one.
		if rerr := m.reopen(c, now); rerr != nil {
			m.fault(s, now, rerr, 1)
			return false
		}
		c = s.cur // a new file if the old one vanished
		err = c.w.WritePacketAt(ns, router, kind, data)
	}
	if err != nil {
		m.sync(c)
		var werr *pcapng.WriteError
		if errors.As(err, &werr) {
			m.fault(s, now, err, werr.Lost)
		} else if errors.Is(err, pcapng.ErrNeedsFile) {
			m.fault(s, now, err, 1)
		} else {
			m.count(s, DropInvalid, 1) // checked above: should not happen
		}
		return false
	}
	if s.probe {
		// The first packet after a fault: write it out now to learn
		// whether the disk works again.
		if err := m.flushFile(c, now); err != nil {
			m.fault(s, now, err, lostOf(err))
			return false
		}
		if s.fault != nil && s.fault.kind == errNoSpace && !m.roomFor(s.failedBytes) {
			// One packet fitted, a buffer would not: still full. Wait
			// again rather than flap between "full" and "works again".
			s.probe = false
			s.retryAt = now.Add(m.cfg.RetryInterval).UnixNano()
		} else {
			m.clearFault(s, now)
			s.failedBytes = 0
		}
	}
	m.syncWrote(c, now)
	if m.cfg.RotateSize > 0 && c.w.Size() >= m.cfg.RotateSize {
		if lost, _ := m.finalize(s, now, rotSize); lost > 0 {
			return false // this packet was the last one buffered: lost
		}
	}
	if m.memory.Load() > m.cfg.BufferMemory {
		m.relieveMemory(now)
	}
	return true
}

func (m *Manager) invalid(s *stream, err error) {
	m.count(s, DropInvalid, 1)
	if !m.invalidLogged {
		m.invalidLogged = true
		m.log.Warn("dropping invalid packets (logged once; counted as drops of reason invalid)",
			m.cfg.IDs.Stream(s.key.MID, s.key.SID), m.cfg.IDs.Err(err))
	}
}

// Drop counts n packets of stream k dropped upstream for reason.
func (m *Manager) Drop(k Key, reason DropReason, n int) {
	if n <= 0 {
		return
	}
	if reason < 0 || reason >= NumDropReasons {
		reason = DropOther
	}
	if m.closed {
		m.mu.Lock()
		m.totals.Drops[reason] += uint64(n)
		if s := m.streams[k]; s != nil {
			s.drops[reason] += uint64(n)
		}
		m.mu.Unlock()
		return
	}
	s := m.get(k)
	s.lastSeen = m.now().UnixNano()
	m.count(s, reason, uint64(n))
}

// Tick does the periodic work; call it every 100 ms to 1 s: completes the
// files older than RotateAge (open or not), writes out buffers older than
// FlushInterval, retries failed renames and forgets long-idle streams.
func (m *Manager) Tick() {
	if m.closed {
		return
	}
	m.applyRotation()
	now := m.now()
	if m.cfg.RotateAge > 0 {
		for n := len(m.ages); n > 0 && len(m.ages) > 0; n-- {
			c := m.ages[0]
			if now.Sub(c.start) < m.cfg.RotateAge {
				break
			}
			m.finalize(c.s, now, rotAge)
		}
	}
	// Oldest first: once one is not due, nor is any after it.
	limit := now.Add(-m.cfg.FlushInterval).UnixNano()
	m.flushOldest(now, func(e dirtyEntry) bool { return e.since <= limit }, &m.totals.FlushesAge)
	if len(m.unrenamed) > 0 && now.Sub(m.lastRenameRetry) >= m.cfg.RetryInterval {
		m.lastRenameRetry = now
		m.retryRenames()
	}
	if len(m.conds) > 0 {
		m.settleConditions(now)
	}
	if now.Sub(m.lastSweep) >= sweepEvery || now.Before(m.lastSweep) {
		m.lastSweep = now
		m.sweep(now)
		m.expireConditions(now)
	}
	m.publish()
}

// flushOldest writes out the buffers that have waited longest, for as long
// as due says so of the oldest, counting them in *count. Entries whose
// buffer went out meanwhile are dropped on the way.
func (m *Manager) flushOldest(now time.Time, due func(dirtyEntry) bool, count *uint64) {
	for n := len(m.dirty); n > 0 && m.dirtyHead < len(m.dirty); n-- {
		e := m.dirty[m.dirtyHead]
		live := e.c.dirtySince == e.since && e.c.s.cur == e.c
		if live && !due(e) {
			return
		}
		m.popDirty()
		if !live {
			continue
		}
		if err := m.flushFile(e.c, now); err != nil {
			m.fault(e.c.s, now, err, lostOf(err))
			continue
		}
		m.mu.Lock()
		*count++
		m.mu.Unlock()
	}
}

// relieveMemory writes out the buffers that have waited longest until
// they hold a quarter less than BufferMemory.
func (m *Manager) relieveMemory(now time.Time) {
	target := m.cfg.BufferMemory - m.cfg.BufferMemory/4
	m.flushOldest(now, func(dirtyEntry) bool { return m.memory.Load() > target }, &m.totals.FlushesMemory)
}

func (m *Manager) popDirty() dirtyEntry {
	e := m.dirty[m.dirtyHead]
	m.dirty[m.dirtyHead] = dirtyEntry{}
	m.dirtyHead++
	if m.dirtyHead == len(m.dirty) {
		m.dirty, m.dirtyHead = m.dirty[:0], 0
	} else if m.dirtyHead >= 1024 && m.dirtyHead*2 >= len(m.dirty) {
		// Compact: the queue's storage stays proportional to what it holds.
		n := copy(m.dirty, m.dirty[m.dirtyHead:])
		clear(m.dirty[n:])
		m.dirty, m.dirtyHead = m.dirty[:n], 0
	}
	return e
}

// flushFile writes c's buffer to its file, opening it if need be.
func (m *Manager) flushFile(c *curFile, now time.Time) error {
	if c.w.Buffered() == 0 {
		return nil
	}
	if c.w.Suspended() {
		if err := m.reopen(c, now); err != nil {
			return err
		}
		c = c.s.cur // a new file if the old one vanished
	}
	err := c.w.Flush()
	m.sync(c)
	return err
}

// Close writes out and completes (renames) every file, CloseWorkers at a
// time, and stops the background recovery of an earlier run's files (what
// it has not begun stays .part, for the next start). Write drops packets
// afterwards. Calling it again does nothing.
func (m *Manager) Close() error {
	if m.closed {
		return nil
	}
	m.rec.cancel() // it finishes the files it is on while the streams close
	now := m.now()
	lost, errs := m.closeStreams(now)
	m.rec.wait() // its renames need the lock, released below
	m.retryRenames()
	for _, p := range m.unrenamed {
		errs = append(errs, fmt.Errorf("%s left unfinished (.part)", p))
	}
	m.publish()
	m.closed = true
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
	if lost > 0 {
		errs = append([]error{fmt.Errorf("%d packets lost writing the last buffers", lost)}, errs...)
	}
	if len(errs) > 0 {
		// The errors name the files: with ids hidden, by their hash.
		return m.cfg.IDs.Error(fmt.Errorf("writer: close: %w", errors.Join(errs...)))
	}
	return nil
}

// Stats returns the totals. Safe for concurrent use.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.totals
	st.Streams = len(m.streams)
	st.Buffered = uint64(max(m.buffered.Load(), 0))
	st.BufferBytes = m.memory.Load()
	st.RecoveryPending = m.rec.left()
	return st
}

// Streams returns every remembered stream's counters, sorted by key. Safe
// for concurrent use.
func (m *Manager) Streams() []StreamStats {
	m.mu.Lock()
	out := make([]StreamStats, 0, len(m.streams))
	for _, s := range m.streams {
		ss := StreamStats{
			Key:            s.key,
			Packets:        s.packets,
			Bytes:          s.bytes,
			DropsByReason:  s.drops,
			FilesCompleted: s.filesCompleted,
		}
		for _, d := range s.drops {
			ss.Drops += d
		}
		if s.cur != nil {
			ss.CurrentFile = m.partPath(s.cur)
		}
		if lw := s.lastWrite.Load(); lw != 0 {
			ss.LastWrite = time.Unix(0, lw)
		}
		out = append(out, ss)
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b StreamStats) int {
		return cmp.Or(cmp.Compare(a.Key.MID, b.Key.MID), cmp.Compare(a.Key.SID, b.Key.SID))
	})
	return out
}

// get returns k's state, creating it.
func (m *Manager) get(k Key) *stream {
	if s := m.streams[k]; s != nil {
		return s
	}
	if m.cfg.MaxStreams > 0 && len(m.streams) >= m.cfg.MaxStreams {
		m.evictStreams(m.now())
	}
	s := &stream{key: k}
	m.mu.Lock()
	m.streams[k] = s
	m.mu.Unlock()
	return s
}

func (m *Manager) count(s *stream, r DropReason, n uint64) {
	m.mu.Lock()
	s.drops[r] += n
	m.totals.Drops[r] += n
	m.mu.Unlock()
}

// sync counts what c's writer committed since the last sync, updates the
// buffered count and the buffer's age.
func (m *Manager) sync(c *curFile) { m.syncWrote(c, time.Time{}) }

// syncWrote is sync after a packet was accepted at now (not zero): it also
// sets the stream's last write time and starts the buffer's age.
//
// Most packets only join the buffer: that needs no lock, which is taken
// only when the buffer went to the file.
func (m *Manager) syncWrote(c *curFile, now time.Time) {
	committed, b := c.w.Committed()
	pend := c.w.Packets() - committed
	dp, db := committed-c.seenPkts, b-c.seenBytes
	s := c.s
	if !now.IsZero() {
		s.lastAccepted = now.UnixNano()
	}
	if pend != c.pending {
		m.pending += int64(pend) - int64(c.pending)
	}
	if dp != 0 || db != 0 {
		if s.lastWrite.Load() != s.lastAccepted {
			s.lastWrite.Store(s.lastAccepted)
		}
		m.mu.Lock()
		s.packets += dp
		s.bytes += db
		m.totals.Packets += dp
		m.totals.Bytes += db
		m.totals.Flushes++
		m.mu.Unlock()
		c.dirtySince = 0 // the buffer went out: what is left is new
	}
	c.seenPkts, c.seenBytes, c.pending = committed, b, pend
	if c.w.Buffered() == 0 {
		c.dirtySince = 0
	} else if c.dirtySince == 0 {
		t := now
		if t.IsZero() {
			t = m.now()
		}
		c.dirtySince = t.UnixNano()
		m.dirty = append(m.dirty, dirtyEntry{c, c.dirtySince})
	}
}

// partPath is c's file name while it is written.
func (m *Manager) partPath(c *curFile) string {
	return m.finalPath(c, c.suffix) + partExt
}

func (m *Manager) finalPath(c *curFile, suffix int) string {
	if m.cfg.SingleFile {
		return SingleFilePath(m.cfg.Dir, c.s.key)
	}
	name := time.Unix(0, c.name).UTC().Format(nameLayout)
	if suffix > 0 {
		name += fmt.Sprintf("-%d", suffix)
	}
	return filepath.Join(m.streamDir(c.s.key), name+fileExt)
}

// SingleFilePath is where a SingleFile Manager writes stream k under dir.
func SingleFilePath(dir string, k Key) string {
	return filepath.Join(dir, fmt.Sprintf("mid-%d", k.MID), fmt.Sprintf("sid-%d%s", k.SID, fileExt))
}

func (m *Manager) streamDir(k Key) string {
	return filepath.Join(m.cfg.Dir, fmt.Sprintf("mid-%d", k.MID), fmt.Sprintf("sid-%d", k.SID))
}

// makeRoom closes the least recently used open files until another can
// be opened.
func (m *Manager) makeRoom(now time.Time) {
	for i := 0; m.open >= m.cfg.MaxOpen && m.lruTail != nil && i < m.cfg.MaxOpen+1; i++ {
		m.evict(m.lruTail, now)
	}
}

// reopen opens c's closed file again (closing others to stay under
// MaxOpen) and marks it most recently used. If the file vanished, the
// stream goes on in a new file, which takes what c still buffers.
func (m *Manager) reopen(c *curFile, now time.Time) error {
	if c.open {
		m.touch(c)
		return nil
	}
	m.makeRoom(now)
	err := c.w.Reopen()
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, pcapng.ErrIncomplete) {
			return err
		}
		// Deleted behind our back (or cut short): start afresh.
		m.log.Warn("current stream file vanished or was cut short; starting a new one",
			m.cfg.IDs.Path("file", m.partPath(c)), m.cfg.IDs.Err(err))
		if errors.Is(err, pcapng.ErrIncomplete) {
			os.Remove(m.partPath(c))
		}
		return m.restart(c, now)
	}
	if r := c.w.Recovered(); r > 0 {
		m.log.Warn("cut a torn tail off a stream file on reopening it", m.cfg.IDs.Path("file", m.partPath(c)), "bytes", r)
	}
	m.mu.Lock()
	m.totals.Reopens++
	m.mu.Unlock()
	m.lruPush(c)
	return nil
}

// restart moves the stream of c, whose file is gone, to a new file that
// takes c's writer and buffer.
func (m *Manager) restart(c *curFile, now time.Time) error {
	s := c.s
	nc, part, err := m.claimName(s, now, new(curFile))
	if err != nil {
		return err
	}
	for tries := 0; ; tries++ {
		err = c.w.Restart(part)
		if !errors.Is(err, fs.ErrExist) || tries >= maxSuffix {
			break
		}
		nc.suffix++
		part = m.partPath(nc)
	}
	if err != nil {
		return err
	}
	m.dropCur(s)
	nc.w = c.w
	nc.pending, c.pending = c.pending, 0
	m.adopt(s, nc)
	m.sync(nc)
	return nil
}

// claimName names s's next file by the time now (later than its previous
// file's) and the first -N suffix whose final name is free.
func (m *Manager) claimName(s *stream, now time.Time, c *curFile) (*curFile, string, error) {
	name := now.UnixNano()
	if name <= s.lastName {
		name = s.lastName + 1
	}
	*c = curFile{s: s, start: now, name: name, heapIdx: -1}
	if m.cfg.SingleFile {
		return c, m.partPath(c), nil // one name, replaced
	}
	for suffix := 0; suffix < maxSuffix; suffix++ {
		if _, err := os.Lstat(m.finalPath(c, suffix)); err == nil {
			continue
		}
		c.suffix = suffix
		return c, m.partPath(c), nil
	}
	return nil, "", fmt.Errorf("create a file in %s: %d names taken", m.streamDir(s.key), maxSuffix)
}

// adopt makes c, whose file was just created and is open, s's current file.
func (m *Manager) adopt(s *stream, c *curFile) {
	s.lastName = c.name
	m.mu.Lock()
	s.cur = c
	m.totals.FilesCreated++
	m.mu.Unlock()
	if m.cfg.RotateAge > 0 {
		heap.Push(&m.ages, c)
	}
	m.lruPush(c)
}

// create makes s's next file and opens it.
func (m *Manager) create(s *stream, now time.Time) (*curFile, error) {
	m.makeRoom(now)
	target := &s.curStore
	if s.cur == target {
		target = new(curFile) // cannot happen: create is for a stream without a file
	}
	fresh, err := m.streamDirReady(s)
	if err != nil {
		return nil, err
	}
	var c *curFile
	var part string
	if fresh {
		// A directory made just now holds no file: no name to check.
		name := max(now.UnixNano(), s.lastName+1)
		c = target
		*c = curFile{s: s, start: now, name: name, heapIdx: -1}
		part = m.partPath(c)
	} else if c, part, err = m.claimName(s, now, target); err != nil {
		return nil, err
	}
	opts := m.opts
	opts.DirReady = true
	for suffix := c.suffix; suffix < maxSuffix; suffix++ {
		c.suffix = suffix
		part = m.partPath(c)
		if suffix > 0 && !m.cfg.SingleFile {
			if _, err := os.Lstat(m.finalPath(c, suffix)); err == nil {
				continue
			}
		}
		err := pcapng.CreateIn(&c.wStore, part, s.key.MID, s.key.SID, opts)
		if errors.Is(err, fs.ErrNotExist) && s.dirReady {
			// The directory went away behind our back: make it again.
			s.dirReady = false
			if _, err = m.streamDirReady(s); err == nil {
				err = pcapng.CreateIn(&c.wStore, part, s.key.MID, s.key.SID, opts)
			}
		}
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c.w = &c.wStore
		m.adopt(s, c)
		return c, nil
	}
	return nil, fmt.Errorf("create a file in %s: %d names taken", m.streamDir(s.key), maxSuffix)
}

// streamDirReady makes s's directory if this Manager has not yet, and
// says whether it made it now (so it is empty). Its parent, mid-<mid>, is
// made by the first stream of the mid: a new stream costs one mkdir, not a
// walk of stats up the tree and a chmod for each directory.
func (m *Manager) streamDirReady(s *stream) (fresh bool, err error) {
	if s.dirReady {
		return false, nil
	}
	dir := filepath.Dir(m.partPath(&curFile{s: s}))
	if !m.umaskKeepsMode {
		if err := pcapng.MkdirAllGroup(dir, m.cfg.Group); err != nil {
			return false, err
		}
		if err := pcapng.CheckNoLinks(m.cfg.Dir, dir); err != nil {
			return false, fmt.Errorf("create directory: %w", err)
		}
		s.dirReady = true
		return false, nil
	}
	// The mid's directory once a run: a link planted in its place would
	// take every stream of the mid out of the output directory.
	if !m.midOK[s.key.MID] {
		if err := pcapng.CheckNoLinks(m.cfg.Dir, filepath.Dir(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Named as the stream's directory, as mkdir would.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = &fs.PathError{Op: "mkdir", Path: dir, Err: pe.Err}
			}
			return false, fmt.Errorf("create directory: %w", err)
		}
	}
	// With a group, the new directory takes it and the setgid bit from
	// its parent.
	err = os.Mkdir(dir, m.dirMode.Perm())
	switch {
	case err == nil:
		fresh = true
	case errors.Is(err, fs.ErrExist):
		// An earlier run's, or SingleFile's shared mid directory: not
		// a link.
		if err := pcapng.CheckNoLinks(m.cfg.Dir, dir); err != nil {
			return false, fmt.Errorf("create directory: %w", err)
		}
	case errors.Is(err, fs.ErrNotExist):
		// The first stream of its mid: make the mid's directory, then
		// this one (with a group, both take it from the output
		// directory's setgid bit); the walk up the tree only if the
		// output directory itself went.
		perr := os.Mkdir(filepath.Dir(dir), m.dirMode.Perm())
		if perr == nil || errors.Is(perr, fs.ErrExist) {
			if err = os.Mkdir(dir, m.dirMode.Perm()); err == nil {
				fresh = true
				break
			}
		}
		if err := pcapng.MkdirAllGroup(dir, m.cfg.Group); err != nil {
			return false, err
		}
	default:
		return false, fmt.Errorf("create directory: %w", err)
	}
	s.dirReady = true
	if m.midOK == nil {
		m.midOK = make(map[uint32]bool)
	}
	m.midOK[s.key.MID] = true
	return fresh && !m.cfg.SingleFile, nil
}

// evict writes out an open file's buffer and closes it; it stays .part and
// is reopened when its stream's buffer next needs writing.
func (m *Manager) evict(c *curFile, now time.Time) {
	s := c.s
	err := m.closeFile(c)
	m.mu.Lock()
	m.totals.Evictions++
	m.mu.Unlock()
	if err != nil {
		m.fault(s, now, err, lostOf(err))
	}
	if c.w.Packets() == 0 && s.cur == c {
		// Nothing in it (all lost): do not keep an empty file.
		m.removeCur(s)
	}
}

// closeFile suspends an open file: buffer written out, file closed.
func (m *Manager) closeFile(c *curFile) error {
	err := c.w.Suspend()
	m.sync(c)
	m.lruRemove(c)
	return err
}

// finalize completes s's current file: writes out its buffer, closes it,
// renames it to .pcapng, or removes it if it holds no packet. It returns
// the packets lost closing it.
func (m *Manager) finalize(s *stream, now time.Time, why rotation) (int, error) {
	c := s.cur
	if c == nil {
		return 0, nil
	}
	if c.w.Suspended() && c.w.Buffered() > 0 {
		// Else Close tries once more, and counts what is lost.
		if err := m.reopen(c, now); err == nil {
			c = s.cur // a new one if the file had vanished
		}
	}
	return m.settle(m.complete(c), now, why)
}

// completion is what completing a file did to it: the file system's part
// of finalize, which touches nothing of the Manager but c's writer, so
// that Close runs it on several files at once.
type completion struct {
	c        *curFile
	closeErr error
	// empty: the file held no packet and was removed (unless removeErr).
	empty     bool
	removeErr error
	final     string
	renameErr error
	// handed: OnComplete was told already.
	handed bool
}

// complete closes c's file (writing out its buffer) and renames it, or
// removes it if it holds no packet.
func (m *Manager) complete(c *curFile) completion {
	d := completion{c: c, closeErr: c.w.Close()}
	part := m.partPath(c)
	if c.w.Packets() == 0 {
		d.empty = true
		if err := os.Remove(part); err != nil && !errors.Is(err, fs.ErrNotExist) {
			d.removeErr = err
		}
		return d
	}
	d.final, d.renameErr = m.rename(part, c)
	return d
}

// settle does the Manager's bookkeeping for a completed file, on the
// writer goroutine: counts, faults, the LRU list, the age heap.
func (m *Manager) settle(d completion, now time.Time, why rotation) (int, error) {
	c := d.c
	s := c.s
	var lost int
	var errs []error
	if err := d.closeErr; err != nil {
		l := lostOf(err)
		lost += l
		m.fault(s, now, err, l)
		errs = append(errs, err)
	}
	m.sync(c)
	if c.pending > 0 {
		// Lost with the buffer: not counted by a WriteError.
		m.pending -= int64(c.pending)
		c.pending = 0
	}
	m.lruRemove(c)
	if d.empty {
		// Nothing in it (all lost): not kept.
		if d.removeErr != nil {
			m.log.Warn("cannot remove an empty stream file", m.cfg.IDs.Err(d.removeErr))
		} else {
			m.mu.Lock()
			m.totals.FilesRemoved++
			m.mu.Unlock()
		}
		m.dropCur(s)
		return lost, errors.Join(errs...)
	}
	if err := d.renameErr; err != nil {
		m.fault(s, now, err, 0)
		if len(m.unrenamed) < maxUnrenamed {
			// Retried by Tick; beyond the bound, left to the next start.
			m.unrenamed = append(m.unrenamed, m.partPath(c))
		}
		errs = append(errs, err)
	}
	m.dropCur(s)
	if d.renameErr == nil {
		m.mu.Lock()
		s.filesCompleted++
		m.totals.FilesCompleted++
		switch why {
		case rotSize:
			m.totals.RotationsSize++
		case rotAge:
			m.totals.RotationsAge++
		}
		m.mu.Unlock()
		m.log.Debug("stream file complete", m.cfg.IDs.Path("file", d.final))
		if !d.handed {
			m.completed(d.final, c.w.Size(), now)
		}
	}
	return lost, errors.Join(errs...)
}

// rename gives the .part file its final name, without replacing a file of
// that name: another suffix is taken then.
func (m *Manager) rename(part string, c *curFile) (string, error) {
	if m.cfg.SingleFile {
		final := m.finalPath(c, 0)
		return final, os.Rename(part, final)
	}
	for suffix := c.suffix; suffix < c.suffix+maxSuffix; suffix++ {
		final := m.finalPath(c, suffix)
		err := renameNoReplace(part, final)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		return final, nil
	}
	return "", fmt.Errorf("rename %s: %d names taken", part, maxSuffix)
}

// renameNoReplace renames from to to unless to exists (then an error
// matching fs.ErrExist), in one system call where the file system can
// (RENAME_NOREPLACE): the background recovery of an earlier run and this
// run's streams rename in the same directories at once, and a check
// before the rename would leave a window to replace the other's file.
func renameNoReplace(from, to string) error {
	err := unix.Renameat2(unix.AT_FDCWD, from, unix.AT_FDCWD, to, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// A file system (or kernel) without the flag: check, then rename.
		if _, err := os.Lstat(to); err == nil {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: fs.ErrExist}
		}
		return os.Rename(from, to)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// dropCur forgets s's current file (closed or not: its writer is then
// someone else's).
func (m *Manager) dropCur(s *stream) {
	c := s.cur
	if c == nil {
		return
	}
	if c.heapIdx >= 0 {
		heap.Remove(&m.ages, c.heapIdx)
	}
	m.lruRemove(c)
	c.dirtySince = 0
	m.mu.Lock()
	s.cur = nil
	m.mu.Unlock()
}

// removeCur deletes s's current file, which holds no packet.
func (m *Manager) removeCur(s *stream) {
	c := s.cur
	c.w.Close()
	if err := os.Remove(m.partPath(c)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		m.log.Warn("cannot remove an empty stream file", m.cfg.IDs.Err(err))
	} else {
		m.mu.Lock()
		m.totals.FilesRemoved++
		m.mu.Unlock()
	}
	m.dropCur(s)
}

func (m *Manager) retryRenames() {
	left := m.unrenamed[:0]
	for _, part := range m.unrenamed {
		final := strings.TrimSuffix(part, partExt)
		got, err := renameNoClobber(part, final)
		if err != nil {
			left = append(left, part)
			continue
		}
		m.mu.Lock()
		m.totals.FilesCompleted++
		m.mu.Unlock()
		m.log.Debug("stream file complete", m.cfg.IDs.Path("file", got))
		m.completed(got, -1, time.Time{})
	}
	m.unrenamed = left
}

// renameNoClobber renames from to to, or to to with a -N suffix before the
// extension if to exists.
func renameNoClobber(from, to string) (string, error) {
	base := strings.TrimSuffix(to, fileExt)
	for suffix := 0; suffix < maxSuffix; suffix++ {
		dst := to
		if suffix > 0 {
			dst = fmt.Sprintf("%s-%d%s", base, suffix, fileExt)
		}
		err := renameNoReplace(from, dst)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return dst, err
	}
	return "", fmt.Errorf("rename %s: %d names taken", from, maxSuffix)
}

// sweep forgets streams without a file that have been idle for idleLimit.
func (m *Manager) sweep(now time.Time) {
	limit := now.Add(-m.idleLimit).UnixNano()
	var idle []Key
	for k, s := range m.streams {
		if s.cur == nil && s.lastSeen < limit && (s.fault == nil || s.retryAt < now.UnixNano()) {
			idle = append(idle, k)
		}
	}
	if len(idle) == 0 {
		return
	}
	m.mu.Lock()
	for _, k := range idle {
		delete(m.streams, k)
	}
	m.mu.Unlock()
}

// LRU list of open files, most recently used at the head.

func (m *Manager) lruPush(c *curFile) {
	if c.open {
		m.touch(c)
		return
	}
	c.open = true
	m.pushFront(c)
	m.open++
	m.mu.Lock()
	m.totals.OpenFiles = m.open
	m.mu.Unlock()
}

// touch moves an open file to the head.
func (m *Manager) touch(c *curFile) {
	if m.lruHead == c {
		return
	}
	m.unlink(c)
	m.pushFront(c)
}

// pushFront links an unlinked file at the head.
func (m *Manager) pushFront(c *curFile) {
	c.prev, c.next = nil, m.lruHead
	if m.lruHead != nil {
		m.lruHead.prev = c
	}
	m.lruHead = c
	if m.lruTail == nil {
		m.lruTail = c
	}
}

func (m *Manager) unlink(c *curFile) {
	if c.prev != nil {
		c.prev.next = c.next
	} else if m.lruHead == c {
		m.lruHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else if m.lruTail == c {
		m.lruTail = c.prev
	}
	c.prev, c.next = nil, nil
}

func (m *Manager) lruRemove(c *curFile) {
	if !c.open {
		return
	}
	m.unlink(c)
	c.open = false
	m.open--
	m.mu.Lock()
	m.totals.OpenFiles = m.open
	m.mu.Unlock()
}

// ageHeap orders current files by start, oldest first.
type ageHeap = iheap.Heap[*curFile]

func (c *curFile) Before(o *curFile) bool { return c.start.Before(o.start) }
func (c *curFile) SetIndex(i int)         { c.heapIdx = i }

// Flush writes every stream's buffered packets to its file now, and
// reports whether any was lost to a fault meanwhile: `jmxdp export` acks
// a message only once its packets are in the file.
func (m *Manager) Flush() error {
	if m.closed {
		return errors.New("writer: flush after close")
	}
	before := m.Stats().Drops[DropDisk]
	var flushed uint64
	m.flushOldest(m.now(), func(dirtyEntry) bool { return true }, &flushed)
	m.publish()
	if lost := m.Stats().Drops[DropDisk] - before; lost > 0 {
		return fmt.Errorf("writer: %d packets lost writing the buffers", lost)
	}
	return nil
}

// CurrentFile is the .part file stream k is being written to, "" if none.
// Call it from the goroutine that writes (it reads the streams unlocked).
func (m *Manager) CurrentFile(k Key) string {
	s := m.streams[k]
	if s == nil || s.cur == nil {
		return ""
	}
	return m.partPath(s.cur)
}
