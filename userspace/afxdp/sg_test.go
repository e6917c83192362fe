package afxdp

import (
	"bytes"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// deliverChain receives data as the kernel does a multi-buffer frame on an
// XDP_USE_SG socket: in pieces of at most piece bytes, one fill-ring frame
// each, XDP_PKT_CONTD on all but the last, with meta in front of the
// first. It reports false if the rings cannot take the whole chain.
func (k *fakeKernel) deliverChain(meta, data []byte, piece int) bool {
	f, x := k.s.fill, k.s.rx
	n := (len(data) + piece - 1) / piece
	if int(atomic.LoadUint32(f.producer)-k.fillCons) < n || int(x.size-(k.rxProd-atomic.LoadUint32(x.consumer))) < n {
		return false
	}
	for i := 0; i < n; i++ {
		addr := f.descs[k.fillCons&f.mask] + k.headroom
		k.fillCons++
		if i == 0 {
			copy(k.s.umem[addr-uint64(len(meta)):], meta)
		}
		p := data[i*piece : min(len(data), (i+1)*piece)]
		copy(k.s.umem[addr:], p)
		d := unix.XDPDesc{Addr: addr, Len: uint32(len(p))}
		if i < n-1 {
			d.Options = unix.XDP_PKT_CONTD
		}
		x.descs[k.rxProd&x.mask] = d
		k.rxProd++
	}
	atomic.StoreUint32(f.consumer, k.fillCons)
	atomic.StoreUint32(x.producer, k.rxProd)
	return true
}

// newSGFake is a multi-buffer socket over fake rings (256 frames of 2 KiB,
// MaxChain 5) and a 9000-byte frame for it.
func newSGFake(t *testing.T) (*Socket, *fakeKernel, []byte) {
	s, k := newFake(t, 256, 2048, 64, 0)
	s.sg, s.maxChain = true, 5
	jumbo := make([]byte, 9000)
	for i := range jumbo {
		jumbo[i] = byte(i * 7)
	}
	return s, k, jumbo
}

// Multi-buffer frames come out of ReceiveCopyMeta whole, byte for byte,
// with the first buffer's metadata, also when a chain spans two calls; a
// chain longer than MaxChain is dropped whole and counted, and what
// follows it is intact; every buffer goes back to the kernel.
func TestChainsJoined(t *testing.T) {
	s, k, jumbo := newSGFake(t)
	meta := bytes.Repeat([]byte{0xaa}, 32)
	type got struct{ meta, data []byte }
	var out []got
	recv := func() {
		s.ReceiveCopyMeta(32, func(m, d []byte) { out = append(out, got{bytes.Clone(m), bytes.Clone(d)}) })
	}
	// 9000 bytes in 2000-byte pieces are 5 buffers: joined; in 1500-byte
	// pieces 6, more than MaxChain: dropped.
	if !k.deliverChain(meta, jumbo, 2000) || !k.deliverChain(meta, jumbo, 1500) || !k.deliver(payload(1)) {
		t.Fatal("rings full")
	}
	recv()
	if len(out) != 2 || !bytes.Equal(out[0].data, jumbo) || !bytes.Equal(out[0].meta, meta) || !bytes.Equal(out[1].data, payload(1)) {
		t.Fatalf("got %d packets (first %d bytes), want the 9000-byte frame and a small one", len(out), len(out[0].data))
	}
	if c := s.Chains(); c.Joined != 1 || c.Dropped != 1 {
		t.Errorf("chains %+v: want 1 joined, 1 dropped", c)
	}
	// A chain split across two calls: the kernel publishes part of it.
	out = nil
	if !k.deliverChain(meta, jumbo, 2000) {
		t.Fatal("rings full")
	}
	x := s.rx
	atomic.StoreUint32(x.producer, k.rxProd-2) // hold back the last two
	recv()
	if len(out) != 0 {
		t.Fatalf("a packet from half a chain")
	}
	atomic.StoreUint32(x.producer, k.rxProd)
	recv()
	if len(out) != 1 || !bytes.Equal(out[0].data, jumbo) || !bytes.Equal(out[0].meta, meta) {
		t.Fatalf("chain across calls: %d packets", len(out))
	}
	if free := len(s.free) + k.inFill(); free != 256 {
		t.Errorf("%d of 256 frames back with userspace or the kernel", free)
	}
}

// The lending API joins chains as the copy path does: a multi-buffer frame
// is one Desc whose Frame is the whole frame, byte for byte, also when the
// chain spans two calls; its buffers stay out until it is released, once;
// a chain longer than MaxChain is dropped whole and counted, and what
// follows it is intact; every buffer goes back to the kernel.
func TestReceiveJoinsChains(t *testing.T) {
	s, k, jumbo := newSGFake(t)
	back := func() int { return len(s.free) + k.inFill() }
	batch := make([]Desc, 16)
	if !k.deliverChain(nil, jumbo, 2000) || !k.deliverChain(nil, jumbo, 1500) || !k.deliver(payload(1)) {
		t.Fatal("rings full")
	}
	n := s.Receive(batch)
	if n != 2 || batch[0].Len != 9000 || !bytes.Equal(s.Frame(batch[0]), jumbo) || !bytes.Equal(s.Frame(batch[1]), payload(1)) {
		t.Fatalf("got %d frames (first %d bytes), want the 9000-byte frame and a small one", n, batch[0].Len)
	}
	if c := s.Chains(); c.Joined != 1 || c.Dropped != 1 {
		t.Errorf("chains %+v: want 1 joined, 1 dropped", c)
	}
	// Out: the joined frame's 5 buffers and the small frame's one.
	if b := back(); b != 256-6 {
		t.Errorf("%d of 256 frames back while 6 are lent", b)
	}
	if err := s.Release(batch[:n]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(batch[0]); err == nil {
		t.Error("a second release of a joined frame was accepted")
	}
	// A chain split across two calls: the kernel publishes part of it.
	if !k.deliverChain(nil, jumbo, 2000) {
		t.Fatal("rings full")
	}
	x := s.rx
	atomic.StoreUint32(x.producer, k.rxProd-2) // hold back the last two
	if n := s.Receive(batch); n != 0 {
		t.Fatalf("%d frames from half a chain", n)
	}
	atomic.StoreUint32(x.producer, k.rxProd)
	n = s.Receive(batch)
	if n != 1 || !bytes.Equal(s.Frame(batch[0]), jumbo) {
		t.Fatalf("chain across calls: %d frames", n)
	}
	// A buffer of the chain other than its first is not the caller's to
	// release on its own.
	second := s.lentChains[batch[0].Addr].rest[0]
	if err := s.Release(Desc{Addr: second}); err == nil {
		t.Error("release of a joined frame's second buffer alone was accepted")
	}
	if err := s.Release(batch[0]); err != nil {
		t.Fatal(err)
	}
	if b := back(); b != 256 {
		t.Errorf("%d of 256 frames back with userspace or the kernel", b)
	}
	if c := s.Chains(); c.Joined != 2 || c.Dropped != 1 {
		t.Errorf("chains %+v: want 2 joined, 1 dropped", c)
	}
}
