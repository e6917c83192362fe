package jmirror

import "encoding/binary"

// Port discovery: the evidence that a UDP datagram to a port jmxdp does not
// decode is Jmirror, as the kernel program weighs it (bpf/jmxdp.c,
// jmirror_lookalike; docs/datapath.md says why each test is there). Every
// test is one real routers always pass and a look-alike protocol fails.

// PPP protocols a mirrored PPP session carries.
var knownPPP = map[uint16]bool{
	0x0021: true, // IPv4
	0x0057: true, // IPv6
	0xc021: true, // LCP
	0x8021: true, // IPCP
	0x8057: true, // IPv6CP
	0xc023: true, // PAP
	0xc223: true, // CHAP
}

const (
	gtpVersion1 = 1
	gtpTypeGPDU = 0xff
	ipv6HdrLen  = 40
	ipv4NoOpt   = 20
)

// Lookalike reports whether the datagram of a frame whose header h parsed
// (UDP, not fragmented, on a port not decoded) looks like Jmirror.
func Lookalike(frame []byte, h Header) bool {
	if !h.UDP || h.FirstFragment || h.LaterFragment {
		return false
	}
	u := frame[h.UDPOffset:]
	if binary.BigEndian.Uint16(u[0:]) != binary.BigEndian.Uint16(u[2:]) {
		return false // routers send from the port they send to
	}
	if h.Router.Is4() && binary.BigEndian.Uint16(u[6:]) != 0 {
		return false // and leave the IPv4 checksum out
	}
	if h.UDPLen < MinUDPLen+4 || h.UDPOffset+h.UDPLen > h.Limit {
		return false
	}
	innerLen := h.UDPLen - MinUDPLen
	if h.InnerOffset()+4 > len(frame) {
		return false
	}
	j := frame[h.UDPOffset+udpHeaderLen:]
	q := frame[h.InnerOffset():]
	if j[0]>>6 != 0 {
		return false // V bits
	}
	if j[0]>>5 == gtpVersion1 && j[1] == gtpTypeGPDU && int(binary.BigEndian.Uint16(j[2:])) == innerLen {
		return false // GTP-U: an 8-byte header before an IP packet too
	}
	switch {
	case q[0] == pppAddress && q[1] == pppControl:
		return knownPPP[binary.BigEndian.Uint16(q[2:])]
	case q[0]>>4 == 4:
		if h.InnerOffset()+ipv4NoOpt > len(frame) {
			return false
		}
		return ipv4HeaderSound(q[:ipv4NoOpt], innerLen)
	case q[0]>>4 == 6:
		if h.InnerOffset()+8 > len(frame) {
			return false
		}
		return int(binary.BigEndian.Uint16(q[4:]))+ipv6HdrLen == innerLen && q[7] != 0
	}
	return false
}

// ipv4HeaderSound: an IPv4 header without options, of total length n,
// whose checksum holds.
func ipv4HeaderSound(q []byte, n int) bool {
	if q[0] != 0x45 || int(binary.BigEndian.Uint16(q[2:])) != n {
		return false
	}
	var sum uint32
	for i := 0; i < ipv4NoOpt; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(q[i:]))
	}
	sum = sum&0xffff + sum>>16
	sum = sum&0xffff + sum>>16
	return sum == 0xffff
}
