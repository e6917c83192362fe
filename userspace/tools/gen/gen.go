// Package gen crafts Ethernet frames carrying Juniper Jmirror traffic, and
// traffic that only resembles it, for tests, the demo and traffic generation.
//
// Everything is built by hand from bytes rather than through a packet
// library so that malformed variants (bad lengths, odd options, extra VLAN
// tags) are as easy to make as valid ones.
package gen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/jmxdp/jmxdp/userspace/jmirror"
)

// Wire constants shared by the builders.
const (
	// DefaultPort is Wireshark's default Jmirror UDP port.
	DefaultPort = jmirror.DefaultPort
	// DefaultTTL is what Juniper routers put in the outer IPv4 header.
	DefaultTTL = 255
	// HeaderLen is the length of the Jmirror header (V|mid, sid).
	HeaderLen = 8
	// MaxMID is the largest intercept id: it has 30 bits, V takes the other 2.
	MaxMID = 1<<30 - 1
	// MinFrameLen is the Ethernet minimum frame length without FCS; shorter
	// frames are zero-padded on the wire.
	MinFrameLen = 60

	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
	TPID8021Q     = 0x8100
	TPID8021AD    = 0x88a8

	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	maxIPv4Opts   = 40
	protoICMP     = 1
	protoTCP      = 6
	protoUDP      = 17
	protoICMPv6   = 58
	ipv4FlagMF    = 0x2000
	ipv4FlagDF    = 0x4000
)

// DefaultSrcMAC is the source MAC used when Mirror.SrcMAC is nil. It is a
// function so callers can't modify a shared value.
func DefaultSrcMAC() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 1} }

// DefaultDstMAC is the destination MAC used when Mirror.DstMAC is nil.
func DefaultDstMAC() net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, 2} }

// VLAN is one 802.1Q / 802.1ad tag.
type VLAN struct {
	TPID uint16 // TPID8021Q or TPID8021AD; 0 means TPID8021Q
	ID   uint16 // 12-bit VLAN id
	PCP  uint8  // priority code point, 0..7
}

// Mirror describes one Jmirror datagram and how it is framed.
type Mirror struct {
	SrcMAC, DstMAC net.HardwareAddr // nil: DefaultSrcMAC / DefaultDstMAC
	VLANs          []VLAN           // outermost first; more than 2 is allowed for negative tests
	Router         netip.Addr       // outer source; its family selects outer IPv4 or IPv6
	Collector      netip.Addr       // outer destination, same family as Router
	Port           uint16           // UDP destination port; 0 means DefaultPort
	SrcPort        uint16           // UDP source port; 0 means the same as Port, as routers send
	Version        uint8            // V, the top 2 bits of the first header word, 0..3
	MID            uint32           // intercept id, 0..MaxMID
	SID            uint32           // session id
	Inner          []byte           // the mirrored packet
	IPOptions      []byte           // outer IPv4 options, zero-padded to a multiple of 4, at most 40 bytes
	IPID           uint16           // outer IPv4 identification
	TTL            uint8            // outer TTL / hop limit; 0 means DefaultTTL
	// UDPChecksum computes the UDP checksum instead of sending 0 as routers
	// do over IPv4. RFC 8200 forbids 0 over IPv6 and Linux drops such
	// datagrams, so an IPv6 router would have to set it.
	UDPChecksum bool
	// MTU, if > 0, fragments an outer packet larger than MTU into
	// fragments of at most MTU bytes: RFC 791 for IPv4, RFC 8200 for IPv6
	// (IPv6Ext are then the unfragmentable part, ahead of the fragment
	// header, as a router fragmenting its own mirror traffic sends them).
	MTU int
	// IPv6Ext are outer IPv6 extension headers between the fixed header
	// and UDP, in order.
	IPv6Ext []ExtHeader
	// IPv6FragID is the identification of outer IPv6 fragments.
	IPv6FragID uint32
}

func (m Mirror) ports() (src, dst uint16) {
	dst = m.Port
	if dst == 0 {
		dst = DefaultPort
	}
	src = m.SrcPort
	if src == 0 {
		src = dst
	}
	return src, dst
}

func (m Mirror) ttl() uint8 {
	if m.TTL == 0 {
		return DefaultTTL
	}
	return m.TTL
}

