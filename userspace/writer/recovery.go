package writer

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmxdp/jmxdp/userspace/pcapng"
)

// Recovery of an earlier run's .part files. New lists them (a directory
// walk, before any file of this run exists, so the list holds none of
// them) and returns: capture starts at once, while CloseWorkers goroutines
// repair and rename the listed files. This run's files cannot be confused
// with them: they are created after the walk, under names that are not
// taken (O_EXCL), and both rename without replacing (renameNoReplace).
// Close stops the recovery: the files being repaired are finished, the
// rest stay .part for the next start.

// recoveryProgressEvery is how often a long recovery logs its progress.
const recoveryProgressEvery = 10 * time.Second

// recovery is the background completion of an earlier run's .part files.
// A nil *recovery is one with nothing to do.
type recovery struct {
	next    atomic.Int64 // index of the next part to take
	pending atomic.Int64 // parts not yet looked at, or being
	stop    atomic.Bool
	done    chan struct{}

	// What became of them.
	completed, removed, failed atomic.Int64
	cut                        atomic.Int64
}

func (r *recovery) cancel() {
	if r != nil {
		r.stop.Store(true)
	}
}

func (r *recovery) wait() {
	if r != nil {
		<-r.done
	}
}

// left is Stats.RecoveryPending.
func (r *recovery) left() int {
	if r == nil {
		return 0
	}
	return int(r.pending.Load())
}

// findParts lists the .part files under the output directory, bringing the
// stream directories to this run's modes on the way. Capture waits for
// it: the stream directories are read on CloseWorkers goroutines.
func (m *Manager) findParts() []string {
	dirErr := func(dir string, err error) {
		m.log.Warn("cannot look for unfinished files of an earlier run", m.cfg.IDs.Path("dir", dir), m.cfg.IDs.Err(err))
	}
	mids, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		dirErr(m.cfg.Dir, err)
		return nil
	}
	var sidDirs []string
	for _, md := range mids {
		if !md.IsDir() || !strings.HasPrefix(md.Name(), "mid-") {
			continue
		}
		midDir := filepath.Join(m.cfg.Dir, md.Name())
		m.fixDirLogged(midDir)
		sids, err := os.ReadDir(midDir)
		if err != nil {
			dirErr(midDir, err)
			continue
		}
		for _, sd := range sids {
			if sd.IsDir() && strings.HasPrefix(sd.Name(), "sid-") {
				sidDirs = append(sidDirs, filepath.Join(midDir, sd.Name()))
			}
		}
	}
	workers := m.recoveryWorkers(len(sidDirs))
	found := make([][]string, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(sidDirs) {
					return
				}
				sidDir := sidDirs[i]
				m.fixDirLogged(sidDir)
				files, err := os.ReadDir(sidDir)
				if err != nil {
					dirErr(sidDir, err)
					continue
				}
				for _, f := range files {
					if f.Type().IsRegular() && strings.HasSuffix(f.Name(), fileExt+partExt) {
						found[w] = append(found[w], filepath.Join(sidDir, f.Name()))
					}
				}
			}
		}()
	}
	wg.Wait()
	return slices.Concat(found...)
}

// recoveryWorkers is how many goroutines list or recover n items.
func (m *Manager) recoveryWorkers(n int) int {
	w := m.cfg.CloseWorkers
	if w <= 0 {
		w = DefaultCloseWorkers()
	}
	return max(min(w, n), 1)
}

// startRecovery completes parts in the background.
func (m *Manager) startRecovery(parts []string) {
	if len(parts) == 0 {
		return
	}
	r := &recovery{done: make(chan struct{})}
	r.pending.Store(int64(len(parts)))
	m.rec = r
	workers := m.recoveryWorkers(len(parts))
	m.log.Info("completing the unfinished files of an earlier run in the background",
		"dir", m.cfg.Dir, "found", len(parts), "workers", workers)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.stop.Load() {
				i := int(r.next.Add(1) - 1)
				if i >= len(parts) {
					return
				}
				m.recoverPart(r, parts[i])
				r.pending.Add(-1)
			}
		}()
	}
	go func() {
		defer close(r.done)
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		tick := time.NewTicker(recoveryProgressEvery)
		defer tick.Stop()
		for waiting := true; waiting; {
			select {
			case <-tick.C:
				m.log.Info("still completing the unfinished files of an earlier run",
					"dir", m.cfg.Dir, "found", len(parts), "left", r.pending.Load())
			case <-finished:
				waiting = false
			}
		}
		left := r.pending.Load()
		r.pending.Store(0) // stopped: nothing more will be looked at
		msg := "completed the unfinished files of an earlier run"
		if left > 0 {
			msg = "stopped completing the unfinished files of an earlier run: the rest stay .part for the next start"
		}
		m.log.Info(msg, "dir", m.cfg.Dir, "found", len(parts), "completed", r.completed.Load(),
			"removed_empty", r.removed.Load(), "failed", r.failed.Load(), "truncated_bytes", r.cut.Load(),
			"left", left, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// recoverPart completes one .part file of an earlier run: a torn tail cut
// off, renamed to .pcapng, or removed if it holds no packet; left as it is
// if it is not a pcapng file jmxdp can append to.
func (m *Manager) recoverPart(r *recovery, part string) {
	if m.cfg.recoverHook != nil {
		m.cfg.recoverHook(part)
	}
	remove := func() {
		if err := os.Remove(part); err != nil {
			m.log.Warn("cannot remove an empty unfinished file", m.cfg.IDs.Err(err))
			r.failed.Add(1)
		} else {
			r.removed.Add(1)
		}
	}
	w, err := pcapng.Append(part)
	if errors.Is(err, pcapng.ErrIncomplete) {
		// Created, crashed before the first write: nothing in it.
		remove()
		return
	}
	if err != nil {
		m.log.Warn("cannot recover an unfinished file of an earlier run; left as it is", m.cfg.IDs.Err(err))
		r.failed.Add(1)
		return
	}
	cut := w.Recovered()
	packets := w.Packets()
	if err := w.Close(); err != nil {
		m.log.Warn("cannot recover an unfinished file of an earlier run; left as it is", m.cfg.IDs.Err(err))
		r.failed.Add(1)
		return
	}
	if cut > 0 {
		r.cut.Add(cut)
		m.mu.Lock()
		m.totals.RecoveredBytes += cut
		m.mu.Unlock()
	}
	if packets == 0 {
		remove()
		return
	}
	final, err := renameNoClobber(part, strings.TrimSuffix(part, partExt))
	if err != nil {
		m.log.Warn("cannot complete an unfinished file of an earlier run", m.cfg.IDs.Err(err))
		r.failed.Add(1)
		return
	}
	r.completed.Add(1)
	m.mu.Lock()
	m.totals.RecoveredFiles++
	m.mu.Unlock()
	m.completed(final, -1, time.Time{}) // the earlier run's time
}
