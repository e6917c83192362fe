package metrics

import (
	"cmp"
	"container/heap"
	"slices"
	"time"
)

// tally is a sum of stream table entries (or of other counts, in packets).
type tally struct {
	packets, bytes uint64
	lastSeen       time.Duration // CLOCK_MONOTONIC_COARSE
}

// merge adds another tally to t.
func (t *tally) merge(o tally) {
	t.packets += o.packets
	t.bytes += o.bytes
	t.lastSeen = max(t.lastSeen, o.lastSeen)
}

func byBytes(t tally) uint64   { return t.bytes }
func byPackets(t tally) uint64 { return t.packets }

type streamID struct{ mid, sid uint32 }

func cmpStreamID(a, b streamID) int {
	return cmp.Or(cmp.Compare(a.mid, b.mid), cmp.Compare(a.sid, b.sid))
}

// ranked is a keyed tally.
type ranked[K any] struct {
	key K
	tally
}

// top keeps the n heaviest of the items it is given, by weight, ties going
// to the smaller key (so that the choice is stable between scrapes), and
// the sum of all of them: O(n) memory and O(log n) per item, whatever the
// number of items.
type top[K any] struct {
	n      int
	weight func(tally) uint64
	key    func(a, b K) int
	h      []ranked[K] // min-heap: h[0] ranks lowest
	total  tally
	count  int
}

func newTop[K any](n int, weight func(tally) uint64, key func(a, b K) int) *top[K] {
	return &top[K]{n: max(n, 0), weight: weight, key: key}
}

// below reports whether a ranks below b.
func (t *top[K]) below(a, b ranked[K]) bool {
	wa, wb := t.weight(a.tally), t.weight(b.tally)
	return wa < wb || wa == wb && t.key(a.key, b.key) > 0
}

func (t *top[K]) add(it ranked[K]) {
	t.count++
	t.total.packets += it.packets
	t.total.bytes += it.bytes
	switch {
	case t.n == 0:
	case len(t.h) < t.n:
		heap.Push((*topHeap[K])(t), it)
	case t.below(t.h[0], it):
		t.h[0] = it
		heap.Fix((*topHeap[K])(t), 0)
	}
}

// result returns the kept items heaviest first, the sum of the others and
// how many they are.
func (t *top[K]) result() (named []ranked[K], rest tally, folded int) {
	named = slices.Clone(t.h)
	slices.SortFunc(named, func(a, b ranked[K]) int {
		switch {
		case t.below(b, a):
			return -1
		case t.below(a, b):
			return 1
		}
		return 0
	})
	rest = t.total
	for _, it := range named {
		rest.packets -= it.packets
		rest.bytes -= it.bytes
	}
	return named, rest, t.count - len(named)
}

// topHeap is top's container/heap view.
type topHeap[K any] top[K]

func (h *topHeap[K]) Len() int           { return len(h.h) }
func (h *topHeap[K]) Less(i, j int) bool { return (*top[K])(h).below(h.h[i], h.h[j]) }
func (h *topHeap[K]) Swap(i, j int)      { h.h[i], h.h[j] = h.h[j], h.h[i] }
func (h *topHeap[K]) Push(x any)         { h.h = append(h.h, x.(ranked[K])) }
func (h *topHeap[K]) Pop() any {
	it := h.h[len(h.h)-1]
	h.h = h.h[:len(h.h)-1]
	return it
}
