package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/jmxdp/jmxdp/bpf"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// The per-CPU cache of hot streams in front of the stream table (struct
// jm_stream_slot, docs/datapath.md "Counter cost"): a stream's counts are
// its table entry plus the slots that hold it on every CPU. A slot moves
// its counts into the table (a flush) when another stream takes it, with
// its seq odd meanwhile; the readers below read the slots, then the table,
// then the slots again, and read a stream again, on its own, when a slot
// that held it moved in between, so that no flush is counted twice or not
// at all.

// slotRetries bounds the re-reads of one stream whose slot keeps moving. A
// slot moves at most once a jiffy (take_slot), and the re-read takes a few
// microseconds, so a second try virtually always succeeds.
const slotRetries = 16

// ErrStreamsUnsettled is returned when a stream's cache slot moved during
// every one of slotRetries re-reads: no exact count could be read.
var ErrStreamsUnsettled = errors.New("stream cache slot kept moving while read")

// Hash constants of slot_index (bpf/jmxdp.c).
const (
	slotHashMul  = 0x9e3779b1
	slotKeyWords = 6
)

// slotIndex is slot_index in bpf/jmxdp.c: the slot a key takes among n (a
// power of two). The key's words are read in host order, as the program
// reads them (bpfel).
func slotIndex(k *bpf.StreamKey, n uint32) uint32 {
	var w [slotKeyWords]uint32
	for i := range 4 {
		w[i] = binary.LittleEndian.Uint32(k.Router[4*i:])
	}
	w[4], w[5] = k.Mid, k.Sid
	var h uint32
	for _, x := range w {
		h = (h ^ x) * slotHashMul
	}
	return (h ^ h>>16) & (n - 1)
}

// slotsSnap is every CPU's copy of every slot, [index*ncpu + cpu].
type slotsSnap struct {
	ncpu int
	s    []bpf.StreamSlot
}

func (m *Maps) cache() *ebpf.Map { return m.m.JmStreamCache }

// readSlots copies the whole cache; nil without one (an instance pinned by
// a jmxdp before the cache).
func (m *Maps) readSlots() (*slotsSnap, error) {
	c := m.cache()
	if c == nil {
		return nil, nil
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("possible CPUs: %w", err)
	}
	n := int(c.MaxEntries())
	snap := &slotsSnap{ncpu: ncpu, s: make([]bpf.StreamSlot, n*ncpu)}
	keys := make([]uint32, n)
	var cursor ebpf.MapBatchCursor
	got, err := c.BatchLookup(&cursor, keys, snap.s, nil)
	if err == nil || errors.Is(err, ebpf.ErrKeyNotExist) {
		if got == n {
			return snap, nil
		}
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("batch read jm_stream_cache: %w", err)
	}
	// Per slot: kernels without batch reads of per-CPU arrays.
	per := make([]bpf.StreamSlot, ncpu)
	for i := range n {
		if err := c.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("read jm_stream_cache[%d]: %w", i, err)
		}
		copy(snap.s[i*ncpu:], per)
	}
	return snap, nil
}

// readSlot copies one slot index on every CPU.
func (m *Maps) readSlot(idx uint32) ([]bpf.StreamSlot, error) {
	var per []bpf.StreamSlot
	if err := m.cache().Lookup(idx, &per); err != nil {
		return nil, fmt.Errorf("read jm_stream_cache[%d]: %w", idx, err)
	}
	return per, nil
}

// addSlot adds a slot's counts for its stream to s.
func addSlot(s *vocab.StreamStats, sl *bpf.StreamSlot) {
	if sl.FirstSeenNs == 0 { // holds no counts
		return
	}
	s.Bytes += sl.Bytes
	for i, n := range sl.Inner {
		s.Inner[i] += n
		s.Packets += n
	}
	if first := time.Duration(sl.FirstSeenNs); s.FirstSeen == 0 || first < s.FirstSeen {
		s.FirstSeen = first
	}
	if last := time.Duration(sl.LastSeenNs); last > s.LastSeen {
		s.LastSeen = last
	}
}

// settled reports whether no slot of a moved between the two copies.
func settled(a, b []bpf.StreamSlot) bool {
	for i := range a {
		if a[i].Seq&1 != 0 || a[i].Seq != b[i].Seq {
			return false
		}
	}
	return true
}

