// Package runstate is what a running `jmxdp run` leaves under /run/jmxdp:
// a lock per interface, taken before anything is pinned or written, so a
// second start on the same interface is refused without touching the
// running instance; and a small state file naming the instance's pin
// directory and config file, so that `stats`, `policy`, `allowlist` and
// `detach` find an instance whose pin dir came from its config file.
//
// The lock is an flock on IFACE.lock: the kernel drops it when the process
// dies, however it dies, so a crash never leaves a start refused. The
// state file IFACE.json is written once the instance runs and stays after
// it stops, as the pinned maps do: a stopped instance's is still where
// its maps are, and commands use it only for that.
package runstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultDir is where the locks and state files live: a tmpfs that a
// reboot empties, as it empties bpffs.
const DefaultDir = "/run/jmxdp"

// State is what the state file holds.
type State struct {
	PID     int       `json:"pid"`
	Iface   string    `json:"iface"`
	PinDir  string    `json:"pin_dir"`          // PIN_DIR/IFACE
	Config  string    `json:"config,omitempty"` // absolute path; "" without --config
	Out     string    `json:"out"`
	Metrics string    `json:"metrics,omitempty"`
	Started time.Time `json:"started"`
}

// ErrBusy is returned by Acquire when another process holds the lock.
var ErrBusy = errors.New("another jmxdp run holds this interface")

// Lock is a held per-interface lock.
type Lock struct {
	dir, iface string
	f          *os.File
	acct       *os.File // the checkpoint, open once
}

func lockPath(dir, iface string) string  { return filepath.Join(dir, iface+".lock") }
func statePath(dir, iface string) string { return filepath.Join(dir, iface+".json") }

// Acquire takes iface's lock in dir without waiting. When another process
// holds it, the error wraps ErrBusy and names that process's pid (from
// the lock file) where it can.
func Acquire(dir, iface string) (*Lock, error) {
	if iface == "" || strings.ContainsRune(iface, '/') || iface == "." || iface == ".." {
		return nil, fmt.Errorf("run state: invalid interface name %q", iface)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run state: %w", err)
	}
	path := lockPath(dir, iface)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("run state: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := ""
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf(" (pid %d)", pid)
				}
			}
			return nil, fmt.Errorf("%s%s: %w", path, holder, ErrBusy)
		}
		return nil, fmt.Errorf("run state: lock %s: %w", path, err)
	}
	// The holder's pid, for the refusal message of the next start.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Lock{dir: dir, iface: iface, f: f}, nil
}

// Write records s as the interface's state file (atomically: a reader
// sees the old file or the new one).
func (l *Lock) Write(s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	path := statePath(l.dir, l.iface)
	tmp, err := os.CreateTemp(l.dir, "."+l.iface+".json.*")
	if err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("run state: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("run state: write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	return nil
}

// Release drops the lock. The state file stays, as the pinned maps do:
// `detach` after a run with keep_attached, or `policy` on a stopped
// instance, still finds them; Read says it is no longer running. The
// lock file stays too: removing it would race with a start that just
// opened it and would then lock a file nobody else can see.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	var errs []error
	if l.acct != nil {
		errs = append(errs, l.acct.Close())
		l.acct = nil
	}
	errs = append(errs, l.f.Close()) // closing drops the flock
	l.f = nil
	return errors.Join(errs...)
}

// Read returns iface's state file in dir. It wraps os.ErrNotExist when
// there is none. Running says whether the process that wrote it is alive
// and still holds the lock.
func Read(dir, iface string) (s State, running bool, err error) {
	b, err := os.ReadFile(statePath(dir, iface))
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("run state %s: %w", statePath(dir, iface), err)
	}
	return s, held(dir, iface), nil
}

