package afxdp

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Poll waits up to timeout for frames on the RX ring and reports whether
// there are some. It returns at once when frames are already there. A
// negative timeout waits indefinitely; a signal ends the wait early with
// (false, nil).
func (s *Socket) Poll(timeout time.Duration) (bool, error) {
	if s.closed {
		return false, ErrClosed
	}
	if s.rx.avail(1) > 0 {
		return true, nil
	}
	if err := s.wakeup(); err != nil {
		return false, err
	}
	ms := -1
	if timeout >= 0 {
		// Round up so that a short timeout still waits.
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	s.pfd[0].Revents = 0
	n, err := unix.Poll(s.pfd[:], ms)
	if errors.Is(err, unix.EINTR) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("afxdp: poll: %w", err)
	}
	if s.pfd[0].Revents&(unix.POLLERR|unix.POLLNVAL) != 0 {
		return false, fmt.Errorf("afxdp: poll: socket error (revents %#x)", s.pfd[0].Revents)
	}
	return n > 0 && s.pfd[0].Revents&unix.POLLIN != 0, nil
}

// wakeup kicks the kernel to look at the fill ring again, but only when it
// asked for it (XDP_USE_NEED_WAKEUP): the syscall is what need-wakeup
// saves in the common case. In copy mode the kernel never needs it.
func (s *Socket) wakeup() error {
	if !s.fill.needsWakeup() {
		return nil
	}
	_, _, err := unix.Recvfrom(s.fd, nil, unix.MSG_DONTWAIT)
	switch {
	case err == nil, errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EBUSY),
		errors.Is(err, unix.ENOBUFS), errors.Is(err, unix.ENETDOWN), errors.Is(err, unix.EINTR):
		// Transient: the next Poll kicks again (libxdp ignores these too).
		return nil
	}
	return fmt.Errorf("afxdp: wake up kernel: %w", err)
}

// frame returns the bytes of d, or nil if the kernel handed out a
// descriptor outside the UMEM (it should not; the check keeps a bad
// descriptor from crashing the process).
func (s *Socket) frame(d unix.XDPDesc) []byte {
	end := d.Addr + uint64(d.Len)
	if end < d.Addr || end > uint64(len(s.umem)) {
		return nil
	}
	return s.umem[d.Addr:end:end]
}

// ReceiveCopy calls fn for every frame on the RX ring, at most one ring's
// worth (frames arriving meanwhile included), and returns how many there were. data is valid only during fn:
// fn copies what it keeps, so that the frames go straight back to the
// fill ring, in one batch, and the ring never waits on the caller's I/O.
func (s *Socket) ReceiveCopy(fn func(data []byte)) int {
	return s.ReceiveCopyMeta(0, func(_, data []byte) { fn(data) })
}

// ReceiveCopyMeta is ReceiveCopy that also hands fn the metaLen bytes in
// front of each frame, where an XDP program's bpf_xdp_adjust_meta data
// lands (copy and zero-copy mode alike). meta is nil when the frame sits
// too close to its chunk's start to have them. The bytes are zeroed once fn
// returns, so that a frame the program wrote no metadata for never shows a
// previous frame's.
func (s *Socket) ReceiveCopyMeta(metaLen int, fn func(meta, data []byte)) int {
	if s.closed {
		return 0
	}
	// Frames go back to the fill ring every copyChunk frames, not after the
	// whole ring: a burst arriving while a full ring is being copied would
	// otherwise find the fill ring empty and be dropped.
	var total uint32
	for total < s.rx.size {
		n := s.rx.avail(min(copyChunk, s.rx.size-total))
		if n == 0 {
			break
		}
		for i := range n {
			d := s.rx.at(i)
			if s.chainN > 0 || (s.sg && d.Options&unix.XDP_PKT_CONTD != 0) {
				s.chained(d, metaLen, fn)
				s.reclaim(d.Addr)
				continue
			}
			if b := s.frame(d); b != nil {
				fn(s.metaOf(d, metaLen), b)
				clear(s.metaOf(d, metaLen))
			}
			s.reclaim(d.Addr)
		}
		s.rx.release(n)
		s.refill()
		total += n
	}
	return int(total)
}

