package writer

import (
	"slices"
	"time"
)

// StreamBytes is what a remembered stream costs the writer, its buffer
// aside (BufferMemory bounds those): the stream, its current file and its
// pcapng writer, the map entry, measured by TestMemory. MaxStreams is
// derived from it.
const StreamBytes = 800

// evictFraction: when MaxStreams is reached, this share of the streams
// (the least recently seen) goes at once, so the O(streams) pass that
// finds them is paid once per that many new streams.
const evictFraction = 16

// evictStreams makes room for a new stream once MaxStreams are remembered:
// the least recently seen 1/evictFraction of them have their files
// completed (flushed, closed, renamed) and are forgotten. Their counters
// stay in the totals; if one comes back it starts a new file.
func (m *Manager) evictStreams(now time.Time) {
	n := max(len(m.streams)/evictFraction, 1)
	seen := make([]int64, 0, len(m.streams))
	for _, s := range m.streams {
		seen = append(seen, s.lastSeen)
	}
	slices.Sort(seen)
	cut := seen[n-1]
	var victims []*stream
	for _, s := range m.streams {
		if s.lastSeen <= cut && len(victims) < n {
			victims = append(victims, s)
		}
	}
	for _, s := range victims {
		if s.cur != nil {
			m.finalize(s, now, rotEvict)
		}
		m.mu.Lock()
		delete(m.streams, s.key)
		m.totals.StreamEvictions++
		m.mu.Unlock()
	}
	if !m.evictLogged {
		m.evictLogged = true
		m.log.Warn("more streams than capture.max_stream_memory allows: the least recently seen are completed and forgotten (counted in jmxdp_writer_stream_evictions_total; logged once)",
			"max_streams", m.cfg.MaxStreams)
	}
}
