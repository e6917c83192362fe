package instance

import (
	"cmp"
	"errors"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/filter"
	"github.com/jmxdp/jmxdp/userspace/forward"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Sample is one reading of an instance's maps.
type Sample struct {
	At       time.Time     // when it was read (wall and monotonic clock)
	Coarse   time.Duration // CLOCK_MONOTONIC_COARSE then: the clock of last_seen
	Attached bool
	Counters vocab.Counters
	Streams  []vocab.Stream
	// Untrusted are the sources the allowlist dropped.
	Untrusted []vocab.UntrustedSource
	// Candidates: Jmirror-looking traffic on ports not decoded.
	Candidates []vocab.Candidate
	Capacity   uint32 // of the stream table
	Settings   vocab.Settings
	Ports      []uint16
	Rules      int // policy rules
	Allow      int // allowlist prefixes
	// Forward are the forward rules; ForwardStreams their streams'
	// forward counters.
	Forward        []vocab.PolicyRule
	ForwardStreams map[vocab.StreamKey]vocab.ForwardStats
	// Socket is what the daemon's sender sent from sockets, per stream:
	// the file it publishes in the run-state directory (docs/forward.md);
	// nil without one (ReadSenderCounts).
	Socket map[vocab.StreamKey]forward.StreamFile
}

// ReadSenderCounts adds the forward sender's per-stream counts, which the
// daemon on iface publishes under runDir. A file that cannot be read
// leaves them out: the maps are what counts.
func (s *Sample) ReadSenderCounts(runDir, iface string) {
	s.Socket, _ = forward.ReadStreams(forward.StreamsPath(runDir, iface))
}

// ReadSample reads the maps pinned in dir, the instance on iface. It
// opens them afresh each time, so that a watch follows an instance whose
// maps were replaced (a restart that migrated them).
func ReadSample(iface, dir string) (*Sample, error) {
	p, err := OpenPinned(dir)
	if errors.Is(err, maps.ErrNotPinned) {
		return nil, NoInstance(iface, dir, false)
	}
	if err != nil {
		return nil, err
	}
	defer p.Close()
	s := &Sample{Capacity: p.StreamCapacity()}
	if s.Counters, err = p.Counters(); err != nil {
		return nil, err
	}
	if s.Streams, err = p.Streams(); err != nil {
		return nil, err
	}
	if s.Untrusted, err = p.Untrusted(); err != nil {
		return nil, err
	}
	if s.Candidates, err = p.Candidates(); err != nil {
		return nil, err
	}
	if s.Settings, err = p.Settings(); err != nil {
		return nil, err
	}
	if s.Ports, err = p.Ports(); err != nil {
		return nil, err
	}
	rules, err := p.Policies()
	if err != nil {
		return nil, err
	}
	allow, err := p.Allowlist()
	if err != nil {
		return nil, err
	}
	s.Rules, s.Allow = len(rules), len(allow)
	for _, r := range rules {
		if r.Action == vocab.ActionForward {
			s.Forward = append(s.Forward, r)
		}
	}
	if s.ForwardStreams, err = p.ForwardStreams(); err != nil {
		return nil, err
	}
	s.At = time.Now()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err == nil {
		s.Coarse = time.Duration(ts.Nano())
	}
	s.Attached = linked(dir)
	return s, nil
}

// Ago is how long before the sample a CLOCK_MONOTONIC_COARSE time was (a
// last_seen); 0 when unknown.
func (s *Sample) Ago(t time.Duration) time.Duration {
	if s.Coarse == 0 || t == 0 || t > s.Coarse {
		return 0
	}
	return s.Coarse - t
}

// Evicted is how many streams the table has dropped to make room: those
// it created and no longer holds.
func (s *Sample) Evicted() uint64 {
	n := uint64(len(s.Streams))
	if s.Counters[vocab.StatStreamNew] > n {
		return s.Counters[vocab.StatStreamNew] - n
	}
	return 0
}

// StreamRate is one stream's rates.
type StreamRate struct {
	Packets float64 // per second
	Bits    float64 // per second
}

// Rates are per-second rates between two samples.
type Rates struct {
	Interval  float64 // seconds
	Counters  [vocab.NumStats]float64
	Streams   map[vocab.StreamKey]StreamRate
	Untrusted map[netip.Addr]float64 // packets/s
}

// delta is how much a counter grew; one that went back (maps recreated)
// counts from zero.
func delta(prev, cur uint64) uint64 {
	if cur >= prev {
		return cur - prev
	}
	return cur
}

// ComputeRates is the growth from prev to cur over the time between them;
// nil when no time passed.
func ComputeRates(prev, cur *Sample) *Rates {
	dt := cur.At.Sub(prev.At).Seconds()
	if dt <= 0 {
		return nil
	}
	r := &Rates{Interval: dt, Streams: make(map[vocab.StreamKey]StreamRate, len(cur.Streams)), Untrusted: map[netip.Addr]float64{}}
	for i := range cur.Counters {
		r.Counters[i] = float64(delta(prev.Counters[i], cur.Counters[i])) / dt
	}
	before := make(map[vocab.StreamKey]vocab.StreamStats, len(prev.Streams))
	for _, s := range prev.Streams {
		before[s.StreamKey] = s.StreamStats
	}
	for _, s := range cur.Streams {
		b := before[s.StreamKey] // a new stream grew from zero
		r.Streams[s.StreamKey] = StreamRate{
			Packets: float64(delta(b.Packets, s.Packets)) / dt,
			Bits:    float64(delta(b.Bytes, s.Bytes)) * 8 / dt,
		}
	}
	ub := map[netip.Addr]uint64{}
	for _, u := range prev.Untrusted {
		ub[u.Addr] = u.Packets
	}
	for _, u := range cur.Untrusted {
		r.Untrusted[u.Addr] = float64(delta(ub[u.Addr], u.Packets)) / dt
	}
	return r
}

// TopStreams sorts the streams that match f (nil: all), busiest first,
// and keeps top (0: all). Without rates busiest is most bytes; with
// rates, most bits/s, then most bytes. Ties fall back to packets, then
// (mid, sid, router): the order is the same for the same counts.
func (s *Sample) TopStreams(r *Rates, top int, f *filter.Filter) []vocab.Stream {
	out := s.MatchingStreams(f)
	slices.SortStableFunc(out, func(a, b vocab.Stream) int {
		if r != nil {
			if c := cmp.Compare(r.Streams[b.StreamKey].Bits, r.Streams[a.StreamKey].Bits); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(b.Bytes, a.Bytes), cmp.Compare(b.Packets, a.Packets),
			cmp.Compare(a.MID, b.MID), cmp.Compare(a.SID, b.SID), a.Router.Compare(b.Router))
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}

// MatchingStreams is a copy of the sample's streams that match f (nil:
// all). Each is one router's entry of the stream table, filtered on its
// own: router is that router, packets and bytes its share.
func (s *Sample) MatchingStreams(f *filter.Filter) []vocab.Stream {
	if f == nil {
		return slices.Clone(s.Streams)
	}
	var out []vocab.Stream
	for _, st := range s.Streams {
		if f.Match(filter.StreamOf(st)) {
			out = append(out, st)
		}
	}
	return out
}

// TopUntrusted sorts the untrusted sources, busiest first (by packets/s
// with rates, then by packets, then by address), and keeps top (0: all).
func (s *Sample) TopUntrusted(r *Rates, top int) []vocab.UntrustedSource {
	out := slices.Clone(s.Untrusted)
	slices.SortStableFunc(out, func(a, b vocab.UntrustedSource) int {
		if r != nil {
			if c := cmp.Compare(r.Untrusted[b.Addr], r.Untrusted[a.Addr]); c != 0 {
				return c
			}
		}
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), a.Addr.Compare(b.Addr))
	})
	if top > 0 && len(out) > top {
		out = out[:top]
	}
	return out
}
