package forward

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/jmxdp/jmxdp/maps"
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

	sent, failed, fragments atomic.Uint64
}

type sockKey struct {
	v6   bool
	port uint16
}

// SenderStats count what the Sender did.
type SenderStats struct {
	Sent   uint64 // datagrams sent to a target
	Failed uint64 // datagrams that could not be sent (no target, no route, a socket error)
	// Fragments: fragments of forwarded datagrams handed to userspace,
	// not sent: reassembling them here is not implemented.
	Fragments uint64
}

// NewSender sends to the targets t names.
func NewSender(t Targets) *Sender {
	return &Sender{targets: t, conns: make(map[sockKey]*net.UDPConn)}
}

// Stats reads the counters.
func (s *Sender) Stats() SenderStats {
	return SenderStats{Sent: s.sent.Load(), Failed: s.failed.Load(), Fragments: s.fragments.Load()}
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

// CountFragment counts a fragment it was handed and did not send.
func (s *Sender) CountFragment() { s.fragments.Add(1) }

// Send sends the UDP payload of a whole Jmirror datagram of (mid, sid),
// the Jmirror header at jmOff of frame, its mirrored packet innerLen bytes
// after the header: what the program would have put after fresh headers.
func (s *Sender) Send(frame []byte, mid, sid uint32, jmOff, innerLen int) error {
	err := s.send(frame, mid, sid, jmOff, innerLen)
	if err != nil {
		s.failed.Add(1)
		return err
	}
	s.sent.Add(1)
	return nil
}

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
