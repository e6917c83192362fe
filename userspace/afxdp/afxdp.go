// Package afxdp is a small AF_XDP receive library: it opens an XDP socket
// on one RX queue of an interface, registers a UMEM for it and hands the
// frames an XDP program redirects to the socket (bpf_redirect_map into an
// XSKMAP) to the caller.
//
// Only receiving is implemented. The ring protocol follows the kernel's
// Documentation/networking/af_xdp.rst and libxdp's xsk.c: single producer,
// single consumer rings with free-running indices, published with
// store-release and read with load-acquire.
//
// On veth (copy mode only: veth has no zero-copy support) the XDP program
// must be attached to the receiving end, natively or in generic mode;
// nothing needs attaching to the sending peer (the tests show both modes
// redirecting frames a peer transmits).
//
// A Socket is not safe for concurrent use: one goroutine runs the receive
// loop. Close must not race with it either.
package afxdp

import (
	"errors"
	"fmt"
	"math/bits"
	"net"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Defaults for zero Config fields; they match libxdp's.
const (
	DefaultNumFrames = 4096
	DefaultFrameSize = 2048
	DefaultRingSize  = 2048
)

// Mode names, as Mode returns them.
const (
	ModeZeroCopy = "zerocopy"
	ModeCopy     = "copy"
)

// ErrClosed is returned by methods of a closed Socket.
var ErrClosed = errors.New("afxdp: socket closed")

// Config describes the socket to open. Zero values take the defaults.
type Config struct {
	Ifindex int    // interface to bind to
	Queue   uint32 // RX queue of that interface
	// NumFrames is the number of UMEM frames (default 4096). Frames not in
	// the fill ring wait in a free list and are fed in as the ring drains.
	NumFrames int
	// FrameSize is the UMEM chunk size (default 2048): a power of two from
	// 2048 to the page size. The kernel reserves XDP_PACKET_HEADROOM (256)
	// of it, so the largest frame received is FrameSize-256 bytes.
	FrameSize int
	// RxSize and FillSize are ring sizes in descriptors (default 2048),
	// powers of two.
	RxSize, FillSize int
	// ZeroCopy tries XDP_ZEROCOPY first and falls back to XDP_COPY when
	// the driver cannot do it (veth, most virtual devices).
	ZeroCopy bool
	// SG binds with XDP_USE_SG (multi-buffer, Linux 6.6): a frame larger
	// than a chunk arrives as a chain of descriptors, which
	// ReceiveCopyMeta joins into one packet. Without it the kernel drops
	// such frames. Falls back to a socket without SG when the kernel or
	// driver has none (SG reports which).
	SG bool
	// MaxChain bounds a chain, in descriptors (default 18: the kernel's
	// MAX_SKB_FRAGS + 1). A longer one is dropped and counted.
	MaxChain int
}

// DefaultMaxChain is MAX_SKB_FRAGS + 1, the most buffers the kernel puts
// in one multi-buffer frame.
const DefaultMaxChain = 18

func isPow2(n int) bool { return n > 0 && n&(n-1) == 0 }

func (c Config) withDefaults() (Config, error) {
	if c.NumFrames == 0 {
		c.NumFrames = DefaultNumFrames
	}
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.RxSize == 0 {
		c.RxSize = DefaultRingSize
	}
	if c.FillSize == 0 {
		c.FillSize = DefaultRingSize
	}
	if c.MaxChain == 0 {
		c.MaxChain = DefaultMaxChain
	}
	switch {
	case c.Ifindex <= 0:
		return c, fmt.Errorf("afxdp: invalid ifindex %d", c.Ifindex)
	case c.NumFrames < 0 || c.NumFrames > 1<<24:
		return c, fmt.Errorf("afxdp: NumFrames %d out of range", c.NumFrames)
	case c.MaxChain < 1 || c.MaxChain > 64:
		return c, fmt.Errorf("afxdp: MaxChain %d out of range 1..64", c.MaxChain)
	case !isPow2(c.FrameSize) || c.FrameSize < 2048 || c.FrameSize > os.Getpagesize():
		// Aligned-mode UMEM chunks must be powers of two within a page.
		return c, fmt.Errorf("afxdp: FrameSize %d is not a power of two in [2048, %d]", c.FrameSize, os.Getpagesize())
	case !isPow2(c.RxSize) || !isPow2(c.FillSize) || c.RxSize > 1<<20 || c.FillSize > 1<<20:
		return c, fmt.Errorf("afxdp: ring sizes (rx %d, fill %d) must be powers of two up to 1<<20", c.RxSize, c.FillSize)
	}
	return c, nil
}

// Desc is a received frame: its offset in the UMEM and its length. A
// multi-buffer frame (XDP_USE_SG) is one Desc too: Addr is its first
// buffer's, Len the whole frame's, and its other buffers are lent with it.
type Desc struct {
	Addr uint64
	Len  uint32
}

// Socket is an AF_XDP socket bound to one RX queue, with its own UMEM.
type Socket struct {
	fd         int
	mode       string
	frameMask  uint64 // FrameSize-1: clears the offset of an address in its chunk
	frameShift uint   // log2(FrameSize): frame index of an address

	umem    []byte
	fillMem []byte
	compMem []byte
	rxMem   []byte
	fill    *fillRing
	rx      *rxRing

	// free holds base addresses of the frames userspace owns that are
	// neither in the fill ring nor lent out by Receive.
	free []uint64
	// lent marks frames handed out by Receive, so Release can refuse
	// addresses it never gave out, or gives back twice.
	lent []bool

	pfd    [1]unix.PollFd
	closed bool

	// Multi-buffer (XDP_USE_SG): the chain being joined, which may span
	// calls, and what became of chains.
	sg         bool
	maxChain   int
	chainBuf   []byte
	chainMeta  []byte
	chainN     int
	chainOver  bool
	chainStats ChainStats

	// The lending API's chains (Receive): the buffers of the chain being
	// received, which may span calls, and the joined chains lent out, by
	// their first buffer's address.
	lendChain  []unix.XDPDesc
	lendOver   bool
	lentChains map[uint64]*lentChain
}

// lentChain is a multi-buffer frame Receive lent out: its buffers after
// the first (the first is marked in lent) and the frame, joined.
type lentChain struct {
	rest []uint64
	data []byte
}

// ChainStats count multi-buffer frames (descriptor chains).
type ChainStats struct {
	Joined  uint64 // chains of more than one descriptor joined into a packet
	Dropped uint64 // chains longer than MaxChain (or with a bad descriptor): dropped whole
}

// Open creates the socket, registers its UMEM, maps its rings, binds it to
// cfg.Ifindex/cfg.Queue and puts every frame it can into the fill ring.
// The caller then registers FD in the XSKMAP of the XDP program.
//
// The UMEM is pinned by the kernel; without CAP_IPC_LOCK it counts against
// RLIMIT_MEMLOCK.
func Open(cfg Config) (*Socket, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sgs := []bool{false}
	if cfg.SG {
		// Multi-buffer first: without it jumbo frames are lost.
		sgs = []bool{true, false}
	}
	modes := []uint16{unix.XDP_COPY}
	if cfg.ZeroCopy {
		modes = []uint16{unix.XDP_ZEROCOPY, unix.XDP_COPY}
	}
	// A failed bind leaves the socket half set up: each attempt starts
	// from scratch rather than rebinding it.
	var earlier []string
	for _, sg := range sgs {
		for _, m := range modes {
			s, err := open(cfg, m, sg)
			if err == nil {
				return s, nil
			}
			if sg == sgs[len(sgs)-1] && m == modes[len(modes)-1] {
				if len(earlier) > 0 {
					return nil, fmt.Errorf("%w (%s)", err, strings.Join(earlier, "; "))
				}
				return nil, err
			}
			what := "copy"
			if m == unix.XDP_ZEROCOPY {
				what = "zero-copy"
			}
			if sg {
				what += " XDP_USE_SG"
			}
			earlier = append(earlier, fmt.Sprintf("%s attempt: %v", what, err))
		}
	}
	panic("unreachable")
}

func open(cfg Config, modeFlag uint16, sg bool) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("afxdp: create AF_XDP socket: %w", err)
	}
	s := &Socket{fd: fd}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	size := cfg.NumFrames * cfg.FrameSize
	s.umem, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("afxdp: map %d bytes of UMEM: %w", size, err)
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(unsafe.SliceData(s.umem)))),
		Len:  uint64(size),
		Size: uint32(cfg.FrameSize),
	}
	if err := setsockopt(fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("afxdp: register UMEM (%d frames of %d bytes): %w", cfg.NumFrames, cfg.FrameSize, err)
	}
	runtime.KeepAlive(&reg)
	for _, r := range []struct {
		opt  int
		n    int
		name string
	}{
		{unix.XDP_UMEM_FILL_RING, cfg.FillSize, "fill"},
		// The kernel refuses to bind without a completion ring even for
		// RX only; it stays unused, so make it minimal.
		{unix.XDP_UMEM_COMPLETION_RING, 1, "completion"},
		{unix.XDP_RX_RING, cfg.RxSize, "rx"},
	} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, r.opt, r.n); err != nil {
			return nil, fmt.Errorf("afxdp: size %s ring to %d: %w", r.name, r.n, err)
		}
	}

	var off unix.XDPMmapOffsets
	if err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("afxdp: get ring offsets: %w", err)
	}
	mapRing := func(pgoff int64, o unix.XDPRingOffset, n int, elem uintptr, name string) ([]byte, error) {
		b, err := unix.Mmap(fd, pgoff, int(o.Desc)+n*int(elem), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("afxdp: map %s ring: %w", name, err)
		}
		return b, nil
	}
	if s.fillMem, err = mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, cfg.FillSize, 8, "fill"); err != nil {
		return nil, err
	}
	if s.fill, err = newFillRing(s.fillMem, off.Fr, uint32(cfg.FillSize)); err != nil {
		return nil, fmt.Errorf("afxdp: fill ring: %w", err)
	}
	// Mapped only so that the whole UMEM setup is what libxdp's is; its
	// mapping is released on Close.
	if s.compMem, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, 1, 8, "completion"); err != nil {
		return nil, err
	}
	if s.rxMem, err = mapRing(unix.XDP_PGOFF_RX_RING, off.Rx, cfg.RxSize, unsafe.Sizeof(unix.XDPDesc{}), "rx"); err != nil {
		return nil, err
	}
	if s.rx, err = newRxRing(s.rxMem, off.Rx, uint32(cfg.RxSize)); err != nil {
		return nil, fmt.Errorf("afxdp: rx ring: %w", err)
	}

	// Fill before bind so the first frames do not meet an empty ring.
	s.initFrames(cfg.NumFrames, cfg.FrameSize)

	flags := unix.XDP_USE_NEED_WAKEUP | modeFlag
	if sg {
		flags |= unix.XDP_USE_SG
	}
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: uint32(cfg.Ifindex), QueueID: cfg.Queue}
	if err := unix.Bind(fd, sa); err != nil {
		err = bindError(cfg, modeFlag, err)
		if sg {
			err = fmt.Errorf("%w (with XDP_USE_SG)", err)
		}
		return nil, err
	}
	s.sg, s.maxChain = sg, cfg.MaxChain
	opts, err := unix.GetsockoptInt(fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return nil, fmt.Errorf("afxdp: read socket options: %w", err)
	}
	s.mode = ModeCopy
	if opts&unix.XDP_OPTIONS_ZEROCOPY != 0 {
		s.mode = ModeZeroCopy
	}
	s.pfd[0] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	return s, nil
}

