package writer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Group is several Managers writing under one directory, each for the
// streams a caller sends it (by key), each driven by a goroutine of its
// own: the writers of a capture on several cores. The first Manager holds
// the directory's lock and completes what an earlier run left; MaxOpen and
// BufferMemory are shared out.
type Group struct {
	shards []*Manager
}

// NewGroup makes n Managers (at least one) for cfg.Dir.
func NewGroup(cfg Config, n int) (*Group, error) {
	n = max(n, 1)
	if cfg.MaxOpen == 0 {
		cfg.MaxOpen = DefaultMaxOpen()
	}
	if cfg.BufferMemory == 0 {
		cfg.BufferMemory = DefaultBufferMemory
	}
	cfg.MaxOpen = max(cfg.MaxOpen/n, 1)
	cfg.BufferMemory = max(cfg.BufferMemory/int64(n), 1)
	if cfg.MaxStreams > 0 {
		cfg.MaxStreams = max(cfg.MaxStreams/n, 1)
	}
	g := &Group{}
	for i := range n {
		c := cfg
		c.shard = i > 0
		m, err := New(c)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("writer %d of %d: %w", i+1, n, err)
		}
		g.shards = append(g.shards, m)
	}
	return g, nil
}

// Shards are the group's Managers.
func (g *Group) Shards() []*Manager { return g.shards }

// Stats adds up the Managers' totals. Safe for concurrent use.
func (g *Group) Stats() Stats {
	var t Stats
	for _, m := range g.shards {
		s := m.Stats()
		t.Packets += s.Packets
		t.Bytes += s.Bytes
		t.Buffered += s.Buffered
		for r := range t.Drops {
			t.Drops[r] += s.Drops[r]
		}
		t.FilesCreated += s.FilesCreated
		t.FilesCompleted += s.FilesCompleted
		t.FilesRemoved += s.FilesRemoved
		t.RotationsSize += s.RotationsSize
		t.RotationsAge += s.RotationsAge
		t.Evictions += s.Evictions
		t.StreamEvictions += s.StreamEvictions
		t.Reopens += s.Reopens
		t.Flushes += s.Flushes
		t.FlushesAge += s.FlushesAge
		t.FlushesMemory += s.FlushesMemory
		t.BufferBytes += s.BufferBytes
		t.OpenFiles += s.OpenFiles
		t.Streams += s.Streams
		t.Faults += s.Faults
		t.RecoveredFiles += s.RecoveredFiles
		t.RecoveredBytes += s.RecoveredBytes
		t.RecoveryPending += s.RecoveryPending
	}
	return t
}

// Streams are every Manager's streams, sorted by key. Safe for concurrent
// use.
func (g *Group) Streams() []StreamStats {
	if len(g.shards) == 1 {
		return g.shards[0].Streams()
	}
	var out []StreamStats
	for _, m := range g.shards {
		out = append(out, m.Streams()...)
	}
	slices.SortFunc(out, func(a, b StreamStats) int {
		return cmp.Or(cmp.Compare(a.Key.MID, b.Key.MID), cmp.Compare(a.Key.SID, b.Key.SID))
	})
	return out
}

// Close closes every Manager, the one holding the lock last. The first's
// background recovery stops taking files at once, not after the others.
func (g *Group) Close() error {
	if len(g.shards) > 0 {
		g.shards[0].rec.cancel()
	}
	var errs []error
	for i := len(g.shards) - 1; i >= 0; i-- {
		errs = append(errs, g.shards[i].Close())
	}
	return errors.Join(errs...)
}
