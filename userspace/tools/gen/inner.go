package gen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Inner packet builders. They take addresses of the right family and panic
// otherwise, like netip.Addr.As4: a wrong family is a bug in the caller, and
// returning errors would clutter every table test that uses them.

// PPP protocol numbers seen in mirrored subscriber sessions.
const (
	PPPIPv4   = 0x0021
	PPPIPv6   = 0x0057
	PPPIPCP   = 0x8021
	PPPIPv6CP = 0x8057
	PPPLCP    = 0xc021
	PPPPAP    = 0xc023
	PPPCHAP   = 0xc223
)

// innerTTL is what a subscriber's host typically sends.
const innerTTL = 64

// pingPattern is the payload Windows ping sends, as in the sample captures.
const pingPattern = "abcdefghijklmnopqrstuvw"

func mustIPv4(src, dst netip.Addr, proto uint8, id uint16, options, payload []byte) []byte {
	p, err := ipv4Packet(ipv4Fields{src: src, dst: dst, proto: proto, id: id, ttl: innerTTL, options: options}, payload)
	if err != nil {
		panic(fmt.Sprintf("gen: inner IPv4: %v", err))
	}
	return p
}

func mustIPv6(src, dst netip.Addr, next uint8, payload []byte) []byte {
	p, err := ipv6Packet(src, dst, next, innerTTL, payload)
	if err != nil {
		panic(fmt.Sprintf("gen: inner IPv6: %v", err))
	}
	return p
}

func pingPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = pingPattern[i%len(pingPattern)]
	}
	return b
}

// echo builds an ICMP/ICMPv6 echo message without its checksum.
func echo(typ uint8, id, seq uint16, payloadLen int) []byte {
	b := make([]byte, 8, 8+payloadLen)
	b[0] = typ
	binary.BigEndian.PutUint16(b[4:6], id)
	binary.BigEndian.PutUint16(b[6:8], seq)
	return append(b, pingPayload(payloadLen)...)
}

func udpSegment(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, udpHeaderLen+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
	copy(b[8:], payload)
	binary.BigEndian.PutUint16(b[6:8], l4Checksum(src, dst, protoUDP, b))
	return b
}

// InnerIPv4 builds an IPv4 packet (TTL 64, valid header checksum) around an
// already built transport payload; options are zero-padded to a multiple of 4.
func InnerIPv4(src, dst netip.Addr, proto uint8, id uint16, options, payload []byte) []byte {
	return mustIPv4(src, dst, proto, id, options, payload)
}

// InnerIPv4ICMPEcho builds an IPv4 ICMP echo request with payloadLen bytes of
// ping pattern: 28+payloadLen bytes in all.
func InnerIPv4ICMPEcho(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	return ipv4Echo(8, src, dst, id, seq, payloadLen)
}

// InnerIPv4ICMPEchoReply is the echo reply counterpart of InnerIPv4ICMPEcho.
func InnerIPv4ICMPEchoReply(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	return ipv4Echo(0, src, dst, id, seq, payloadLen)
}

func ipv4Echo(typ uint8, src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	icmp := echo(typ, id, seq, payloadLen)
	binary.BigEndian.PutUint16(icmp[2:4], checksum(icmp, 0))
	return mustIPv4(src, dst, protoICMP, seq, nil, icmp)
}

// InnerIPv4UDP builds an IPv4 UDP packet with a valid UDP checksum.
func InnerIPv4UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return InnerIPv4WithOptions(src, dst, nil, sport, dport, payload)
}

// InnerIPv4WithOptions builds an IPv4 UDP packet whose header carries options
// (IHL > 5), e.g. IPv4OptRouterAlert or IPv4OptRecordRoute.
func InnerIPv4WithOptions(src, dst netip.Addr, options []byte, sport, dport uint16, payload []byte) []byte {
	return mustIPv4(src, dst, protoUDP, sport^dport, options, udpSegment(src, dst, sport, dport, payload))
}