// bindError explains the usual causes of a failed bind.
func bindError(cfg Config, modeFlag uint16, err error) error {
	mode := ModeCopy
	if modeFlag == unix.XDP_ZEROCOPY {
		mode = ModeZeroCopy
	}
	where := fmt.Sprintf("ifindex %d", cfg.Ifindex)
	ifc, ierr := net.InterfaceByIndex(cfg.Ifindex)
	if ierr == nil {
		where = fmt.Sprintf("%s (ifindex %d)", ifc.Name, cfg.Ifindex)
	}
	hint := ""
	switch {
	case errors.Is(err, unix.ENODEV):
		hint = ": no such interface in this network namespace"
	case errors.Is(err, unix.EINVAL) && ierr == nil:
		if n, qerr := RxQueues(ifc.Name); qerr == nil && int(cfg.Queue) >= n {
			hint = fmt.Sprintf(": the interface has %d RX queues", n)
		}
	case errors.Is(err, unix.EBUSY):
		hint = ": another socket is bound to this queue"
	case errors.Is(err, unix.EOPNOTSUPP) && modeFlag == unix.XDP_ZEROCOPY:
		hint = ": the driver does not support zero-copy"
	}
	return fmt.Errorf("afxdp: bind to %s queue %d in %s mode: %w%s", where, cfg.Queue, mode, err, hint)
}