// metaOf is the metaLen bytes in front of d's frame, nil if its chunk
// has no room for them.
func (s *Socket) metaOf(d unix.XDPDesc, metaLen int) []byte {
	if base := d.Addr &^ s.frameMask; metaLen > 0 && d.Addr-base >= uint64(metaLen) && d.Addr <= uint64(len(s.umem)) {
		return s.umem[d.Addr-uint64(metaLen) : d.Addr : d.Addr]
	}
	return nil
}

// chained adds d to the multi-buffer chain being joined (XDP_PKT_CONTD set
// on every descriptor but a frame's last) and hands the packet to fn at
// its last descriptor. The metadata is the first buffer's, where the
// program wrote it. A chain longer than maxChain, or with a descriptor
// outside the UMEM, is dropped whole and counted. The chain may span
// calls: its state is the socket's.
func (s *Socket) chained(d unix.XDPDesc, metaLen int, fn func(meta, data []byte)) {
	if s.chainN == 0 {
		s.chainBuf, s.chainMeta, s.chainOver = s.chainBuf[:0], s.chainMeta[:0], false
		if m := s.metaOf(d, metaLen); m != nil {
			s.chainMeta = append(s.chainMeta, m...)
			clear(m)
		}
	}
	s.chainN++
	b := s.frame(d)
	if b == nil || s.chainN > s.maxChain {
		s.chainOver = true
	}
	if !s.chainOver {
		s.chainBuf = append(s.chainBuf, b...)
	}
	if d.Options&unix.XDP_PKT_CONTD != 0 {
		return
	}
	if s.chainOver {
		s.chainStats.Dropped++
	} else {
		s.chainStats.Joined++
		var meta []byte
		if len(s.chainMeta) == metaLen && metaLen > 0 {
			meta = s.chainMeta
		}
		fn(meta, s.chainBuf)
	}
	s.chainN = 0
}

// copyChunk is how many frames ReceiveCopyMeta copies between two refills
// of the fill ring.
const copyChunk = 64

// Receive moves up to len(batch) received frames into batch and returns
// how many. The frames stay the caller's, readable with Frame, until they
// are given back with Release; until then the kernel cannot reuse them, so
// keep few frames out for long.
//
// A multi-buffer frame (a descriptor chain on an XDP_USE_SG socket) comes
// out as one Desc whose Frame is the whole frame, joined as the copy path
// joins it: all its buffers stay lent until it is released. A chain longer
// than MaxChain, or with a descriptor outside the UMEM, is dropped whole,
// its buffers back to the kernel, and counted (Chains). A chain may span
// calls.
func (s *Socket) Receive(batch []Desc) int {
	if s.closed {
		return 0
	}
	// At most one descriptor per batch entry: a frame takes at least one.
	n := s.rx.avail(uint32(min(len(batch), int(s.rx.size))))
	k := 0
	for i := range n {
		d := s.rx.at(i)
		if len(s.lendChain) > 0 || s.lendOver || (s.sg && d.Options&unix.XDP_PKT_CONTD != 0) {
			if s.lendChained(d, &batch[k]) {
				k++
			}
			continue
		}
		if s.frame(d) == nil {
			s.reclaim(d.Addr)
			continue
		}
		s.lent[d.Addr>>s.frameShift] = true
		batch[k] = Desc{Addr: d.Addr, Len: d.Len}
		k++
	}
	// The descriptors are copied out: the ring slots can go back now,
	// independently of the frames.
	s.rx.release(n)
	s.refill()
	return k
}

