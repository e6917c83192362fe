// Package labtest gives tests a lab of their own: labtest.New makes a lab
// with unique names and addresses (lab.Random) and removes it when the
// test ends, however it ends.
//
// A test binary killed before its cleanups run (go test -timeout, SIGKILL)
// would leak its lab; so every lab New makes is registered in a lock file
// under LockDir that its process holds locked. New first removes the labs
// whose lock files nobody holds any more: their processes are gone.
package labtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/runstate"
	"github.com/jmxdp/jmxdp/userspace/testenv"
	"github.com/jmxdp/jmxdp/userspace/tools/lab"
)

// LockDir holds one lock file per lab made by New.
const LockDir = "/run/jmxdp-labtest"

// New makes a lab for t with lab.Random(prefix) names, skipping t when not
// root (failing it in CI). The lab is removed in t.Cleanup; a failure to
// remove it fails the test.
func New(t testing.TB, prefix string) *lab.Lab {
	t.Helper()
	return NewWith(t, prefix, nil)
}

// NewWith is New with mod applied to the random config before the lab
// comes up (its queues, say); mod may be nil.
func NewWith(t testing.TB, prefix string, mod func(*lab.Config)) *lab.Lab {
	t.Helper()
	testenv.RequireRoot(t)
	Sweep(t)
	cfg := lab.Random(prefix)
	if mod != nil {
		mod(&cfg)
	}
	lock, err := register(cfg)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	// Registered before Up: Down is idempotent and only deletes what is
	// this lab's, so it is safe whatever Up got to.
	t.Cleanup(func() {
		// What a `jmxdp run` on the lab left in /run/jmxdp (its lock,
		// state and checkpoint files, kept after a stop by design).
		runstate.Remove(runstate.DefaultDir, cfg.HostIface)
		if err := lab.Down(cfg); err != nil {
			t.Errorf("labtest: %v", err)
			lock.Close() // leave the file: the next New retries
			return
		}
		unregister(lock)
	})
	l, err := lab.Up(cfg)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	return l
}

// lockFile is a held lock file.
type lockFile struct {
	f    *os.File
	path string
}

func (l *lockFile) Close() { l.f.Close() }

// register writes cfg to a lock file held locked by this process. The file
// is locked before it gets its name, so Sweep never sees it unlocked.
func register(cfg lab.Config) (*lockFile, error) {
	if err := os.MkdirAll(LockDir, 0o700); err != nil {
		return nil, fmt.Errorf("lock directory: %w", err)
	}
	cfg.HostMAC = nil // Down does not need it
	data, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(LockDir, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	path := filepath.Join(LockDir, cfg.Name+".json")
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("lock file: %w", err)
	}
	return &lockFile{f: f, path: path}, nil
}

// unregister removes the lock file, then lets go of the lock.
func unregister(l *lockFile) {
	os.Remove(l.path)
	l.f.Close()
}

// Sweep removes the labs that New made in processes which have ended
// without removing them. Failures are logged, not fatal.
func Sweep(t testing.TB) {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(LockDir, "*.json"))
	for _, path := range paths {
		if err := sweep(path); err != nil {
			t.Logf("labtest: stale lab %s: %v", filepath.Base(path), err)
		}
	}
	// Temporary files of a process killed between create and rename.
	tmps, _ := filepath.Glob(filepath.Join(LockDir, ".tmp-*"))
	for _, path := range tmps {
		if f, err := os.Open(path); err == nil {
			if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
				os.Remove(path)
			}
			f.Close()
		}
	}
}

func sweep(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // gone meanwhile
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // its process is alive
		}
		return err
	}
	// The file may have been removed (and its lab with it) between Open
	// and Flock by its owner: then it is not ours to act on.
	if st, err := os.Stat(path); err != nil || !sameFile(f, st) {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg lab.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		os.Remove(path)
		return fmt.Errorf("unreadable, removed: %w", err)
	}
	if cfg.Name == "" || strings.ContainsAny(cfg.Name, "/") {
		os.Remove(path)
		return errors.New("no lab name, removed")
	}
	if err := lab.Down(cfg); err != nil {
		return err
	}
	return os.Remove(path)
}

func sameFile(f *os.File, st os.FileInfo) bool {
	fst, err := f.Stat()
	return err == nil && os.SameFile(fst, st)
}
