package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmxdp/jmxdp/maps"
	"github.com/jmxdp/jmxdp/userspace/reasm"
	"github.com/jmxdp/jmxdp/userspace/vocab"
	"golang.org/x/sys/unix"
)

// Targets finds a stream's forward target; *maps.Maps is one.
type Targets interface {
	ForwardTarget(mid, sid uint32) (netip.AddrPort, bool, error)
}

// Sender sends, from UDP sockets, the frames the program handed to
// userspace instead of forwarding them (a missing neighbour, no route, too
// big for the egress MTU: docs/forward.md): the kernel then routes,
// resolves and fragments. One socket per (family, port), bound to the
// target port, so that the source port is the target port as it is for
// frames the program sends.
type Sender struct {
	targets Targets

	mu    sync.Mutex
	conns map[sockKey]*net.UDPConn

	// reasmMu guards reasm: fragments come from every queue's ring loop.
	reasmMu sync.Mutex
	reasm   *reasm.Reassembler

	sent, failed, fragments, reassembled atomic.Uint64

	// streamsMu guards streams: every queue's ring loop sends.
	streamsMu sync.Mutex
	streams   map[vocab.StreamKey]*StreamCounts
}

// Handed is what the program's metadata says of a whole datagram it
// handed to userspace: its outer IP header at L3Off, its Jmirror header
// at JMOff, its mirrored packet's length, its stream and why.
type Handed struct {
	L3Off, JMOff, InnerLen int
	MID, SID               uint32
	Reason                 vocab.FwdReason
}

// StreamCounts are what the Sender did for one stream: datagrams sent
// from a socket and their IP payload bytes (UDP header, Jmirror header,
// mirrored packet), and those it could not send,
// each by the reason the program handed them over (vocab.FwdReason; a
// reassembled datagram counts under its last fragment's reason).
type StreamCounts struct {
	Sent, Bytes, Failed [vocab.NumFwdReasons]uint64
}

type sockKey struct {
	v6   bool
	port uint16
}

// SenderStats count what the Sender did.
type SenderStats struct {
	Sent   uint64 // datagrams sent to a target
	Failed uint64 // datagrams that could not be sent (no target, no route, a socket error)
	// Fragments: fragments of forwarded datagrams handed to userspace
	// (the outer family changes, docs/forward.md); Reassembled: the
	// datagrams they made whole, each then sent (or failed) as one.
	Fragments, Reassembled uint64
}

// NewSender sends to the targets t names.
func NewSender(t Targets) *Sender {
	return &Sender{targets: t, conns: make(map[sockKey]*net.UDPConn), reasm: reasm.New(reasm.Config{}),
		streams: make(map[vocab.StreamKey]*StreamCounts)}
}

// Stats reads the counters.
func (s *Sender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load(), Fragments: s.fragments.Load(), Reassembled: s.reassembled.Load()}
}

// Streams copies the per-stream counts.
func (s *Sender) Streams() map[vocab.StreamKey]StreamCounts {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	out := make(map[vocab.StreamKey]StreamCounts, len(s.streams))
	for k, v := range s.streams {
		out[k] = *v
	}
	return out
}

// count adds one datagram of a stream's to its counts. An unknown reason
// counts as unsupported, as the program counts it.
func (s *Sender) count(k vocab.StreamKey, reason vocab.FwdReason, bytes int, err error) {
	if reason <= 0 || int(reason) >= vocab.NumFwdReasons {
		reason = vocab.FwdUnsupported
	}
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	c := s.streams[k]
	if c == nil {
		if len(s.streams) >= maxStreams {
			return // bounded: a stream past the bound is in the totals only
		}
		c = &StreamCounts{}
		s.streams[k] = c
	}
	if err != nil {
		c.Failed[reason]++
		return
	}
	c.Sent[reason]++
	c.Bytes[reason] += uint64(bytes)
}

// maxStreams bounds the per-stream counts (the program's jm_fwd_streams
// holds JM_MAX_FWD_STREAMS).
const maxStreams = 65536

// routerOf is the outer source address of the IP packet at l3Off of
// frame: the router, as vocab.StreamKey holds it.
func routerOf(frame []byte, l3Off int) netip.Addr {
	if l3Off < 0 || l3Off >= len(frame) {
		return netip.Addr{}
	}
	ip := frame[l3Off:]
	switch {
	case ip[0]>>4 == 4 && len(ip) >= 20:
		return netip.AddrFrom4([4]byte(ip[12:16]))
	case ip[0]>>4 == 6 && len(ip) >= 24:
		return netip.AddrFrom16([16]byte(ip[8:24]))
	}
	return netip.Addr{}
}

// Close closes the sockets.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.conns {
		c.Close()
		delete(s.conns, k)
	}
	return nil
}

