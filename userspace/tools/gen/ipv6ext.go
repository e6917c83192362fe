package gen

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Outer IPv6 extension header types (IANA protocol numbers).
const (
	ExtHopByHop = 0
	ExtRouting  = 43
	ExtFragment = 44
	ExtESP      = 50
	ExtAH       = 51
	ExtDstOpts  = 60

	ipv6FragHdrLen = 8
	maxExtLen      = 2048 // (255 + 1) * 8, the most a length byte says
)

// ExtHeader is one outer IPv6 extension header. The builder fills in the
// next-header fields and a body that any node accepts: a PadN option for
// hop-by-hop and destination options, routing type 253 (RFC 4727,
// experimental) with no segments left, an AH with a zero ICV.
type ExtHeader struct {
	Type uint8 // ExtHopByHop, ExtRouting, ExtDstOpts, ExtAH or ExtFragment
	// Len is the header's length in bytes, a multiple of 8: 8..2048 (AH
	// 16..1024); 0 is the least. A fragment header is always 8.
	Len int
	// Fragment header fields: the offset in bytes (a multiple of 8), M and
	// the identification.
	FragOffset int
	More       bool
	ID         uint32
}

func (x ExtHeader) size() (int, error) {
	switch x.Type {
	case ExtFragment:
		if x.FragOffset%8 != 0 || x.FragOffset > 0xfff8 {
			return 0, fmt.Errorf("fragment offset %d is not a multiple of 8 up to 65528", x.FragOffset)
		}
		return ipv6FragHdrLen, nil
	case ExtHopByHop, ExtRouting, ExtDstOpts:
		n := x.Len
		if n == 0 {
			n = 8
		}
		if n%8 != 0 || n < 8 || n > maxExtLen {
			return 0, fmt.Errorf("extension header %d of %d bytes: want a multiple of 8 in 8..%d", x.Type, n, maxExtLen)
		}
		return n, nil
	case ExtAH:
		n := x.Len
		if n == 0 {
			n = 16
		}
		if n%8 != 0 || n < 16 || n > 1024 {
			return 0, fmt.Errorf("AH of %d bytes: want a multiple of 8 in 16..1024", n)
		}
		return n, nil
	}
	return 0, fmt.Errorf("extension header type %d is not one jmxdp gen builds", x.Type)
}

// extChain returns the bytes of exts, the last one's next header set to
// final, and the protocol number the fixed header must name.
func extChain(exts []ExtHeader, final uint8) ([]byte, uint8, error) {
	if len(exts) == 0 {
		return nil, final, nil
	}
	var out []byte
	for i, x := range exts {
		n, err := x.size()
		if err != nil {
			return nil, 0, err
		}
		next := final
		if i+1 < len(exts) {
			next = exts[i+1].Type
		}
		b := make([]byte, n)
		b[0] = next
		switch x.Type {
		case ExtHopByHop, ExtDstOpts:
			b[1] = uint8(n/8 - 1)
			b[2], b[3] = 1, uint8(n-4) // PadN over the rest
		case ExtRouting:
			b[1] = uint8(n/8 - 1)
			b[2] = 253 // experimental routing type; segments left 0: ignored
		case ExtAH:
			b[1] = uint8(n/4 - 2)
			binary.BigEndian.PutUint32(b[4:], 0x100) // SPI
			binary.BigEndian.PutUint32(b[8:], 1)     // sequence number
		case ExtFragment:
			v := uint16(x.FragOffset)
			if x.More {
				v |= 1
			}
			binary.BigEndian.PutUint16(b[2:], v)
			binary.BigEndian.PutUint32(b[4:], x.ID)
		}
		out = append(out, b...)
	}
	return out, exts[0].Type, nil
}

func extLen(exts []ExtHeader) int {
	n := 0
	for _, x := range exts {
		s, _ := x.size()
		n += s
	}
	return n
}

// FragmentIPv6 splits the upper-layer payload of an outer IPv6 packet into
// RFC 8200 fragments of at most mtu bytes each: every fragment carries the
// fixed header and the unfragmentable extension headers unfrag, then a
// fragment header with id, then its share of payload (whose first header
// is proto), on the 8-byte grid.
func FragmentIPv6(fixed [ipv6HeaderLen]byte, unfrag []ExtHeader, proto uint8, payload []byte, mtu int, id uint32) ([][]byte, error) {
	ul := extLen(unfrag)
	chunk := (mtu - ipv6HeaderLen - ul - ipv6FragHdrLen) &^ 7
	if chunk < 8 {
		return nil, fmt.Errorf("MTU %d leaves no room for an IPv6 fragment after %d bytes of headers", mtu, ipv6HeaderLen+ul+ipv6FragHdrLen)
	}
	if len(payload) == 0 {
		return nil, errors.New("nothing to fragment")
	}
	var out [][]byte
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		fh := ExtHeader{Type: ExtFragment, FragOffset: off, More: end < len(payload), ID: id}
		chain, first, err := extChain(append(append([]ExtHeader(nil), unfrag...), fh), proto)
		if err != nil {
			return nil, err
		}
		p := make([]byte, 0, ipv6HeaderLen+len(chain)+end-off)
		p = append(p, fixed[:]...)
		p = append(p, chain...)
		p = append(p, payload[off:end]...)
		binary.BigEndian.PutUint16(p[4:], uint16(len(p)-ipv6HeaderLen))
		p[6] = first
		out = append(out, p)
	}
	return out, nil
}
