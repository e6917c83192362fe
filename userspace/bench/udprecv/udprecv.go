// Package udprecv is the conventional way to collect Jmirror traffic, kept
// as the baseline jmxdp's live capture is measured against: a UDP socket
// bound to the Jmirror port with a large receive buffer, read in recvmmsg
// batches, each datagram's Jmirror header parsed and its mirrored packet
// written to per-stream pcapng files through the same writer.Manager that
// jmxdp uses. Only the receive path differs from jmxdp's.
//
// One goroutine reads the socket into a fixed pool of batches and hands
// them to another that parses and writes, so the socket is read while the
// disk is written. When the writer falls behind and the pool runs dry, the
// reader waits and the socket's buffer takes the backlog; what overflows it
// the kernel drops and counts (Stats.KernelDrops).
package udprecv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jmxdp/jmxdp/userspace/jmirror"
	"github.com/jmxdp/jmxdp/userspace/pcapng"
	"github.com/jmxdp/jmxdp/userspace/writer"
)

// Defaults of Config.
const (
	// DefaultRcvBuf is the receive buffer asked for: what an operator
	// running a UDP collector at high rates sets.
	DefaultRcvBuf = 32 << 20
	// DefaultBatch is how many datagrams one recvmmsg call takes at most.
	DefaultBatch = 64
	// DefaultBatches is the number of batches in the pool between the
	// reader and the writer.
	DefaultBatches = 32
	// DefaultSlot is the largest datagram received whole: a jumbo frame's
	// payload. Longer ones are counted as Truncated and not written.
	DefaultSlot = 9216
)

// tickEvery is how often the writer's periodic work (flushes, rotation by
// age) runs when traffic is idle.
const tickEvery = 200 * time.Millisecond

// drainLimit bounds how long Close keeps reading what is already queued on
// the socket.
const drainLimit = 5 * time.Second

// Config configures a Receiver.
type Config struct {
	// Addr is where the socket is bound; port 0 picks a free port.
	Addr netip.AddrPort
	// RcvBuf is the socket receive buffer in bytes, forced past
	// net.core.rmem_max when the process may (CAP_NET_ADMIN); 0 means
	// DefaultRcvBuf.
	RcvBuf int
	// Batch, Batches and Slot size the read path; 0 means the defaults.
	Batch, Batches, Slot int
	// Writer configures the per-stream files.
	Writer writer.Config
}

// Stats are a Receiver's counters.
type Stats struct {
	// Datagrams read from the socket, Bytes their UDP payload bytes.
	Datagrams, Bytes uint64
	// Written: mirrored packets the writer accepted; Refused: those it
	// dropped itself (counted in its drops by reason).
	Written, Refused uint64
	// Malformed: datagrams shorter than the Jmirror header.
	Malformed uint64
	// Truncated: datagrams longer than a receive slot (not written).
	Truncated uint64
	// KernelDrops: datagrams the kernel dropped on this socket (its
	// receive buffer was full), from SO_MEMINFO, or the SO_RXQ_OVFL count
	// carried by the datagrams when that is higher.
	KernelDrops uint64
	// RcvBuf is the receive buffer as the kernel reports it (it doubles
	// what is asked, for its bookkeeping).
	RcvBuf int
}

// Receiver is a running UDP collector.
type Receiver struct {
	cfg  Config
	conn *net.UDPConn
	rc   syscall.RawConn
	addr netip.AddrPort
	sink *writer.Manager

	free, full chan *batch
	readDone   chan struct{}
	writeDone  chan struct{}
	readErr    error // set by the reader before readDone closes

	datagrams, bytes, written, refused atomic.Uint64
	malformed, truncated, ovfl         atomic.Uint64
	rcvbuf                             int

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool
	lastDrops atomic.Uint64 // SO_MEMINFO drops read at Close
}

// batch is one recvmmsg call's worth of datagrams with their addresses and
// control messages (receive time, drop count).
type batch struct {
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family
	bufs  []byte
	ctrl  []byte
	n     int
	at    time.Time // when the call returned: the time of datagrams without one
}

// ctrlLen is each datagram's control buffer: a timespec and a uint32, each
// in its aligned cmsg.
var ctrlLen = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{}))) + unix.CmsgSpace(4)

func newBatch(n, slot int) *batch {
	b := &batch{
		msgs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrInet6, n),
		bufs:  make([]byte, n*slot),
		ctrl:  make([]byte, n*ctrlLen),
	}
	for i := range n {
		b.iovs[i].Base = &b.bufs[i*slot]
		b.iovs[i].SetLen(slot)
	}
	return b
}

// reset restores what the kernel overwrote in the last call.
func (b *batch) reset() {
	for i := range b.msgs {
		h := &b.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.ctrl[i*ctrlLen]
		h.SetControllen(ctrlLen)
		h.Flags = 0
		b.msgs[i].Len = 0
	}
	b.n = 0
}