// InnerIPv6UDP builds an IPv6 UDP packet with a valid UDP checksum.
func InnerIPv6UDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	return mustIPv6(src, dst, protoUDP, udpSegment(src, dst, sport, dport, payload))
}

// InnerIPv6ICMPEcho builds an ICMPv6 echo request: 48+payloadLen bytes.
func InnerIPv6ICMPEcho(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	return ipv6Echo(128, src, dst, id, seq, payloadLen)
}

// InnerIPv6ICMPEchoReply is the echo reply counterpart of InnerIPv6ICMPEcho.
func InnerIPv6ICMPEchoReply(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	return ipv6Echo(129, src, dst, id, seq, payloadLen)
}

func ipv6Echo(typ uint8, src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	icmp := echo(typ, id, seq, payloadLen)
	binary.BigEndian.PutUint16(icmp[2:4], l4Checksum(src, dst, protoICMPv6, icmp))
	return mustIPv6(src, dst, protoICMPv6, icmp)
}

// InnerPPP frames payload as PPP in HDLC-like framing without FCS
// (FF 03 protocol payload), the way routers mirror L2TP/PPPoE sessions.
func InnerPPP(protocol uint16, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload))
	b[0], b[1] = 0xff, 0x03
	binary.BigEndian.PutUint16(b[2:4], protocol)
	return append(b, payload...)
}

// InnerLCPEcho builds a PPP LCP Echo-Request (12 bytes, as in the l2tp sample).
func InnerLCPEcho(id uint8, magic uint32) []byte { return lcpEcho(9, id, magic) }

// InnerLCPEchoReply builds the matching PPP LCP Echo-Reply.
func InnerLCPEchoReply(id uint8, magic uint32) []byte { return lcpEcho(10, id, magic) }

func lcpEcho(code, id uint8, magic uint32) []byte {
	lcp := []byte{code, id, 0, 8, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(lcp[4:8], magic)
	return InnerPPP(PPPLCP, lcp)
}

// IPv4 options, usable as outer IPOptions or inner options.

// IPv4OptRouterAlert is RFC 2113 Router Alert; its copied flag is set, so
// fragmentation repeats it in every fragment.
func IPv4OptRouterAlert() []byte { return []byte{0x94, 4, 0, 0} }

// IPv4OptRecordRoute is an empty Record Route option with room for slots
// addresses (1..9); its copied flag is clear.
func IPv4OptRecordRoute(slots int) []byte {
	slots = min(max(slots, 1), 9)
	b := make([]byte, 3+4*slots)
	b[0], b[1], b[2] = 7, byte(len(b)), 4
	return b
}

// IPv4OptTimestamp is an empty timestamp-only option with room for slots
// timestamps (1..9); its copied flag is clear.
func IPv4OptTimestamp(slots int) []byte {
	slots = min(max(slots, 1), 9)
	b := make([]byte, 4+4*slots)
	b[0], b[1], b[2] = 0x44, byte(len(b)), 5
	return b
}

// InnerKind classifies a mirrored packet by its first bytes.
type InnerKind int

// Inner kinds, in the order of StreamCount.Inner.
const (
	KindIPv4 InnerKind = iota
	KindIPv6
	KindPPP
	KindUnknown
	KindEmpty
	NumInnerKinds
)

func (k InnerKind) String() string {
	switch k {
	case KindIPv4:
		return "ipv4"
	case KindIPv6:
		return "ipv6"
	case KindPPP:
		return "ppp"
	case KindUnknown:
		return "unknown"
	case KindEmpty:
		return "empty"
	}
	return fmt.Sprintf("InnerKind(%d)", int(k))
}

// Classify applies the project's inner-kind rules: empty, high nibble 4 or
// 6, FF 03 for PPP, anything else unknown.
func Classify(inner []byte) InnerKind {
	switch {
	case len(inner) == 0:
		return KindEmpty
	case inner[0]>>4 == 4:
		return KindIPv4
	case inner[0]>>4 == 6:
		return KindIPv6
	case len(inner) >= 2 && inner[0] == 0xff && inner[1] == 0x03:
		return KindPPP
	}
	return KindUnknown
}
