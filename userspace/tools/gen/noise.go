package gen

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Noise: complete, untagged Ethernet frames (default MACs, padded) that are
// not Jmirror and must pass the XDP program untouched. The address family of
// src/dst selects IPv4 or IPv6 where both exist; mismatched or wrong families
// panic like the inner builders.

// NotJmirrorARP is an ARP who-has request for target from sender, broadcast.
func NotJmirrorARP(sender, target netip.Addr) []byte {
	return ethernet(nil, broadcastMAC(), nil, EtherTypeARP, arpRequest(sender, target))
}

func broadcastMAC() []byte { return []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} }

func arpRequest(sender, target netip.Addr) []byte {
	if !sender.Is4() || !target.Is4() {
		panic(fmt.Sprintf("gen: ARP needs IPv4 addresses, got %v, %v", sender, target))
	}
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:2], 1) // Ethernet
	binary.BigEndian.PutUint16(b[2:4], EtherTypeIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:8], 1) // request
	copy(b[8:14], DefaultSrcMAC())
	s, t := sender.As4(), target.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

// NotJmirrorTCPSyn is a TCP SYN with an MSS option, as a client opening a
// connection (e.g. SSH to the mediation host) sends.
func NotJmirrorTCPSyn(src, dst netip.Addr, sport, dport uint16) []byte {
	et, p := ipPacket(src, dst, protoTCP, tcpSyn(src, dst, sport, dport))
	return ethernet(nil, nil, nil, et, p)
}

func tcpSyn(src, dst netip.Addr, sport, dport uint16) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], uint32(sport)<<16|uint32(dport)) // any ISN
	b[12] = 6 << 4                                                      // data offset: 24 bytes
	b[13] = 0x02                                                        // SYN
	binary.BigEndian.PutUint16(b[14:16], 64240)
	b[20], b[21] = 2, 4 // MSS
	binary.BigEndian.PutUint16(b[22:24], 1460)
	binary.BigEndian.PutUint16(b[16:18], l4Checksum(src, dst, protoTCP, b))
	return b
}

// NotJmirrorUDP is a UDP datagram over IPv4 or IPv6 with a valid checksum.
func NotJmirrorUDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	et, p := ipPacket(src, dst, protoUDP, udpSegment(src, dst, sport, dport, payload))
	return ethernet(nil, nil, nil, et, p)
}

// NotJmirrorDNSQuery is a recursive DNS A query for name to port 53.
func NotJmirrorDNSQuery(src, dst netip.Addr, id uint16, name string) []byte {
	return NotJmirrorUDP(src, dst, 33000+id%1000, 53, dnsQuery(id, name))
}

func dnsQuery(id uint16, name string) []byte {
	b := make([]byte, 12, 12+len(name)+6)
	binary.BigEndian.PutUint16(b[0:2], id)
	b[2] = 0x01                           // RD
	binary.BigEndian.PutUint16(b[4:6], 1) // QDCOUNT
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(label)))
		b = append(b, label...)
	}
	return append(b, 0, 0, 1, 0, 1) // root, QTYPE A, QCLASS IN
}

// NotJmirrorICMPEcho is an ICMP (IPv4) or ICMPv6 echo request.
func NotJmirrorICMPEcho(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	if src.Is4() {
		return ethernet(nil, nil, nil, EtherTypeIPv4, InnerIPv4ICMPEcho(src, dst, id, seq, payloadLen))
	}
	return ethernet(nil, nil, nil, EtherTypeIPv6, InnerIPv6ICMPEcho(src, dst, id, seq, payloadLen))
}

// NotJmirrorIPv4Fragment is a non-first fragment (offset bytes into the
// datagram, a positive multiple of 8) of a UDP datagram: without its first
// fragment nothing shows whether it is Jmirror, so it must pass.
func NotJmirrorIPv4Fragment(src, dst netip.Addr, id uint16, offset int, more bool, payload []byte) []byte {
	if offset <= 0 || offset%8 != 0 || offset/8 > 0x1fff {
		panic(fmt.Sprintf("gen: fragment offset %d is not a positive multiple of 8 below 65536", offset))
	}
	fo := uint16(offset / 8)
	if more {
		fo |= ipv4FlagMF
	}
	p, err := ipv4Packet(ipv4Fields{src: src, dst: dst, proto: protoUDP, id: id, ttl: innerTTL, flagsOff: fo}, payload)
	if err != nil {
		panic(fmt.Sprintf("gen: fragment: %v", err))
	}
	return ethernet(nil, nil, nil, EtherTypeIPv4, p)
}

// ipPacket wraps a transport segment in IPv4 or IPv6 by address family.
func ipPacket(src, dst netip.Addr, proto uint8, seg []byte) (uint16, []byte) {
	if src.Is4() {
		return EtherTypeIPv4, mustIPv4(src, dst, proto, uint16(len(seg)), nil, seg)
	}
	return EtherTypeIPv6, mustIPv6(src, dst, proto, seg)
}