// Listen binds the socket and starts receiving.
func Listen(cfg Config) (*Receiver, error) {
	if !cfg.Addr.IsValid() {
		return nil, errors.New("udprecv: no address to listen on")
	}
	if cfg.RcvBuf < 0 || cfg.Batch < 0 || cfg.Batches < 0 || cfg.Slot < 0 {
		return nil, errors.New("udprecv: negative size in config")
	}
	if cfg.RcvBuf == 0 {
		cfg.RcvBuf = DefaultRcvBuf
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Batches == 0 {
		cfg.Batches = DefaultBatches
	}
	if cfg.Slot == 0 {
		cfg.Slot = DefaultSlot
	}
	network := "udp6"
	if cfg.Addr.Addr().Unmap().Is4() {
		network = "udp4"
		cfg.Addr = netip.AddrPortFrom(cfg.Addr.Addr().Unmap(), cfg.Addr.Port())
	}
	r := &Receiver{cfg: cfg}
	// Options go on before bind: datagrams arriving from then on find the
	// full buffer and are stamped.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = r.setOptions(int(fd)) })
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(nil, network, cfg.Addr.String())
	if err != nil {
		return nil, fmt.Errorf("udprecv: listen on %v: %w", cfg.Addr, err)
	}
	r.conn = pc.(*net.UDPConn)
	r.addr = r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
	if r.rc, err = r.conn.SyscallConn(); err != nil {
		r.conn.Close()
		return nil, fmt.Errorf("udprecv: raw socket: %w", err)
	}
	r.sink, err = writer.New(cfg.Writer)
	if err != nil {
		r.conn.Close()
		return nil, fmt.Errorf("udprecv: %w", err)
	}
	r.free = make(chan *batch, cfg.Batches)
	r.full = make(chan *batch, cfg.Batches)
	for range cfg.Batches {
		r.free <- newBatch(cfg.Batch, cfg.Slot)
	}
	r.readDone, r.writeDone = make(chan struct{}), make(chan struct{})
	go r.readLoop()
	go r.writeLoop()
	return r, nil
}

// setOptions sets the receive buffer, receive timestamps and the drop
// count on the socket.
func (r *Receiver) setOptions(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, r.cfg.RcvBuf); err != nil {
		// Without CAP_NET_ADMIN: capped at net.core.rmem_max.
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, r.cfg.RcvBuf); err != nil {
			return fmt.Errorf("SO_RCVBUF: %w", err)
		}
	}
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err == nil {
		r.rcvbuf = v
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1); err != nil {
		return fmt.Errorf("SO_RXQ_OVFL: %w", err)
	}
	return nil
}

// Addr is the address the socket is bound to (with the port picked).
func (r *Receiver) Addr() netip.AddrPort { return r.addr }

// Writer is the per-stream file manager. Its Stats are final after Close.
func (r *Receiver) Writer() *writer.Manager { return r.sink }

// Stats reads the counters. Safe for concurrent use, and after Close.
func (r *Receiver) Stats() Stats {
	s := Stats{
		Datagrams: r.datagrams.Load(), Bytes: r.bytes.Load(),
		Written: r.written.Load(), Refused: r.refused.Load(),
		Malformed: r.malformed.Load(), Truncated: r.truncated.Load(),
		RcvBuf: r.rcvbuf,
	}
	drops := r.lastDrops.Load()
	if !r.closed.Load() {
		if d, ok := r.socketDrops(); ok {
			drops = d
		}
	}
	s.KernelDrops = max(drops, r.ovfl.Load())
	return s
}

// socketDrops is the socket's drop count (SK_MEMINFO_DROPS).
func (r *Receiver) socketDrops() (uint64, bool) {
	var info [unix.SK_MEMINFO_VARS]uint32
	var errno syscall.Errno
	err := r.rc.Control(func(fd uintptr) {
		n := uint32(unsafe.Sizeof(info))
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 {
		return 0, false
	}
	return uint64(info[unix.SK_MEMINFO_DROPS]), true
}

// Close stops receiving, writes what is already queued on the socket (for
// at most a few seconds), then completes every file. Calling it again
// returns the first call's result.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		// Wakes the reader out of its wait; it then drains without waiting.
		r.conn.SetReadDeadline(time.Unix(1, 0))
		<-r.readDone
		<-r.writeDone
		if d, ok := r.socketDrops(); ok {
			r.lastDrops.Store(d)
		}
		r.closed.Store(true)
		errs := []error{r.readErr}
		if err := r.conn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("udprecv: close socket: %w", err))
		}
		if err := r.sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("udprecv: %w", err))
		}
		r.closeErr = errors.Join(errs...)
	})
	return r.closeErr
}