func (m Mirror) validate() error {
	if !m.Router.IsValid() || !m.Collector.IsValid() {
		return errors.New("router and collector addresses must be set")
	}
	if m.Router.Is4() != m.Collector.Is4() {
		return fmt.Errorf("router %v and collector %v are of different families", m.Router, m.Collector)
	}
	if m.Version > 3 {
		return fmt.Errorf("version %d does not fit in 2 bits", m.Version)
	}
	if m.MID > MaxMID {
		return fmt.Errorf("mid %#x does not fit in 30 bits", m.MID)
	}
	if len(m.IPOptions) > maxIPv4Opts {
		return fmt.Errorf("%d bytes of IPv4 options exceed %d", len(m.IPOptions), maxIPv4Opts)
	}
	if len(m.IPOptions) > 0 && !m.Router.Is4() {
		return errors.New("IP options are only supported on outer IPv4")
	}
	if len(m.IPv6Ext) > 0 && m.Router.Is4() {
		return errors.New("IPv6 extension headers are only supported on outer IPv6")
	}
	if _, _, err := extChain(m.IPv6Ext, protoUDP); err != nil {
		return err
	}
	return nil
}

// Header returns the 8-byte Jmirror header.
func (m Mirror) Header() [HeaderLen]byte {
	var h [HeaderLen]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(m.Version)<<30|m.MID&MaxMID)
	binary.BigEndian.PutUint32(h[4:8], m.SID)
	return h
}

// udp returns the UDP datagram: header, Jmirror header, inner packet.
func (m Mirror) udp() ([]byte, error) {
	n := udpHeaderLen + HeaderLen + len(m.Inner)
	if n > 0xffff {
		return nil, fmt.Errorf("UDP length %d exceeds 65535", n)
	}
	src, dst := m.ports()
	b := make([]byte, n)
	binary.BigEndian.PutUint16(b[0:2], src)
	binary.BigEndian.PutUint16(b[2:4], dst)
	binary.BigEndian.PutUint16(b[4:6], uint16(n))
	h := m.Header()
	copy(b[8:16], h[:])
	copy(b[16:], m.Inner)
	if m.UDPChecksum {
		binary.BigEndian.PutUint16(b[6:8], l4Checksum(m.Router, m.Collector, protoUDP, b))
	}
	return b, nil
}

// Datagram returns the unfragmented outer IP packet (no Ethernet header).
func (m Mirror) Datagram() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("jmirror datagram: %w", err)
	}
	u, err := m.udp()
	if err != nil {
		return nil, fmt.Errorf("jmirror datagram: %w", err)
	}
	if m.Router.Is4() {
		p, err := ipv4Packet(ipv4Fields{
			src: m.Router, dst: m.Collector, proto: protoUDP,
			id: m.IPID, ttl: m.ttl(), options: m.IPOptions,
		}, u)
		if err != nil {
			return nil, fmt.Errorf("jmirror datagram: %w", err)
		}
		return p, nil
	}
	chain, next, err := extChain(m.IPv6Ext, protoUDP)
	if err != nil {
		return nil, fmt.Errorf("jmirror datagram: %w", err)
	}
	p, err := ipv6Packet(m.Router, m.Collector, next, m.ttl(), append(chain, u...))
	if err != nil {
		return nil, fmt.Errorf("jmirror datagram: %w", err)
	}
	return p, nil
}

// Frames returns the Ethernet frames carrying the datagram, padded to
// MinFrameLen: one frame, or one per fragment if MTU asks for fragmentation.
func (m Mirror) Frames() ([][]byte, error) {
	if err := checkMACs(m.SrcMAC, m.DstMAC); err != nil {
		return nil, fmt.Errorf("jmirror frames: %w", err)
	}
	if err := checkVLANs(m.VLANs); err != nil {
		return nil, fmt.Errorf("jmirror frames: %w", err)
	}
	d, err := m.Datagram()
	if err != nil {
		return nil, err
	}
	et := uint16(EtherTypeIPv6)
	if m.Router.Is4() {
		et = EtherTypeIPv4
	}
	pkts := [][]byte{d}
	if m.MTU > 0 && len(d) > m.MTU {
		if m.Router.Is4() {
			pkts, err = FragmentIPv4(d, m.MTU)
		} else {
			el := extLen(m.IPv6Ext)
			pkts, err = FragmentIPv6([ipv6HeaderLen]byte(d[:ipv6HeaderLen]), m.IPv6Ext, protoUDP,
				d[ipv6HeaderLen+el:], m.MTU, m.IPv6FragID)
		}
		if err != nil {
			return nil, fmt.Errorf("jmirror frames: %w", err)
		}
	}
	frames := make([][]byte, len(pkts))
	for i, p := range pkts {
		frames[i] = ethernet(m.SrcMAC, m.DstMAC, m.VLANs, et, p)
	}
	return frames, nil
}

// Frame returns the single frame of an unfragmented datagram.
func (m Mirror) Frame() ([]byte, error) {
	f, err := m.Frames()
	if err != nil {
		return nil, err
	}
	if len(f) != 1 {
		return nil, fmt.Errorf("jmirror frame: datagram was split into %d fragments", len(f))
	}
	return f[0], nil
}

