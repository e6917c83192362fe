// Package iheap is a container/heap of elements that keep their own index,
// so that heap.Fix and heap.Remove find them: the writer's open files by
// age and retention's completed files by age.
package iheap

// Elem is what a Heap holds: a pointer that orders itself and keeps its
// index, -1 once out of the heap.
type Elem[E any] interface {
	Before(E) bool
	SetIndex(int)
}

// Heap implements heap.Interface; use it through container/heap.
type Heap[E Elem[E]] []E

func (h Heap[E]) Len() int           { return len(h) }
func (h Heap[E]) Less(i, j int) bool { return h[i].Before(h[j]) }
func (h Heap[E]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].SetIndex(i)
	h[j].SetIndex(j)
}

// Push appends x, an E; container/heap calls it.
func (h *Heap[E]) Push(x any) {
	e := x.(E)
	e.SetIndex(len(*h))
	*h = append(*h, e)
}

// Pop removes the last element; container/heap calls it.
func (h *Heap[E]) Pop() any {
	old := *h
	e := old[len(old)-1]
	var zero E
	old[len(old)-1] = zero // no reference kept past the length
	*h = old[:len(old)-1]
	e.SetIndex(-1)
	return e
}