// readLoop fills batches from the socket until Close, then drains it.
func (r *Receiver) readLoop() {
	defer close(r.readDone)
	defer close(r.full)
	var drainEnd time.Time
	for {
		b := <-r.free
		b.reset()
		n, err := r.recv(b, !drainEnd.IsZero())
		if n > 0 {
			b.n, b.at = n, time.Now()
			r.full <- b
		} else {
			r.free <- b
		}
		switch {
		case err == nil && n > 0:
			if !drainEnd.IsZero() && time.Now().After(drainEnd) {
				return // a sender that never stops: give up draining
			}
		case err == nil, errors.Is(err, unix.EAGAIN):
			if !drainEnd.IsZero() {
				return // drained
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			drainEnd = time.Now().Add(drainLimit)
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ENOMEM), errors.Is(err, unix.ENOBUFS):
			// Transient: try again.
		default:
			r.readErr = fmt.Errorf("udprecv: recvmmsg: %w", err)
			return
		}
	}
}

// recv makes one recvmmsg call into b: through the runtime's poller,
// parked until the socket is readable, or, when draining, once and
// without waiting.
func (r *Receiver) recv(b *batch, draining bool) (int, error) {
	var n int
	var errno syscall.Errno
	call := func(fd uintptr) bool {
		r0, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN && !draining {
			return false // park until readable
		}
		n, errno = int(r0), e
		return true
	}
	var err error
	if draining {
		err = r.rc.Control(func(fd uintptr) { call(fd) })
	} else {
		err = r.rc.Read(call)
	}
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// writeLoop parses and writes every batch, and ticks the writer.
func (r *Receiver) writeLoop() {
	defer close(r.writeDone)
	tick := time.NewTicker(tickEvery)
	defer tick.Stop()
	last := time.Now()
	for {
		select {
		case b, ok := <-r.full:
			if !ok {
				return
			}
			r.writeBatch(b)
			r.free <- b
			// Under load the ticker's case may starve: tick by the clock.
			if now := time.Now(); now.Sub(last) >= tickEvery {
				r.sink.Tick()
				last = now
			}
		case <-tick.C:
			r.sink.Tick()
			last = time.Now()
		}
	}
}

func (r *Receiver) writeBatch(b *batch) {
	slot := r.cfg.Slot
	var bytes uint64
	for i := range b.n {
		m := &b.msgs[i]
		n := int(m.Len)
		bytes += uint64(n)
		ts, ovfl, hasOvfl := parseControl(b.ctrl[i*ctrlLen : i*ctrlLen+int(m.Hdr.Controllen)])
		if hasOvfl && uint64(ovfl) > r.ovfl.Load() {
			r.ovfl.Store(uint64(ovfl))
		}
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 || n > slot {
			r.truncated.Add(1)
			continue
		}
		if ts.IsZero() {
			ts = b.at
		}
		f, inner, ok := jmirror.ParseJmirror(b.bufs[i*slot : i*slot+n])
		if !ok {
			r.malformed.Add(1)
			continue
		}
		router := sockaddrAddr(&b.names[i], m.Hdr.Namelen)
		kind := pcapng.KindOf(jmirror.ClassifyInner(inner, len(inner)))
		if r.sink.Write(writer.Key{MID: f.MID, SID: f.SID}, ts, router, kind, inner) {
			r.written.Add(1)
		} else {
			r.refused.Add(1)
		}
	}
	r.datagrams.Add(uint64(b.n))
	r.bytes.Add(bytes)
}

// parseControl reads the receive time (SCM_TIMESTAMPNS) and the socket's
// drop count (SO_RXQ_OVFL) from a datagram's control messages, without
// allocating.
func parseControl(c []byte) (ts time.Time, ovfl uint32, hasOvfl bool) {
	hdr := unix.CmsgLen(0)
	for len(c) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
		l := int(h.Len)
		if l < hdr || l > len(c) {
			break
		}
		data := c[unix.CmsgSpace(0):l]
		if h.Level == unix.SOL_SOCKET {
			switch h.Type {
			case unix.SCM_TIMESTAMPNS:
				if len(data) >= int(unsafe.Sizeof(unix.Timespec{})) {
					t := (*unix.Timespec)(unsafe.Pointer(&data[0]))
					ts = time.Unix(int64(t.Sec), int64(t.Nsec))
				}
			case unix.SO_RXQ_OVFL:
				if len(data) >= 4 {
					ovfl, hasOvfl = binary.NativeEndian.Uint32(data), true
				}
			}
		}
		next := unix.CmsgSpace(l - unix.CmsgSpace(0))
		if next >= len(c) {
			break
		}
		c = c[next:]
	}
	return ts, ovfl, hasOvfl
}

// sockaddrAddr is the address in a sockaddr_in or sockaddr_in6.
func sockaddrAddr(sa *unix.RawSockaddrInet6, n uint32) netip.Addr {
	switch sa.Family {
	case unix.AF_INET:
		if n >= unix.SizeofSockaddrInet4 {
			s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
			return netip.AddrFrom4(s4.Addr)
		}
	case unix.AF_INET6:
		if n >= unix.SizeofSockaddrInet6 {
			// Not unmapped: a "udp6" socket is IPV6_V6ONLY, so this is an
			// IPv6 packet, and Linux delivers one from ::ffff:a.b.c.d,
			// which is not the IPv4 router a.b.c.d.
			return netip.AddrFrom16(sa.Addr)
		}
	}
	return netip.Addr{}
}