// HeaderOffset returns where the Jmirror header starts in the (first) frame,
// so tests can find it without decoding.
func (m Mirror) HeaderOffset() int {
	off := ethHeaderLen + vlanTagLen*len(m.VLANs) + udpHeaderLen
	if m.Router.Is4() {
		return off + ipv4HeaderLen + pad4(len(m.IPOptions))
	}
	off += ipv6HeaderLen + extLen(m.IPv6Ext)
	if m.MTU > 0 && ipv6HeaderLen+extLen(m.IPv6Ext)+udpHeaderLen+HeaderLen+len(m.Inner) > m.MTU {
		off += ipv6FragHdrLen
	}
	return off
}

// EthernetFrame wraps an L3 packet in Ethernet (and VLAN tags) and pads it to
// MinFrameLen. nil MACs mean the defaults.
func EthernetFrame(src, dst net.HardwareAddr, vlans []VLAN, etherType uint16, payload []byte) ([]byte, error) {
	if err := checkMACs(src, dst); err != nil {
		return nil, fmt.Errorf("ethernet frame: %w", err)
	}
	if err := checkVLANs(vlans); err != nil {
		return nil, fmt.Errorf("ethernet frame: %w", err)
	}
	return ethernet(src, dst, vlans, etherType, payload), nil
}

func checkMACs(macs ...net.HardwareAddr) error {
	for _, mac := range macs {
		if mac != nil && len(mac) != 6 {
			return fmt.Errorf("MAC address %v is not 6 bytes", mac)
		}
	}
	return nil
}

func checkVLANs(vlans []VLAN) error {
	for i, v := range vlans {
		if v.ID > 0xfff {
			return fmt.Errorf("VLAN tag %d: id %d exceeds 4095", i, v.ID)
		}
		if v.PCP > 7 {
			return fmt.Errorf("VLAN tag %d: PCP %d exceeds 7", i, v.PCP)
		}
	}
	return nil
}

// ethernet assumes validated arguments.
func ethernet(src, dst net.HardwareAddr, vlans []VLAN, etherType uint16, payload []byte) []byte {
	if src == nil {
		src = DefaultSrcMAC()
	}
	if dst == nil {
		dst = DefaultDstMAC()
	}
	n := ethHeaderLen + vlanTagLen*len(vlans) + len(payload)
	b := make([]byte, max(n, MinFrameLen))
	copy(b[0:6], dst)
	copy(b[6:12], src)
	off := 12
	for _, v := range vlans {
		tpid := v.TPID
		if tpid == 0 {
			tpid = TPID8021Q
		}
		binary.BigEndian.PutUint16(b[off:], tpid)
		binary.BigEndian.PutUint16(b[off+2:], uint16(v.PCP)<<13|v.ID)
		off += vlanTagLen
	}
	binary.BigEndian.PutUint16(b[off:], etherType)
	copy(b[off+2:], payload)
	return b
}

func pad4(n int) int { return (n + 3) &^ 3 }

type ipv4Fields struct {
	src, dst netip.Addr
	proto    uint8
	id       uint16
	ttl      uint8
	flagsOff uint16 // flags and fragment offset word
	options  []byte // padded here
}

// ipv4Packet builds an IPv4 header with a valid checksum in front of payload.
func ipv4Packet(f ipv4Fields, payload []byte) ([]byte, error) {
	if !f.src.Is4() || !f.dst.Is4() {
		return nil, fmt.Errorf("IPv4 packet needs IPv4 addresses, got %v -> %v", f.src, f.dst)
	}
	if len(f.options) > maxIPv4Opts {
		return nil, fmt.Errorf("%d bytes of IPv4 options exceed %d", len(f.options), maxIPv4Opts)
	}
	hl := ipv4HeaderLen + pad4(len(f.options))
	total := hl + len(payload)
	if total > 0xffff {
		return nil, fmt.Errorf("IPv4 total length %d exceeds 65535", total)
	}
	b := make([]byte, total)
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:4], uint16(total))
	binary.BigEndian.PutUint16(b[4:6], f.id)
	binary.BigEndian.PutUint16(b[6:8], f.flagsOff)
	b[8] = f.ttl
	b[9] = f.proto
	s, d := f.src.As4(), f.dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	copy(b[20:], f.options)
	binary.BigEndian.PutUint16(b[10:12], checksum(b[:hl], 0))
	copy(b[hl:], payload)
	return b, nil
}