// Fragment takes a fragment of a forwarded datagram, its outer IP header
// at l3Off of frame, and sends the datagram once it is whole (the kernel
// fragments it again as the target's path needs).
func (s *Sender) Fragment(frame []byte, l3Off int, reason vocab.FwdReason) error {
	s.fragments.Add(1)
	if l3Off < 0 || l3Off >= len(frame) {
		s.failed.Add(1)
		return fmt.Errorf("forward: fragment of %d bytes with its IP header at %d", len(frame), l3Off)
	}
	s.reasmMu.Lock()
	dg, complete, err := s.reasm.Add(time.Now(), frame[l3Off:])
	s.reasmMu.Unlock()
	if err != nil {
		s.failed.Add(1)
		return fmt.Errorf("forward: reassemble: %w", err)
	}
	if !complete {
		return nil
	}
	s.reassembled.Add(1)
	udp, ok := udpOffset(dg)
	if !ok {
		s.failed.Add(1)
		return errors.New("forward: reassembled datagram without a UDP header")
	}
	const udpLen, jmLen = 8, 8
	if udp+udpLen+jmLen > len(dg) {
		s.failed.Add(1)
		return errors.New("forward: reassembled datagram too short for Jmirror")
	}
	w0 := binary.BigEndian.Uint32(dg[udp+udpLen:])
	mid, sid := w0&vocab.MaxMID, binary.BigEndian.Uint32(dg[udp+udpLen+4:])
	ulen := int(binary.BigEndian.Uint16(dg[udp+4:]))
	if ulen < udpLen+jmLen || udp+ulen > len(dg) {
		s.failed.Add(1)
		return fmt.Errorf("forward mid %d: UDP length %d does not fit the reassembled datagram", mid, ulen)
	}
	return s.Send(dg, Handed{L3Off: 0, JMOff: udp + udpLen, InnerLen: ulen - udpLen - jmLen, MID: mid, SID: sid, Reason: reason})
}

// udpOffset is where the UDP header of a reassembled IP datagram starts:
// after the IPv4 header, or after the IPv6 fixed header and the
// extension headers that stayed in the unfragmentable part (bounded).
func udpOffset(dg []byte) (int, bool) {
	const ipv6Len, maxExt = 40, 8
	if len(dg) < 20 {
		return 0, false
	}
	if dg[0]>>4 == 4 {
		return int(dg[0]&0x0f) * 4, dg[9] == unix.IPPROTO_UDP
	}
	if len(dg) < ipv6Len {
		return 0, false
	}
	next, off := dg[6], ipv6Len
	for range maxExt {
		switch next {
		case unix.IPPROTO_UDP:
			return off, true
		case unix.IPPROTO_HOPOPTS, unix.IPPROTO_ROUTING, unix.IPPROTO_DSTOPTS:
			if off+2 > len(dg) {
				return 0, false
			}
			next, off = dg[off], off+(int(dg[off+1])+1)*8
		default:
			return 0, false
		}
	}
	return 0, false
}

// Send sends the UDP payload of a whole Jmirror datagram (h says where
// its parts are): what the program would have put after fresh headers.
func (s *Sender) Send(frame []byte, h Handed) error {
	err := s.send(frame, h.MID, h.SID, h.JMOff, h.InnerLen)
	s.count(vocab.StreamKey{Router: routerOf(frame, h.L3Off), MID: h.MID, SID: h.SID}, h.Reason, datagramHeaders+h.InnerLen, err)
	if err != nil {
		s.failed.Add(1)
		return err
	}
	s.sent.Add(1)
	return nil
}

// datagramHeaders are the UDP and Jmirror headers: a datagram's bytes
// counted are the IP payload, as the program counts its own.
const datagramHeaders = 8 + 8

func (s *Sender) send(frame []byte, mid, sid uint32, jmOff, innerLen int) error {
	const udpLen, jmLen = 8, 8
	end := jmOff + jmLen + innerLen
	if jmOff < udpLen || end > len(frame) {
		return fmt.Errorf("forward mid %d sid %d: frame of %d bytes does not hold the datagram", mid, sid, len(frame))
	}
	target, ok, err := s.targets.ForwardTarget(mid, sid)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("forward mid %d sid %d: no forward rule (any more)", mid, sid)
	}
	port := target.Port()
	if port == 0 {
		port = binary.BigEndian.Uint16(frame[jmOff-udpLen+2:]) // the stream's own
	}
	c, err := s.conn(target.Addr().Is6(), port)
	if err != nil {
		return err
	}
	if _, err := c.WriteToUDPAddrPort(frame[jmOff:end], netip.AddrPortFrom(target.Addr(), port)); err != nil {
		return fmt.Errorf("forward mid %d sid %d to %s: %w", mid, sid, target.Addr(), err)
	}
	return nil
}

// Open opens the socket for a family and port ahead of the first frame,
// in the caller's network namespace (sockets opened later are opened in
// the namespace of whichever thread sends).
func (s *Sender) Open(v6 bool, port uint16) error {
	_, err := s.conn(v6, port)
	return err
}

func (s *Sender) conn(v6 bool, port uint16) (*net.UDPConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := sockKey{v6, port}
	if c := s.conns[k]; c != nil {
		return c, nil
	}
	network, any := "udp4", netip.IPv4Unspecified()
	if v6 {
		network, any = "udp6", netip.IPv6Unspecified()
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(any, port)))
	if err != nil {
		return nil, fmt.Errorf("forward: socket on port %d: %w", port, err)
	}
	s.conns[k] = c
	return c, nil
}

var _ Targets = (*maps.Maps)(nil)
