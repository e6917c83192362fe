package iheap

import (
	"container/heap"
	"math/rand/v2"
	"testing"
)

type item struct {
	v, idx int
}

func (a *item) Before(b *item) bool { return a.v < b.v }
func (a *item) SetIndex(i int)      { a.idx = i }

// TestOrderAndIndex pushes, fixes and removes by index at random and
// checks the order popped and every element's index.
func TestOrderAndIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Heap[*item]
	var all []*item
	for range 500 {
		it := &item{v: rng.IntN(1000)}
		all = append(all, it)
		heap.Push(&h, it)
	}
	for i := range 100 {
		it := all[i]
		it.v = rng.IntN(1000)
		heap.Fix(&h, it.idx)
	}
	for i := 100; i < 150; i++ {
		heap.Remove(&h, all[i].idx)
		if all[i].idx != -1 {
			t.Fatalf("removed element keeps index %d", all[i].idx)
		}
	}
	for i, it := range h {
		if it.idx != i {
			t.Fatalf("element at %d says %d", i, it.idx)
		}
	}
	prev := -1
	for n := 0; h.Len() > 0; n++ {
		it := heap.Pop(&h).(*item)
		if it.v < prev || it.idx != -1 {
			t.Fatalf("pop %d: value %d after %d, index %d", n, it.v, prev, it.idx)
		}
		prev = it.v
	}
}