// ipv6Packet builds a fixed IPv6 header (no extension headers) in front of
// payload.
func ipv6Packet(src, dst netip.Addr, next, hopLimit uint8, payload []byte) ([]byte, error) {
	if !src.Is6() || !dst.Is6() {
		return nil, fmt.Errorf("IPv6 packet needs IPv6 addresses, got %v -> %v", src, dst)
	}
	if len(payload) > 0xffff {
		return nil, fmt.Errorf("IPv6 payload length %d exceeds 65535", len(payload))
	}
	b := make([]byte, ipv6HeaderLen+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(len(payload)))
	b[6] = next
	b[7] = hopLimit
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	copy(b[40:], payload)
	return b, nil
}

// FragmentIPv4 splits an IPv4 packet into fragments of at most mtu bytes as
// RFC 791 describes: payload offsets are multiples of 8, MF is set on all but
// the last fragment (and kept on the last if the packet was itself a
// non-last fragment), the first fragment carries all options and later ones
// only options whose copied flag is set. DF is ignored: callers asked for
// fragments.
func FragmentIPv4(pkt []byte, mtu int) ([][]byte, error) {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return nil, errors.New("fragment: not an IPv4 packet")
	}
	hl := int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:4]))
	if hl < ipv4HeaderLen || total < hl || total > len(pkt) {
		return nil, fmt.Errorf("fragment: bad IHL %d or total length %d for %d bytes", hl, total, len(pkt))
	}
	if total <= mtu {
		return [][]byte{append([]byte(nil), pkt[:total]...)}, nil
	}
	opts := pkt[ipv4HeaderLen:hl]
	later := copiedOptions(opts)
	laterHL := ipv4HeaderLen + pad4(len(later))
	if mtu-hl < 8 || mtu-laterHL < 8 {
		return nil, fmt.Errorf("fragment: MTU %d leaves no room for 8 bytes of data", mtu)
	}
	word := binary.BigEndian.Uint16(pkt[6:8])
	baseOff := int(word&0x1fff) * 8
	origMF := word&ipv4FlagMF != 0
	data := pkt[hl:total]
	var frags [][]byte
	for off := 0; off < len(data); {
		h, o := hl, opts
		if off > 0 {
			h, o = laterHL, later
		}
		n := len(data) - off
		last := true
		if h+n > mtu {
			n = (mtu - h) &^ 7
			last = false
		}
		fo := uint16((baseOff + off) / 8)
		if !last || origMF {
			fo |= ipv4FlagMF
		}
		f := make([]byte, ipv4HeaderLen, h+n)
		copy(f, pkt[:ipv4HeaderLen])
		f = append(f, o...)
		f = f[:h] // zero padding of copied options
		f = append(f, data[off:off+n]...)
		f[0] = 0x40 | byte(h/4)
		binary.BigEndian.PutUint16(f[2:4], uint16(len(f)))
		binary.BigEndian.PutUint16(f[6:8], fo)
		f[10], f[11] = 0, 0
		binary.BigEndian.PutUint16(f[10:12], checksum(f[:h], 0))
		frags = append(frags, f)
		off += n
	}
	return frags, nil
}

// copiedOptions returns the options that RFC 791 says go into every
// fragment (copied flag, the top bit of the type, set). Parsing stops at the
// first malformed option: those bytes can't be attributed to an option.
func copiedOptions(opts []byte) []byte {
	var out []byte
	for i := 0; i < len(opts); {
		t := opts[i]
		if t == 0 { // end of option list
			break
		}
		if t == 1 { // NOP: not copied (copied flag clear)
			i++
			continue
		}
		if i+1 >= len(opts) {
			break
		}
		l := int(opts[i+1])
		if l < 2 || i+l > len(opts) {
			break
		}
		if t&0x80 != 0 {
			out = append(out, opts[i:i+l]...)
		}
		i += l
	}
	return out
}

// Checksum is the Internet checksum (RFC 1071) of b: what an ICMP echo
// or an IPv4 header carries.
func Checksum(b []byte) uint16 { return checksum(b, 0) }

// checksum is the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial (for pseudo-headers).
func checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pseudoSum is the partial sum of the TCP/UDP/ICMPv6 pseudo-header.
func pseudoSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src.AsSlice())
	add(dst.AsSlice())
	sum += uint32(proto)
	sum += uint32(length>>16) + uint32(length&0xffff)
	return sum
}

// l4Checksum computes a transport checksum; 0 is sent as 0xffff because 0
// means "no checksum" for UDP.
func l4Checksum(src, dst netip.Addr, proto uint8, seg []byte) uint16 {
	c := checksum(seg, pseudoSum(src, dst, proto, len(seg)))
	if c == 0 {
		c = 0xffff
	}
	return c
}