// initFrames gives every frame to userspace, then as many as fit to the
// fill ring.
func (s *Socket) initFrames(numFrames, frameSize int) {
	s.frameMask = uint64(frameSize - 1)
	s.frameShift = uint(bits.TrailingZeros(uint(frameSize)))
	s.free = make([]uint64, 0, numFrames)
	for i := numFrames - 1; i >= 0; i-- {
		s.free = append(s.free, uint64(i)*uint64(frameSize))
	}
	s.lent = make([]bool, numFrames)
	s.lentChains = make(map[uint64]*lentChain)
	s.refill()
}

func setsockopt(fd, opt int, val unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(val), n, 0)
	if e != 0 {
		return e
	}
	return nil
}

func getsockopt(fd, opt int, val unsafe.Pointer, n uintptr) error {
	l := uint32(n)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(val), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}

// FD is the socket's descriptor, to store in an XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Mode is "zerocopy" or "copy": what the kernel actually bound.
func (s *Socket) Mode() string { return s.mode }

// SG reports whether the socket takes multi-buffer frames (XDP_USE_SG).
func (s *Socket) SG() bool { return s.sg }

// Chains returns the multi-buffer counters.
func (s *Socket) Chains() ChainStats { return s.chainStats }

// Stats are the kernel's per-socket counters (struct xdp_statistics).
type Stats struct {
	// RxDropped: frames dropped for other reasons, e.g. larger than a
	// frame, or no fill buffer in copy mode.
	RxDropped uint64
	// RxInvalidDescs: fill ring entries the kernel rejected.
	RxInvalidDescs uint64
	// RxRingFull: frames dropped because the RX ring was full: the
	// receive loop is too slow.
	RxRingFull uint64
	// RxFillRingEmptyDescs: times the kernel found the fill ring empty.
	RxFillRingEmptyDescs uint64
	TxInvalidDescs       uint64
	TxRingEmptyDescs     uint64
}

