package gen

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
)

// Look-alikes: UDP protocols that could pass for Jmirror on a port nobody
// configured, for testing port discovery. Each is built the way the
// protocol really sends it, and adversarially where the protocol allows it
// (source port equal to the destination port, no UDP checksum), so that
// only the deeper evidence can tell them apart.

// Lookalike names a protocol LookalikeFrames can build.
type Lookalike string

const (
	LookGTPU   Lookalike = "gtp-u"       // 2152: 8-byte header, then an IP packet
	LookVXLAN  Lookalike = "vxlan"       // 4789: 8-byte header, then Ethernet
	LookGeneve Lookalike = "geneve"      // 6081
	LookDNS    Lookalike = "dns"         // 53
	LookNTP    Lookalike = "ntp"         // 123
	LookQUIC   Lookalike = "quic"        // 443
	LookSyslog Lookalike = "syslog"      // 514
	LookNATT   Lookalike = "ipsec-nat-t" // 4500: ESP in UDP, and keepalives
	LookRTP    Lookalike = "rtp"         // an even port
)

// Lookalikes lists every look-alike with the port it really uses.
var Lookalikes = map[Lookalike]uint16{
	LookGTPU: 2152, LookVXLAN: 4789, LookGeneve: 6081, LookDNS: 53, LookNTP: 123,
	LookQUIC: 443, LookSyslog: 514, LookNATT: 4500, LookRTP: 16384,
}

// LookalikeFrames returns n frames of protocol kind to port (0: its real
// port) from src to dst, over IPv4 or IPv6 by address family. The same
// seed gives the same frames.
func LookalikeFrames(kind Lookalike, port uint16, src, dst netip.Addr, n int, seed uint64) ([][]byte, error) {
	if port == 0 {
		port = Lookalikes[kind]
	}
	r := rand.New(rand.NewPCG(seed, uint64(port)))
	out := make([][]byte, 0, n)
	for i := range n {
		var payload []byte
		sport := port // the adversarial choice
		switch kind {
		case LookGTPU:
			// A G-PDU carrying a real IPv4 packet: the look-alike closest
			// to Jmirror (same header size, same length rule).
			inner := InnerIPv4ICMPEcho(netip.AddrFrom4([4]byte{10, 0, 0, 1}), netip.AddrFrom4([4]byte{10, 0, 0, 2}), 1, uint16(i), r.IntN(200))
			payload = make([]byte, 8, 8+len(inner))
			payload[0] = 0x30 // version 1, PT 1
			payload[1] = 0xff // G-PDU
			binary.BigEndian.PutUint16(payload[2:], uint16(len(inner)))
			binary.BigEndian.PutUint32(payload[4:], r.Uint32()) // TEID
			payload = append(payload, inner...)
		case LookVXLAN, LookGeneve:
			inner := ethernet(nil, nil, nil, EtherTypeIPv4, InnerIPv4ICMPEcho(netip.AddrFrom4([4]byte{10, 1, 0, 1}), netip.AddrFrom4([4]byte{10, 1, 0, 2}), 2, uint16(i), r.IntN(200)))
			payload = make([]byte, 8, 8+len(inner))
			if kind == LookVXLAN {
				payload[0] = 0x08 // I flag
				binary.BigEndian.PutUint32(payload[4:], r.Uint32()<<8)
			} else {
				binary.BigEndian.PutUint16(payload[2:], 0x6558) // Ethernet
				binary.BigEndian.PutUint32(payload[4:], r.Uint32()<<8)
			}
			payload = append(payload, inner...)
			sport = uint16(49152 + r.IntN(16384)) // flow entropy, as senders do
		case LookDNS:
			payload = dnsQuery(uint16(r.Uint32()), fmt.Sprintf("host%d.example.org", i))
			if i%2 == 1 {
				payload[2] |= 0x80 // a response
			}
		case LookNTP:
			payload = make([]byte, 48)
			payload[0] = 0x23 // v4, client
			for j := 4; j < 48; j++ {
				payload[j] = byte(r.Uint32())
			}
		case LookQUIC:
			payload = make([]byte, 1200)
			payload[0] = 0xc3 // long header, Initial
			binary.BigEndian.PutUint32(payload[1:], 1)
			for j := 5; j < len(payload); j++ {
				payload[j] = byte(r.Uint32())
			}
			sport = uint16(49152 + r.IntN(16384))
		case LookSyslog:
			payload = fmt.Appendf(nil, "<34>Oct 11 22:14:15 host su: 'su root' failed for user%d on /dev/pts/%d", i, i%8)
		case LookNATT:
			if i%10 == 9 {
				payload = []byte{0xff} // NAT keepalive
				break
			}
			// ESP: SPI, sequence, then ciphertext: random bytes, which is
			// what makes it hard.
			payload = make([]byte, 8+16+r.IntN(1200))
			binary.BigEndian.PutUint32(payload[0:], 0x1000+r.Uint32()%4096)
			binary.BigEndian.PutUint32(payload[4:], uint32(i+1))
			for j := 8; j < len(payload); j++ {
				payload[j] = byte(r.Uint32())
			}
		case LookRTP:
			payload = make([]byte, 12+160)
			payload[0] = 0x80 // v2
			payload[1] = 0    // PCMU
			binary.BigEndian.PutUint16(payload[2:], uint16(i))
			binary.BigEndian.PutUint32(payload[4:], uint32(i*160))
			binary.BigEndian.PutUint32(payload[8:], 0x11223344)
			for j := 12; j < len(payload); j++ {
				payload[j] = byte(r.Uint32())
			}
		default:
			return nil, fmt.Errorf("gen: unknown look-alike %q", kind)
		}
		seg := udpSegment(src, dst, sport, port, payload)
		if src.Is4() {
			// No checksum: allowed over IPv4, as routers send Jmirror.
			seg[6], seg[7] = 0, 0
		}
		et, p := ipPacket(src, dst, protoUDP, seg)
		out = append(out, ethernet(nil, nil, nil, et, p))
	}
	return out, nil
}
