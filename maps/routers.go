package maps

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Counts are packets and bytes, packets by inner kind as a stream has them.
type Counts struct {
	Packets uint64
	Bytes   uint64
	Inner   [vocab.NumInner]uint64
}

func (c *Counts) add(t *bpf.RouterTotal) {
	c.Bytes += t.Bytes
	for i, n := range t.Inner {
		c.Inner[i] += n
		c.Packets += n
	}
}

// RouterTotal is what a router's streams counted outside the stream table:
// Overflow, the counts of streams that found the table full (the program
// folds them, per CPU, into jm_router_overflow), and Retired, those of the
// idle streams userspace removed (RetireIdle, jm_router_retired). A
// router's counts are its streams' plus these: nothing the table cannot
// hold is lost.
type RouterTotal struct {
	Overflow Counts
	Retired  Counts
}

// Sum is Overflow plus Retired.
func (t RouterTotal) Sum() Counts {
	s := t.Overflow
	s.Packets += t.Retired.Packets
	s.Bytes += t.Retired.Bytes
	for i := range s.Inner {
		s.Inner[i] += t.Retired.Inner[i]
	}
	return s
}

// RouterTotals reads the per-router overflow and retired totals; empty for
// an instance pinned by a jmxdp without them.
func (m *Maps) RouterTotals() (map[netip.Addr]RouterTotal, error) {
	out := make(map[netip.Addr]RouterTotal)
	if m.m.JmRouterOverflow != nil {
		it := m.m.JmRouterOverflow.Iterate()
		var k bpf.Addr
		var per []bpf.RouterTotal
		for it.Next(&k, &per) {
			a := addrFrom16(k.Addr)
			t := out[a]
			for i := range per {
				t.Overflow.add(&per[i])
			}
			out[a] = t
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("read jm_router_overflow: %w", err)
		}
	}
	if m.m.JmRouterRetired != nil {
		err := readAll(m.m.JmRouterRetired, func(k *bpf.Addr, v *bpf.RouterTotal) {
			a := addrFrom16(k.Addr)
			t := out[a]
			t.Retired.add(v)
			out[a] = t
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RetireIdle removes from the stream table up to limit streams whose last
// packet (in the table or a cache slot) is older than idleBefore
// (CLOCK_MONOTONIC_COARSE, as LastSeen), oldest first, folding each one's counts into its
// router's retired total, so that the table keeps room for new streams
// (the program refuses them when it is full). An entry is read and removed
// in one step (BPF_MAP_LOOKUP_AND_DELETE_ELEM), so what any CPU added
// before the removal is in the fold; what a CPU adds through an entry
// pointer it looked up just before the removal lands in the freed entry
// and is lost (docs/datapath.md, "Eviction": only a stream idle for
// idleBefore sends such a frame). One process retires: the retired total
// is read, added to and written back.
func (m *Maps) RetireIdle(idleBefore time.Duration, limit int) (int, error) {
	if m.m.JmRouterRetired == nil {
		return 0, errors.New("retire streams: the instance has no jm_router_retired (pinned by an older jmxdp)")
	}
	m.retire.Lock()
	defer m.retire.Unlock()
	// A slot may hold counts newer than the entry's: the stream is idle
	// only when they are old too. Its slot's counts stay in the slot (the
	// stream is listed with them alone) until a flush inserts it again.
	slotSeen := map[bpf.StreamKey]uint64{}
	snap, err := m.readSlots()
	if err != nil {
		return 0, err
	}
	if snap != nil {
		for i := range snap.s {
			if sl := &snap.s[i]; sl.Valid != 0 && sl.LastSeenNs > slotSeen[sl.Key] {
				slotSeen[sl.Key] = sl.LastSeenNs
			}
		}
	}
	type cand struct {
		k    bpf.StreamKey
		last uint64
	}
	var cands []cand
	err = readAll(m.m.JmStreams, func(k *bpf.StreamKey, v *bpf.StreamValue) {
		last := max(v.LastSeenNs, slotSeen[*k])
		if last < uint64(idleBefore) {
			cands = append(cands, cand{*k, last})
		}
	})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.last, b.last) })
	n := 0
	for _, c := range cands {
		if n >= limit {
			break
		}
		var v bpf.StreamValue
		if err := m.m.JmStreams.LookupAndDelete(&c.k, &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return n, fmt.Errorf("retire stream %v: %w", streamKeyFromBPF(&c.k), err)
		}
		if err := m.foldRetired(c.k.Router, &v); err != nil {
			// Put it back rather than lose it: the stream stays.
			if perr := m.m.JmStreams.Update(&c.k, &v, ebpf.UpdateNoExist); perr != nil {
				return n, fmt.Errorf("%w; and restoring the stream failed: %v", err, perr)
			}
			return n, err
		}
		n++
	}
	return n, nil
}

func (m *Maps) foldRetired(router [16]byte, v *bpf.StreamValue) error {
	k := bpf.Addr{Addr: router}
	var t bpf.RouterTotal
	if err := m.m.JmRouterRetired.Lookup(&k, &t); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("read retired total of %v: %w", addrFrom16(router), err)
	}
	t.Bytes += v.Bytes
	for i := range t.Inner {
		t.Inner[i] += v.Inner[i]
	}
	if err := m.m.JmRouterRetired.Put(&k, &t); err != nil {
		return fmt.Errorf("write retired total of %v: %w", addrFrom16(router), err)
	}
	return nil
}

// EachStreamAndRouters is EachStream then RouterTotals, with no RetireIdle
// of this Maps in between: a stream retired meanwhile would be missing from
// the streams and already in its router's retired total, or counted in
// both. Readers in other processes (jmxdp stats on the pins) do not share
// the lock: a retirement can make one of their reads a stream short.
func (m *Maps) EachStreamAndRouters(fn func(vocab.Stream)) (map[netip.Addr]RouterTotal, error) {
	m.retire.RLock()
	defer m.retire.RUnlock()
	if err := m.eachStreamExact(fn); err != nil {
		return nil, err
	}
	return m.RouterTotals()
}
