package pcapng

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Section is one stream's packets encoded in memory as a self-contained
// pcapng section (SHB, the IDBs its packets use, their EPBs), with the
// same blocks a file gets: a message a broker carries, which anything
// that reads pcapng reads on its own. It is not safe for concurrent use.
type Section struct {
	buf      []byte
	mid, sid uint32
	ifaces   []ifaceKey
	comments bool
	packets  int
	bytes    int
	first    uint64 // the first packet's time
}

// NewSection starts a section of stream (mid, sid); comments adds the
// "router=" comment to every packet, as Options.NoPacketComments false.
func NewSection(mid, sid uint32, comments bool) *Section {
	s := &Section{mid: mid, sid: sid, comments: comments}
	s.Reset()
	return s
}

// Reset empties the section (keeping its memory) for the next batch.
func (s *Section) Reset() {
	s.buf = appendSHB(s.buf[:0], s.mid, s.sid)
	s.ifaces = s.ifaces[:0]
	s.packets, s.bytes, s.first = 0, 0, 0
}

// Add appends a packet; what CheckPacketAt refuses changes nothing.
func (s *Section) Add(ns uint64, router netip.Addr, kind LinkKind, data []byte) error {
	if err := CheckPacketAt(ns, router, kind, len(data)); err != nil {
		return err
	}
	key := ifaceKey{router, kind}
	idx := -1
	for i, k := range s.ifaces {
		if k == key {
			idx = i
			break
		}
	}
	if idx < 0 {
		idx = len(s.ifaces)
		s.ifaces = append(s.ifaces, key)
		s.buf = appendIDB(s.buf, key)
	}
	comment := ""
	if s.comments {
		comment = "router=" + router.String()
	}
	s.buf = appendEPB(s.buf, uint32(idx), ns, data, comment)
	if s.packets == 0 {
		s.first = ns
	}
	s.packets++
	s.bytes += len(data)
	return nil
}

// Bytes is the encoded section; valid until the next Add or Reset.
func (s *Section) Bytes() []byte { return s.buf }

// Packets and DataBytes count what was added since Reset.
func (s *Section) Packets() int   { return s.packets }
func (s *Section) DataBytes() int { return s.bytes }

// First is the first packet's time (ns since 1970), 0 if none.
func (s *Section) First() uint64 { return s.first }

// SectionPacket is one packet of a decoded section. Data aliases the
// section's bytes.
type SectionPacket struct {
	NS     uint64
	Router netip.Addr
	Kind   LinkKind
	Data   []byte
}

// DecodeSection reads a section that Section wrote (little-endian, jmxdp's
// interface names) and calls fn for every packet in order. It returns the
// stream the section header names. A section in another layout is
// refused (ErrCorrupt, ErrNotOurs) before fn sees anything of it.
func DecodeSection(b []byte, fn func(SectionPacket) error) (mid, sid uint32, err error) {
	var ifaces []ifaceKey
	var pkts []SectionPacket
	le := binary.LittleEndian
	for off := 0; off < len(b); {
		if len(b)-off < 12 {
			return 0, 0, fmt.Errorf("%w: block header cut short at %d", ErrCorrupt, off)
		}
		typ, n := le.Uint32(b[off:]), int(le.Uint32(b[off+4:]))
		if n < 12 || n%4 != 0 || n > len(b)-off || int(le.Uint32(b[off+n-4:])) != n {
			return 0, 0, fmt.Errorf("%w: block of %d bytes at %d", ErrCorrupt, n, off)
		}
		body := b[off+8 : off+n-4]
		switch {
		case off == 0 && typ != blockSHB:
			return 0, 0, fmt.Errorf("%w: no section header", ErrCorrupt)
		case typ == blockSHB:
			if off != 0 || len(body) < 16 || le.Uint32(body) != byteOrderMagic {
				return 0, 0, fmt.Errorf("%w: section header at %d", ErrCorrupt, off)
			}
			if err := walkOptions(body[16:], func(code uint16, v []byte) {
				if code == optComment {
					fmt.Sscanf(string(v), "Jmirror mid=%d sid=%d", &mid, &sid)
				}
			}); err != nil {
				return 0, 0, fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		case typ == blockIDB:
			k, err := parseIDB(body)
			if err != nil {
				return 0, 0, err
			}
			ifaces = append(ifaces, k)
		case typ == blockEPB:
			if len(body) < 20 {
				return 0, 0, fmt.Errorf("%w: packet block at %d", ErrCorrupt, off)
			}
			ifid := int(le.Uint32(body))
			ns := uint64(le.Uint32(body[4:]))<<32 | uint64(le.Uint32(body[8:]))
			capLen := int(le.Uint32(body[12:]))
			if ifid >= len(ifaces) || capLen > len(body)-20 {
				return 0, 0, fmt.Errorf("%w: packet block at %d", ErrCorrupt, off)
			}
			k := ifaces[ifid]
			pkts = append(pkts, SectionPacket{NS: ns, Router: k.router, Kind: k.kind, Data: body[20 : 20+capLen]})
		}
		off += n
	}
	for _, p := range pkts {
		if err := fn(p); err != nil {
			return mid, sid, err
		}
	}
	return mid, sid, nil
}
