package afxdp

import (
	"bytes"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fakeKernel plays the kernel's side of the rings over ordinary memory, so
// the ring logic is tested without root: it takes frames from the fill
// ring and produces RX descriptors, as xsk_rcv does in copy mode.
type fakeKernel struct {
	s        *Socket
	fillCons uint32 // the kernel's consumer index of the fill ring
	rxProd   uint32 // the kernel's producer index of the RX ring
	headroom uint64
}

// Offsets of a fake ring: each index on its own cache line, like the
// kernel's layout.
var fakeOff = unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}

func fakeRingMem(size, elem int) []byte {
	n := int(fakeOff.Desc) + size*elem
	// Backed by uint64s for the alignment the atomics and descriptors need.
	words := make([]uint64, (n+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)
}

// newFake makes a Socket over fake rings whose indices start at start, to
// exercise wrap-around of the free-running uint32 indices.
func newFake(t testing.TB, numFrames, frameSize, ringSize int, start uint32) (*Socket, *fakeKernel) {
	t.Helper()
	fillMem := fakeRingMem(ringSize, 8)
	rxMem := fakeRingMem(ringSize, int(unsafe.Sizeof(unix.XDPDesc{})))
	for _, m := range [][]byte{fillMem, rxMem} {
		binary.NativeEndian.PutUint32(m[fakeOff.Producer:], start)
		binary.NativeEndian.PutUint32(m[fakeOff.Consumer:], start)
	}
	fill, err := newFillRing(fillMem, fakeOff, uint32(ringSize))
	if err != nil {
		t.Fatal(err)
	}
	rx, err := newRxRing(rxMem, fakeOff, uint32(ringSize))
	if err != nil {
		t.Fatal(err)
	}
	s := &Socket{fd: -1, umem: make([]byte, numFrames*frameSize), fill: fill, rx: rx}
	s.initFrames(numFrames, frameSize)
	return s, &fakeKernel{s: s, fillCons: start, rxProd: start, headroom: 256}
}

// deliver receives data into the next fill-ring frame. It reports false
// when the kernel would drop the frame: fill ring empty or RX ring full.
func (k *fakeKernel) deliver(data []byte) bool {
	f, x := k.s.fill, k.s.rx
	if atomic.LoadUint32(f.producer) == k.fillCons || k.rxProd-atomic.LoadUint32(x.consumer) == x.size {
		return false
	}
	addr := f.descs[k.fillCons&f.mask] + k.headroom
	k.fillCons++
	atomic.StoreUint32(f.consumer, k.fillCons)
	copy(k.s.umem[addr:], data)
	x.descs[k.rxProd&x.mask] = unix.XDPDesc{Addr: addr, Len: uint32(len(data))}
	k.rxProd++
	atomic.StoreUint32(x.producer, k.rxProd)
	return true
}

// inFill is how many frames the fill ring holds.
func (k *fakeKernel) inFill() int { return int(atomic.LoadUint32(k.s.fill.producer) - k.fillCons) }

func payload(i int) []byte {
	b := make([]byte, 60+i%100)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

// Frames circulate through indices that wrap around 2^32, the fill ring
// never holds more than its size, and no frame is lost or duplicated.
func TestRingsWrapAndRecycle(t *testing.T) {
	const numFrames, ringSize = 64, 16
	s, k := newFake(t, numFrames, 2048, ringSize, ^uint32(0)-40)
	if k.inFill() != ringSize || len(s.free) != numFrames-ringSize {
		t.Fatalf("after open: %d in fill ring, %d free", k.inFill(), len(s.free))
	}
	next, seen := 0, 0
	for round := range 50 {
		// Vary the burst so the rings wrap at every offset.
		for j := 0; j < round%ringSize+1; j++ {
			if !k.deliver(payload(next)) {
				t.Fatalf("round %d: kernel could not deliver frame %d", round, next)
			}
			next++
		}
		s.ReceiveCopy(func(b []byte) {
			if want := payload(seen); !bytes.Equal(b, want) {
				t.Fatalf("frame %d: got %x, want %x", seen, b, want)
			}
			seen++
		})
		if seen != next {
			t.Fatalf("round %d: received %d of %d", round, seen, next)
		}
		if k.inFill() > ringSize || k.inFill()+len(s.free) != numFrames {
			t.Fatalf("round %d: %d frames in fill ring + %d free != %d", round, k.inFill(), len(s.free), numFrames)
		}
	}
	if k.fillCons > 1<<31 {
		t.Fatalf("indices did not wrap: %#x", k.fillCons)
	}
}

// A full RX ring makes the kernel drop; draining it lets frames through
// again.
func TestRingFull(t *testing.T) {
	s, k := newFake(t, 64, 2048, 8, 0)
	for i := range 8 {
		if !k.deliver(payload(i)) {
			t.Fatalf("frame %d dropped", i)
		}
	}
	if k.deliver(payload(8)) {
		t.Fatal("delivered into a full RX ring")
	}
	if n := s.ReceiveCopy(func([]byte) {}); n != 8 {
		t.Fatalf("received %d, want 8", n)
	}
	if !k.deliver(payload(9)) {
		t.Fatal("ring still full after draining")
	}
}

// Frames out through Receive are not recycled until released, once.
func TestReceiveReleaseFake(t *testing.T) {
	const numFrames = 8
	s, k := newFake(t, numFrames, 4096, 8, 0)
	for i := range numFrames {
		if !k.deliver(payload(i)) {
			t.Fatalf("frame %d dropped", i)
		}
	}
	batch := make([]Desc, 3)
	var out []Desc
	for range numFrames {
		n := s.Receive(batch)
		for _, d := range batch[:n] {
			if got := s.Frame(d); !bytes.Equal(got, payload(len(out))) {
				t.Fatalf("frame %d: %x", len(out), got)
			}
			out = append(out, d)
		}
	}
	if len(out) != numFrames || k.inFill() != 0 || len(s.free) != 0 {
		t.Fatalf("%d received, %d in fill ring, %d free", len(out), k.inFill(), len(s.free))
	}
	if k.deliver(payload(99)) {
		t.Fatal("kernel got a frame while all are lent out")
	}
	if err := s.Release(out[:5]...); err != nil {
		t.Fatal(err)
	}
	if k.inFill() != 5 {
		t.Fatalf("%d frames back in the fill ring, want 5", k.inFill())
	}
	if err := s.Release(out[4], out[5]); err == nil {
		t.Fatal("double release accepted")
	}
	if err := s.Release(Desc{Addr: numFrames * 4096}); err == nil {
		t.Fatal("release outside the UMEM accepted")
	}
	if k.inFill() != 6 {
		t.Fatalf("%d frames in the fill ring, want 6", k.inFill())
	}
}

// A descriptor pointing outside the UMEM is skipped, not a crash.
func TestBadDescriptor(t *testing.T) {
	s, k := newFake(t, 4, 2048, 4, 0)
	k.headroom = 0
	if !k.deliver(payload(0)) {
		t.Fatal("dropped")
	}
	s.rx.descs[0].Len = 1 << 20
	if n := s.ReceiveCopy(func(b []byte) { t.Errorf("called with %d bytes", len(b)) }); n != 1 {
		t.Fatalf("consumed %d", n)
	}
	if k.inFill()+len(s.free) != 4 {
		t.Fatal("frame of the bad descriptor lost")
	}
}

func TestRingAtRejectsBadLayout(t *testing.T) {
	if _, _, err := ringAt(make([]byte, 100), fakeOff, 16, 8); err == nil {
		t.Error("ring larger than its mapping accepted")
	}
	off := fakeOff
	off.Consumer = 66
	if _, _, err := ringAt(fakeRingMem(16, 8), off, 16, 8); err == nil {
		t.Error("misaligned index accepted")
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Ifindex: 1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.NumFrames != 4096 || c.FrameSize != 2048 || c.RxSize != 2048 || c.FillSize != 2048 {
		t.Errorf("defaults %+v", c)
	}
	for _, bad := range []Config{
		{Ifindex: 1, FrameSize: 1024}, {Ifindex: 1, FrameSize: 1 << 20}, {Ifindex: 1, FillSize: 3},
		{Ifindex: 1, NumFrames: -1}, {Ifindex: -1},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// The cost of the receive loop itself: the fake kernel's deliveries are
// in the timing too, as a copy mode kernel's memcpy would be.
func BenchmarkReceiveCopy(b *testing.B) {
	const batch = 64
	s, k := newFake(b, 4096, 2048, 2048, 0)
	frame := payload(1)
	frame = append(frame, make([]byte, 200)...)
	var sink [2048]byte
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for range min(batch, b.N-i) {
			if !k.deliver(frame) {
				b.Fatal("dropped")
			}
		}
		s.ReceiveCopy(func(d []byte) { copy(sink[:], d) })
	}
}