// Stats reads the socket's counters.
func (s *Socket) Stats() (Stats, error) {
	if s.closed {
		return Stats{}, ErrClosed
	}
	var st unix.XDPStatistics
	if err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&st), unsafe.Sizeof(st)); err != nil {
		return Stats{}, fmt.Errorf("afxdp: read socket statistics: %w", err)
	}
	return Stats{
		RxDropped:            st.Rx_dropped,
		RxInvalidDescs:       st.Rx_invalid_descs,
		RxRingFull:           st.Rx_ring_full,
		RxFillRingEmptyDescs: st.Rx_fill_ring_empty_descs,
		TxInvalidDescs:       st.Tx_invalid_descs,
		TxRingEmptyDescs:     st.Tx_ring_empty_descs,
	}, nil
}

// Close unmaps the rings, closes the socket (which removes it from any
// XSKMAP) and releases the UMEM. Calling it again returns nil.
func (s *Socket) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	s.fill, s.rx = nil, nil
	var errs []error
	for _, m := range []*[]byte{&s.fillMem, &s.compMem, &s.rxMem} {
		if *m != nil {
			if err := unix.Munmap(*m); err != nil {
				errs = append(errs, fmt.Errorf("afxdp: unmap ring: %w", err))
			}
			*m = nil
		}
	}
	if err := unix.Close(s.fd); err != nil {
		errs = append(errs, fmt.Errorf("afxdp: close socket: %w", err))
	}
	s.fd = -1
	// After the socket: the kernel unpins the UMEM when the socket goes.
	if s.umem != nil {
		if err := unix.Munmap(s.umem); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: unmap UMEM: %w", err))
		}
		s.umem = nil
	}
	return errors.Join(errs...)
}
