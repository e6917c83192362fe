package writer

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// maxCloseWorkers caps DefaultCloseWorkers: past a few dozen files in
// flight, renames in one file system's journal queue behind each other
// rather than overlap (docs/operating.md, "Stop and start time").
const maxCloseWorkers = 16

// DefaultCloseWorkers is Config.CloseWorkers when left 0: four per
// processor the Go runtime uses, at most 16. Completing a file is a
// write, a close and a rename, each a short wait on the file system, so
// more files than processors are in flight.
func DefaultCloseWorkers() int {
	return min(maxCloseWorkers, 4*runtime.GOMAXPROCS(0))
}

// closeWorkers is how many files Close completes at once for n files.
func (m *Manager) closeWorkers(n int) int {
	w := m.cfg.CloseWorkers
	if w <= 0 {
		w = DefaultCloseWorkers()
	}
	return max(min(w, m.cfg.MaxOpen, n), 1)
}

// closedFile is a file completed by a Close worker, for the writer goroutine
// to settle.
type closedFile struct {
	d completion
	// again: reopening the file failed; finalize tries again once the
	// workers are done (it may evict, restart, or count what is lost).
	again bool
	// reopened: the file had been closed to stay under MaxOpen and was
	// opened again to write its buffer out; cut is the torn tail that cost.
	reopened bool
	cut      int64
}

// closeStreams completes every stream's current file: the file work
// (write out, close, rename, OnComplete) on closeWorkers goroutines, the
// bookkeeping (counts, the LRU list, the age heap, faults) here, on the
// writer goroutine, as each file is done.
func (m *Manager) closeStreams(now time.Time) (lost int, errs []error) {
	n := 0
	for _, s := range m.streams {
		if s.cur != nil {
			n++
		}
	}
	workers := m.closeWorkers(n)
	add := func(l int, err error) {
		lost += l
		if err != nil {
			errs = append(errs, err)
		}
	}
	if workers == 1 {
		for _, s := range m.streams {
			if s.cur != nil {
				add(m.finalize(s, now, rotClose))
			}
		}
		return lost, errs
	}
	// Each worker may reopen a file closed to stay under MaxOpen: make
	// room for one each.
	for m.open > 0 && m.open > m.cfg.MaxOpen-workers && m.lruTail != nil {
		m.evict(m.lruTail, now)
	}
	files := make([]*curFile, 0, n)
	for _, s := range m.streams {
		if s.cur != nil {
			files = append(files, s.cur)
		}
	}
	var next atomic.Int64
	done := make(chan closedFile, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return
				}
				done <- m.closeOne(files[i], now)
			}
		}()
	}
	var again []*stream
	for range len(files) {
		f := <-done
		c := f.d.c
		if f.again {
			again = append(again, c.s)
			continue
		}
		if f.reopened {
			if f.cut > 0 {
				m.log.Warn("cut a torn tail off a stream file on reopening it", m.cfg.IDs.Path("file", m.partPath(c)), "bytes", f.cut)
			}
			m.mu.Lock()
			m.totals.Reopens++
			m.mu.Unlock()
		}
		add(m.settle(f.d, now, rotClose))
	}
	wg.Wait()
	// Now that no worker runs, finalize may reopen, evict and restart.
	for _, s := range again {
		add(m.finalize(s, now, rotClose))
	}
	return lost, errs
}

// closeOne completes c on a Close worker: it touches c's writer and the
// file system, never the Manager's state.
func (m *Manager) closeOne(c *curFile, now time.Time) closedFile {
	var f closedFile
	if c.w.Suspended() && c.w.Buffered() > 0 {
		before := c.w.Recovered()
		if err := c.w.Reopen(); err != nil {
			f.d.c, f.again = c, true
			return f
		}
		f.reopened, f.cut = true, c.w.Recovered()-before
	}
	f.d = m.complete(c)
	if f.d.final != "" && f.d.renameErr == nil {
		// Right after the rename, as for a rotation: the hand-off of the
		// last files starts while the others close.
		m.completed(f.d.final, c.w.Size(), now)
		f.d.handed = true
	}
	return f
}