// lendChained adds d to the chain being received and, at its last
// descriptor, lends the joined frame in *out (true). The bound and the
// counters are those of chained.
func (s *Socket) lendChained(d unix.XDPDesc, out *Desc) bool {
	if s.frame(d) == nil || len(s.lendChain) >= s.maxChain {
		s.lendOver = true
	}
	if s.lendOver {
		// Its buffers go back as they come: nothing of it is kept.
		for _, c := range s.lendChain {
			s.reclaim(c.Addr)
		}
		s.lendChain = s.lendChain[:0]
		s.reclaim(d.Addr)
	} else {
		s.lendChain = append(s.lendChain, d)
	}
	if d.Options&unix.XDP_PKT_CONTD != 0 {
		return false
	}
	if s.lendOver {
		s.lendOver = false
		s.chainStats.Dropped++
		return false
	}
	first := s.lendChain[0]
	var total int
	for _, c := range s.lendChain {
		total += int(c.Len)
	}
	// Its own memory: the frame stays valid however the socket's other
	// buffers are reused, until it is released.
	lc := &lentChain{rest: make([]uint64, 0, len(s.lendChain)-1), data: make([]byte, 0, total)}
	for i, c := range s.lendChain {
		lc.data = append(lc.data, s.frame(c)...)
		if i > 0 {
			lc.rest = append(lc.rest, c.Addr)
		}
	}
	s.lendChain = s.lendChain[:0]
	s.lent[first.Addr>>s.frameShift] = true
	s.lentChains[first.Addr] = lc
	s.chainStats.Joined++
	*out = Desc{Addr: first.Addr, Len: uint32(len(lc.data))}
	return true
}

// Frame returns the bytes of a frame Receive returned (a multi-buffer
// frame's joined). They are valid until the frame is released.
func (s *Socket) Frame(d Desc) []byte {
	if s.closed {
		return nil
	}
	if len(s.lentChains) > 0 && d.Addr < uint64(len(s.umem)) && s.lent[d.Addr>>s.frameShift] {
		if lc := s.lentChains[d.Addr]; lc != nil {
			if int(d.Len) > len(lc.data) {
				return nil
			}
			return lc.data[:d.Len:d.Len]
		}
	}
	return s.frame(unix.XDPDesc{Addr: d.Addr, Len: d.Len})
}

// Release gives frames from Receive back to the kernel, a multi-buffer
// frame's every buffer. A frame that is not out (never received, or
// released already) is an error and is left alone: feeding it to the fill
// ring twice would let the kernel write into a frame that is in use.
func (s *Socket) Release(descs ...Desc) error {
	if s.closed {
		return ErrClosed
	}
	var bad int
	for _, d := range descs {
		i := d.Addr >> s.frameShift
		if d.Addr >= uint64(len(s.umem)) || !s.lent[i] {
			bad++
			continue
		}
		s.lent[i] = false
		s.reclaim(d.Addr)
		if lc := s.lentChains[d.Addr]; lc != nil {
			for _, a := range lc.rest {
				s.reclaim(a)
			}
			delete(s.lentChains, d.Addr)
		}
	}
	s.refill()
	if bad > 0 {
		return fmt.Errorf("afxdp: release: %d of %d frames were not received or were released already", bad, len(descs))
	}
	return nil
}

// reclaim puts a frame back on the free list by its chunk's base address:
// in copy mode the kernel hands out addresses offset by the headroom.
func (s *Socket) reclaim(addr uint64) {
	if addr >= uint64(len(s.umem)) || len(s.free) == cap(s.free) {
		return
	}
	s.free = append(s.free, addr&^s.frameMask)
}

// refill moves as many free frames as fit into the fill ring, with one
// producer update.
func (s *Socket) refill() {
	if len(s.free) == 0 {
		return
	}
	n := min(uint32(len(s.free)), s.fill.free(uint32(len(s.free))))
	if n == 0 {
		return
	}
	rest := len(s.free) - int(n)
	s.fill.produce(s.free[rest:])
	s.free = s.free[:rest]
}