// streamExact reads one stream alone: its slot index on every CPU, its
// table entry, the slots again, until no slot moved meanwhile. ok is false
// when the stream counted nothing anywhere.
func (m *Maps) streamExact(key *bpf.StreamKey) (vocab.StreamStats, bool, error) {
	for range slotRetries {
		var idx uint32
		var a []bpf.StreamSlot
		if m.cache() != nil {
			idx = slotIndex(key, m.cache().MaxEntries())
			var err error
			if a, err = m.readSlot(idx); err != nil {
				return vocab.StreamStats{}, false, err
			}
		}
		var v bpf.StreamValue
		var st vocab.StreamStats
		err := m.m.JmStreams.Lookup(key, &v)
		inTable := err == nil
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return vocab.StreamStats{}, false, fmt.Errorf("look up stream %v: %w", streamKeyFromBPF(key), err)
		}
		if inTable {
			st = streamStatsFromBPF(&v)
		}
		if a == nil {
			return st, inTable, nil
		}
		b, err := m.readSlot(idx)
		if err != nil {
			return vocab.StreamStats{}, false, err
		}
		if !settled(a, b) {
			continue
		}
		for i := range a {
			if a[i].Valid != 0 && a[i].Key == *key {
				addSlot(&st, &a[i])
			}
		}
		return st, inTable || st.Packets > 0, nil
	}
	return vocab.StreamStats{}, false, fmt.Errorf("stream %v: %w", streamKeyFromBPF(key), ErrStreamsUnsettled)
}

// eachStreamExact calls fn with every stream's exact counts: table entry
// plus cache slots. Streams no slot held when the slots were first read
// are given as the table has them (a slot taken after that first read
// holds only counts that came after it, never any the table also has);
// those a slot held wait for the second read of the slots and are read
// again alone (streamExact) when one of their slots moved. Memory: the
// cache's copies and the entries of the streams it holds, not the table.
func (m *Maps) eachStreamExact(fn func(vocab.Stream)) error {
	a, err := m.readSlots()
	if err != nil {
		return err
	}
	type held struct {
		at      []int // indexes into a.s holding the stream
		v       bpf.StreamValue
		inTable bool
	}
	pending := make(map[bpf.StreamKey]*held)
	if a != nil {
		for i := range a.s {
			if a.s[i].Valid == 0 {
				continue
			}
			h := pending[a.s[i].Key]
			if h == nil {
				h = &held{}
				pending[a.s[i].Key] = h
			}
			h.at = append(h.at, i)
		}
	}
	err = readAll(m.m.JmStreams, func(k *bpf.StreamKey, v *bpf.StreamValue) {
		if h := pending[*k]; h != nil {
			h.v, h.inTable = *v, true
			return
		}
		fn(vocab.Stream{StreamKey: streamKeyFromBPF(k), StreamStats: streamStatsFromBPF(v)})
	})
	if err != nil || a == nil {
		return err
	}
	b, err := m.readSlots()
	if err != nil {
		return err
	}
	for k, h := range pending {
		moved := false
		for _, i := range h.at {
			if a.s[i].Seq&1 != 0 || a.s[i].Seq != b.s[i].Seq {
				moved = true
				break
			}
		}
		var st vocab.StreamStats
		ok := h.inTable
		if moved {
			if st, ok, err = m.streamExact(&k); err != nil {
				return err
			}
		} else {
			if h.inTable {
				st = streamStatsFromBPF(&h.v)
			}
			for _, i := range h.at {
				addSlot(&st, &a.s[i])
			}
			ok = ok || st.Packets > 0
		}
		if ok {
			fn(vocab.Stream{StreamKey: streamKeyFromBPF(&k), StreamStats: st})
		}
	}
	return nil
}

// StreamSlot is the cache slot index the program gives stream k; ok is
// false without a cache.
func (m *Maps) StreamSlot(k vocab.StreamKey) (idx uint32, ok bool) {
	if m.cache() == nil {
		return 0, false
	}
	key := streamKeyToBPF(k)
	return slotIndex(&key, m.cache().MaxEntries()), true
}