// held says whether some process holds iface's lock, by trying to take it.
func held(dir, iface string) bool {
	f, err := os.OpenFile(lockPath(dir, iface), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Checkpoint is the running instance's accounting of the frames the
// kernel redirected to it, rewritten in place every checkpoint period and
// once more at a clean stop. After a SIGKILL or a crash, the next start
// compares it with the kernel's redirect counter, which survives in the
// pinned maps, and reports what went missing (frames in the rings, the
// queue and the buffers when the process died), rather than losing them
// without a trace.
type Checkpoint struct {
	Clean bool // written by a clean stop
	Time  time.Time
	// RedirectedAtStart and Redirected are the kernel's redirect counter
	// (since the maps were pinned) when the run started and at this
	// checkpoint.
	RedirectedAtStart, Redirected uint64
	// Received frames off the rings; RingDrops the kernel dropped on a
	// full ring; Written packets in files; Dropped counted drops
	// (queue and writer); Fragments frames of fragmented datagrams.
	Received, RingDrops, Written, Dropped, Fragments uint64
}

const (
	checkpointMagic = 0x6a6d6370 // "jmcp"
	checkpointSize  = 4 + 4 + 8 + 8*8
)

func accountPath(dir, iface string) string { return filepath.Join(dir, iface+".account") }

// Remove deletes what runs on iface left in dir (lock, state and
// checkpoint), for a lab or test whose interface is gone with it. It
// does not check that no process holds the lock: call it once the
// instance has stopped.
func Remove(dir, iface string) {
	for _, p := range []string{lockPath(dir, iface), statePath(dir, iface), accountPath(dir, iface)} {
		os.Remove(p)
	}
}

func (c Checkpoint) marshal() []byte {
	b := make([]byte, checkpointSize)
	le := func(off int, v uint64) {
		for i := range 8 {
			b[off+i] = byte(v >> (8 * i))
		}
	}
	le(0, checkpointMagic)
	if c.Clean {
		b[4] = 1
	}
	for i, v := range []uint64{uint64(c.Time.UnixNano()), c.RedirectedAtStart, c.Redirected, c.Received, c.RingDrops, c.Written, c.Dropped, c.Fragments} {
		le(8+8*i, v)
	}
	return b
}

func unmarshalCheckpoint(b []byte) (Checkpoint, error) {
	if len(b) != checkpointSize {
		return Checkpoint{}, fmt.Errorf("%d bytes, want %d", len(b), checkpointSize)
	}
	get := func(off int) uint64 {
		var v uint64
		for i := range 8 {
			v |= uint64(b[off+i]) << (8 * i)
		}
		return v
	}
	if uint32(get(0)) != checkpointMagic {
		return Checkpoint{}, errors.New("bad magic")
	}
	v := make([]uint64, 8)
	for i := range v {
		v[i] = get(8 + 8*i)
	}
	return Checkpoint{Clean: b[4] == 1, Time: time.Unix(0, int64(v[0])).UTC(), RedirectedAtStart: v[1], Redirected: v[2],
		Received: v[3], RingDrops: v[4], Written: v[5], Dropped: v[6], Fragments: v[7]}, nil
}

// ReadCheckpoint returns the last checkpoint of the run before this one
// on iface (wrapping os.ErrNotExist when there is none). Call it before
// the first WriteCheckpoint.
func ReadCheckpoint(dir, iface string) (Checkpoint, error) {
	b, err := os.ReadFile(accountPath(dir, iface))
	if err != nil {
		return Checkpoint{}, err
	}
	c, err := unmarshalCheckpoint(b)
	if err != nil {
		return c, fmt.Errorf("checkpoint %s: %w", accountPath(dir, iface), err)
	}
	return c, nil
}

// WriteCheckpoint overwrites the checkpoint in place: one pwrite of a
// fixed-size record, which a kill cannot tear (the write completes or
// not).
func (l *Lock) WriteCheckpoint(c Checkpoint) error {
	if l.acct == nil {
		f, err := os.OpenFile(accountPath(l.dir, l.iface), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		l.acct = f
	}
	if _, err := l.acct.WriteAt(c.marshal(), 0); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// Unaccounted is, for a run that did not stop cleanly, the frames the
// kernel redirected to it that its last checkpoint does not account for:
// redirectedNow is the kernel's counter at the next start. It includes the
// frames written or dropped after the last checkpoint, at most one
// checkpoint period's worth, so it is an upper bound of what was lost.
func (c Checkpoint) Unaccounted(redirectedNow uint64) uint64 {
	if redirectedNow < c.RedirectedAtStart {
		return 0 // the counters were reset (maps replaced)
	}
	redirected := redirectedNow - c.RedirectedAtStart
	accounted := c.RingDrops + c.Written + c.Dropped + c.Fragments
	if accounted >= redirected {
		return 0
	}
	return redirected - accounted
}
