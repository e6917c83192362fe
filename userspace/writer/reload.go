package writer

import (
	"container/heap"
	"errors"
	"time"
)

// rotationChange is a pending change of RotateSize and RotateAge (a reload).
type rotationChange struct {
	size int64
	age  time.Duration
}

// SetRotation changes RotateSize and RotateAge from any goroutine. The
// writer goroutine applies it at its next batch (SetClock) or Tick, so the per-packet path
// reads the values without a lock. Files already open rotate by the new
// limits from then on; a file older than a new, smaller RotateAge
// completes at that Tick.
func (m *Manager) SetRotation(size int64, age time.Duration) error {
	if size < 0 || age < 0 {
		return errors.New("writer: negative rotation size or age")
	}
	if m.cfg.SingleFile {
		return nil // one file per stream, never rotated
	}
	m.pendingRotation.Store(&rotationChange{size: size, age: age})
	return nil
}

// applyRotation takes a pending SetRotation (SetClock and Tick).
func (m *Manager) applyRotation() {
	r := m.pendingRotation.Swap(nil)
	if r == nil {
		return
	}
	m.cfg.RotateSize, m.cfg.RotateAge = r.size, r.age
	m.idleLimit = max(2*r.age, minIdle)
	if r.age == 0 {
		// No age rotation: the heap is not kept.
		for len(m.ages) > 0 {
			heap.Pop(&m.ages)
		}
		return
	}
	// Files opened while age rotation was off are not in the heap.
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.streams {
		if c := s.cur; c != nil && c.heapIdx < 0 {
			heap.Push(&m.ages, c)
		}
	}
}

// SetRotation changes every shard's rotation limits (see
// Manager.SetRotation).
func (g *Group) SetRotation(size int64, age time.Duration) error {
	for _, m := range g.shards {
		if err := m.SetRotation(size, age); err != nil {
			return err
		}
	}
	return nil
}
