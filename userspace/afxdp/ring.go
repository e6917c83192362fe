package afxdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is the part of an AF_XDP ring shared by both directions: the
// producer and consumer indices and the flags word the kernel exposes in
// the mmap'd region. Indices are free-running uint32 counters; an entry's
// slot is index & mask.
//
// Each side caches the index the other side owns so it only touches the
// shared cache line when its cached view runs out, as libxdp does.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	size     uint32
	mask     uint32

	cachedProd uint32
	cachedCons uint32
}

// ringAt lays a ring over mem at the offsets the kernel reported. elem is
// the size of one descriptor; the caller builds the typed descriptor slice.
func ringAt(mem []byte, off unix.XDPRingOffset, size uint32, elem uintptr) (ring, unsafe.Pointer, error) {
	need := off.Desc + uint64(size)*uint64(elem)
	if uint64(len(mem)) < need || off.Producer+4 > uint64(len(mem)) ||
		off.Consumer+4 > uint64(len(mem)) || off.Flags+4 > uint64(len(mem)) {
		return ring{}, nil, fmt.Errorf("ring mapping of %d bytes too small for offsets %+v and %d entries", len(mem), off, size)
	}
	// Misaligned indices would make the atomics below unsound.
	if off.Producer%4 != 0 || off.Consumer%4 != 0 || off.Flags%4 != 0 || off.Desc%8 != 0 {
		return ring{}, nil, fmt.Errorf("ring offsets %+v misaligned", off)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	return ring{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		size:     size,
		mask:     size - 1,
	}, unsafe.Add(base, off.Desc), nil
}

// fillRing is the UMEM fill ring: userspace produces frame addresses, the
// kernel consumes them to receive into.
type fillRing struct {
	ring
	descs []uint64
}

func newFillRing(mem []byte, off unix.XDPRingOffset, size uint32) (*fillRing, error) {
	r, d, err := ringAt(mem, off, size, unsafe.Sizeof(uint64(0)))
	if err != nil {
		return nil, err
	}
	f := &fillRing{ring: r, descs: unsafe.Slice((*uint64)(d), size)}
	// The producer resumes where the ring stands (0 on a new socket).
	f.cachedProd = atomic.LoadUint32(f.producer)
	f.cachedCons = atomic.LoadUint32(f.consumer) + size
	return f, nil
}

// free returns how many slots can be produced, refreshing the cached
// consumer index (load-acquire) only when the cache says fewer than want.
func (f *fillRing) free(want uint32) uint32 {
	n := f.cachedCons - f.cachedProd
	if n >= want {
		return n
	}
	f.cachedCons = atomic.LoadUint32(f.consumer) + f.size
	return f.cachedCons - f.cachedProd
}

// produce writes addrs (which must fit: see free) and publishes them with
// one store-release of the producer index, after the descriptor writes.
func (f *fillRing) produce(addrs []uint64) {
	if len(addrs) == 0 {
		return
	}
	for i, a := range addrs {
		f.descs[(f.cachedProd+uint32(i))&f.mask] = a
	}
	f.cachedProd += uint32(len(addrs))
	atomic.StoreUint32(f.producer, f.cachedProd)
}

// needsWakeup reports whether the kernel asked to be kicked (XDP_RING_NEED_WAKEUP)
// before it will look at the fill ring again.
func (f *fillRing) needsWakeup() bool {
	return atomic.LoadUint32(f.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// rxRing is the RX ring: the kernel produces descriptors of received
// frames, userspace consumes them.
type rxRing struct {
	ring
	descs []unix.XDPDesc
}

func newRxRing(mem []byte, off unix.XDPRingOffset, size uint32) (*rxRing, error) {
	r, d, err := ringAt(mem, off, size, unsafe.Sizeof(unix.XDPDesc{}))
	if err != nil {
		return nil, err
	}
	x := &rxRing{ring: r, descs: unsafe.Slice((*unix.XDPDesc)(d), size)}
	x.cachedCons = atomic.LoadUint32(x.consumer)
	x.cachedProd = atomic.LoadUint32(x.producer)
	return x, nil
}

// avail returns how many descriptors (at most max) are ready, reloading
// the producer index (load-acquire, so the descriptors it covers are
// visible) only when the cached view is empty.
func (x *rxRing) avail(max uint32) uint32 {
	n := x.cachedProd - x.cachedCons
	if n == 0 {
		x.cachedProd = atomic.LoadUint32(x.producer)
		n = x.cachedProd - x.cachedCons
	}
	return min(n, max)
}

// at returns the i-th ready descriptor.
func (x *rxRing) at(i uint32) unix.XDPDesc { return x.descs[(x.cachedCons+i)&x.mask] }

// release hands n consumed slots back to the kernel. The store-release
// orders it after our reads of those descriptors.
func (x *rxRing) release(n uint32) {
	if n == 0 {
		return
	}
	x.cachedCons += n
	atomic.StoreUint32(x.consumer, x.cachedCons)
}
