// Package jmirror is a pure-Go Jmirror decoder with exactly the semantics of
// the XDP program in bpf/jmxdp.c: the same parsing, classification,
// counters, fragment tracking and policy. It runs when BPF is unavailable and
// is the test oracle for the kernel program.
package jmirror

import (
	"encoding/binary"
	"net/netip"

	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// DefaultPort is Wireshark's Jmirror UDP port, decoded when none is
// configured: the one definition, which loader, config and gen name too.
const DefaultPort = 30030

// Wire-format constants, as in bpf/include/consts.h.
const (
	HeaderLen    = 8  // the Jmirror header
	udpHeaderLen = 8  // UDP header
	MinUDPLen    = 16 // UDP header + Jmirror header
	midMask      = 0x3fffffff
	versionShift = 30

	ethHeaderLen    = 14
	vlanHeaderLen   = 4
	maxVLANDepth    = 2
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8
	ipv4MinHeader   = 20
	ipv6HeaderLen   = 40
	protoUDP        = 17
	ipMF            = 0x2000
	ipOffsetMask    = 0x1fff
	pppAddress      = 0xff
	pppControl      = 0x03

	// Outer IPv6 extension headers, as JM_IPV6_* in consts.h.
	MaxIPv6Ext     = 8 // headers walked; a chain going on past them is ClassIPv6ExtTooLong
	ipv6HopByHop   = 0
	ipv6Routing    = 43
	ipv6Fragment   = 44
	ipv6AH         = 51
	ipv6DstOpts    = 60
	ipv6FragHdrLen = 8
	ipv6OffsetMask = 0xfff8
	ipv6MF         = 0x0001
)

// Class says what a frame is, exactly one per frame, as the kernel counts.
type Class int

const (
	ClassNotJmirror Class = iota
	ClassJmirror          // a datagram counted into a stream (or its first fragment)
	ClassMalformedShort
	ClassMalformedTruncated
	ClassUntrusted
	ClassFragTracked
	ClassFragUnmatched
	// ClassFragDuplicate: a copy of a first fragment already counted.
	ClassFragDuplicate
	// ClassFragHeld: a later fragment before its first, redirected for
	// userspace to hold (its pair sends only captured Jmirror).
	ClassFragHeld
	// ClassIPv6ExtTooLong: outer IPv6 whose extension-header chain goes on
	// past MaxIPv6Ext headers: passed, not walked further.
	ClassIPv6ExtTooLong
)

var classNames = [...]string{"not_jmirror", "jmirror", "malformed_short", "malformed_truncated", "untrusted", "frag_tracked", "frag_unmatched",
	"frag_duplicate", "frag_held", "ipv6_ext_too_long"}

func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "class(?)"
}

// FragKey is the outer IPv4 fragment identity.
type FragKey struct {
	Src, Dst [4]byte
	ID       uint16
	Proto    uint8
}

// Frag6Key is the outer IPv6 fragment identity (RFC 8200: no protocol).
type Frag6Key struct {
	Src, Dst [16]byte
	ID       uint32
}

// Header is what one frame carries, before any state is consulted.
type Header struct {
	// IPOffset is where the outer IP header starts in the frame.
	IPOffset int
	Router   netip.Addr

	// Outer IPv4 fragmentation: FirstFragment is a datagram's first piece
	// (MF set, offset 0); LaterFragment any other piece.
	FirstFragment, LaterFragment bool
	Frag                         FragKey
	// Frag6: the fragment is an outer IPv6 one, keyed by Frag6Key (Frag is
	// then unused).
	Frag6    bool
	Frag6Key Frag6Key
	// ExtTooLong: an outer IPv6 extension-header chain longer than
	// MaxIPv6Ext; nothing after the fixed header is read.
	ExtTooLong bool
	// ExtLen is the bytes of outer IPv6 extension headers before UDP.
	ExtLen int

	// Port is the UDP destination port; UDP is false when the frame has no
	// UDP header this decoder reads.
	UDP    bool
	Port   uint16
	UDPLen int
	// UDPOffset is where the UDP header starts; Limit is where the frame's
	// data ends, per both the frame and the IP header.
	UDPOffset, Limit int

	MID, SID uint32
	Version  uint8
	InnerLen int
	Inner    vocab.Inner
}

// InnerOffset is where the mirrored packet starts in the frame.
func (h *Header) InnerOffset() int { return h.UDPOffset + MinUDPLen }

// Payload is the mirrored packet in frame, which h is the decode of (class
// ClassJmirror, not a fragment).
func (h *Header) Payload(frame []byte) []byte {
	return frame[h.InnerOffset() : h.InnerOffset()+h.InnerLen]
}

// parseHeader reads the headers of frame, up to and including the UDP
// header. Jmirror fields are filled by jmirrorFields.
func parseHeader(frame []byte) (h Header, ok bool) {
	if len(frame) < ethHeaderLen {
		return h, false
	}
	off := ethHeaderLen
	etype := binary.BigEndian.Uint16(frame[12:])
	for i := 0; i < maxVLANDepth && (etype == etherType8021Q || etype == etherType8021AD); i++ {
		if off+vlanHeaderLen > len(frame) {
			return h, false
		}
		etype = binary.BigEndian.Uint16(frame[off+2:])
		off += vlanHeaderLen
	}
	h.IPOffset = off
	var ipEnd int
	switch etype {
	case etherTypeIPv4:
		if off+ipv4MinHeader > len(frame) {
			return h, false
		}
		ip := frame[off:]
		ihl := int(ip[0] & 0x0f)
		if ip[0]>>4 != 4 || ihl < 5 || off+ihl*4 > len(frame) {
			return h, false
		}
		frag := binary.BigEndian.Uint16(ip[6:])
		copy(h.Frag.Src[:], ip[12:16])
		copy(h.Frag.Dst[:], ip[16:20])
		h.Frag.ID = binary.BigEndian.Uint16(ip[4:])
		h.Frag.Proto = ip[9]
		h.Router = netip.AddrFrom4(h.Frag.Src)
		if frag&ipOffsetMask != 0 {
			h.LaterFragment = true
			return h, true
		}
		h.FirstFragment = frag&ipMF != 0
		if ip[9] != protoUDP {
			return h, true
		}
		ipEnd = off + int(binary.BigEndian.Uint16(ip[2:]))
		off += ihl * 4
	case etherTypeIPv6:
		if off+ipv6HeaderLen > len(frame) {
			return h, false
		}
		ip := frame[off:]
		if ip[0]>>4 != 6 {
			return h, false
		}
		// Kept 16 bytes, never unmapped: ::ffff:a.b.c.d is not a.b.c.d.
		h.Router = netip.AddrFrom16([16]byte(ip[8:24]))
		ipEnd = off + ipv6HeaderLen + int(binary.BigEndian.Uint16(ip[4:]))
		start := off + ipv6HeaderLen
		next, pos := walkIPv6Ext(frame, int(ip[6]), start, &h)
		h.ExtLen = pos - start
		if next == extTooLong || h.LaterFragment || next != protoUDP {
			// Not Jmirror (or too long, or a later fragment), but a
			// first fragment's record must still be forgotten.
			return h, true
		}
		off = pos
	default:
		return h, false
	}
	if off+udpHeaderLen > len(frame) {
		return h, true
	}
	h.UDP = true
	h.UDPOffset = off
	h.Port = binary.BigEndian.Uint16(frame[off+2:])
	h.UDPLen = int(binary.BigEndian.Uint16(frame[off+4:]))
	h.Limit = min(len(frame), ipEnd)
	return h, true
}

const (
	extNotJmirror = -1
	extTooLong    = -2
)

// walkIPv6Ext walks the outer IPv6 extension headers from pos, as
// parse_ip6_ext in bpf/include/parsing_helpers.h: at most MaxIPv6Ext, each
// bounds-checked against the frame; hop-by-hop only first, one fragment
// header, AH of a sound length, and no ESP. It returns the protocol ending
// the chain and where it starts, extNotJmirror or extTooLong, and records
// a fragment header in h.
func walkIPv6Ext(frame []byte, next, pos int, h *Header) (int, int) {
	fragSeen := false
	for i := 0; i < MaxIPv6Ext; i++ {
		var n int
		switch next {
		case ipv6HopByHop, ipv6Routing, ipv6DstOpts:
			if next == ipv6HopByHop && i != 0 {
				return extNotJmirror, pos
			}
			if pos+2 > len(frame) {
				return extNotJmirror, pos
			}
			n = (int(frame[pos+1]) + 1) * 8
		case ipv6AH:
			if pos+2 > len(frame) {
				return extNotJmirror, pos
			}
			n = (int(frame[pos+1]) + 2) * 4
			if frame[pos+1] < 1 || n%8 != 0 {
				return extNotJmirror, pos
			}
		case ipv6Fragment:
			if fragSeen || pos+ipv6FragHdrLen > len(frame) {
				return extNotJmirror, pos
			}
			fragSeen = true
			offFlags := binary.BigEndian.Uint16(frame[pos+2:])
			copy(h.Frag6Key.Src[:], frame[h.IPOffset+8:h.IPOffset+24])
			copy(h.Frag6Key.Dst[:], frame[h.IPOffset+24:h.IPOffset+40])
			h.Frag6Key.ID = binary.BigEndian.Uint32(frame[pos+4:])
			switch {
			case offFlags&ipv6OffsetMask != 0:
				// What follows is payload, not headers.
				h.Frag6, h.LaterFragment = true, true
				return int(frame[pos]), pos + ipv6FragHdrLen
			case offFlags&ipv6MF != 0:
				h.Frag6, h.FirstFragment = true, true
			}
			// Else an atomic fragment (RFC 6946): a whole datagram.
			n = ipv6FragHdrLen
		default:
			return next, pos
		}
		if pos+n > len(frame) {
			return extNotJmirror, pos
		}
		next = int(frame[pos])
		pos += n
	}
	switch next {
	case ipv6HopByHop, ipv6Routing, ipv6DstOpts, ipv6AH, ipv6Fragment:
		h.ExtTooLong = true
		h.Frag6, h.FirstFragment = false, false
		return extTooLong, pos
	}
	return next, pos
}

// lengthClass applies the malformed checks, in the kernel's order.
func (h *Header) lengthClass(frame []byte) Class {
	if h.UDPLen < MinUDPLen {
		return ClassMalformedShort
	}
	need := h.UDPOffset + h.UDPLen
	if h.FirstFragment {
		// Only the Jmirror header must be in the first fragment.
		need = h.UDPOffset + MinUDPLen
	}
	if need > h.Limit || h.UDPOffset+MinUDPLen > len(frame) {
		return ClassMalformedTruncated
	}
	return ClassJmirror
}

// jmirrorFields reads the Jmirror header and classifies the mirrored packet.
func (h *Header) jmirrorFields(frame []byte) {
	f, _, _ := ParseJmirror(frame[h.UDPOffset+udpHeaderLen : h.InnerOffset()])
	h.MID, h.SID, h.Version = f.MID, f.SID, f.Version
	h.InnerLen = h.UDPLen - MinUDPLen
	h.Inner = ClassifyInner(frame[h.InnerOffset():], h.InnerLen)
}

// Fields are the Jmirror header's.
type Fields struct {
	MID, SID uint32
	// Version is the two V bits, which jmxdp counts but does not check.
	Version uint8
}

// ParseJmirror splits a Jmirror UDP payload into its header fields and the
// mirrored packet: the one Jmirror header parser, for frames (Decode) and
// for the payloads a UDP socket receives (udprecv). ok is false when p is
// shorter than the header.
func ParseJmirror(p []byte) (f Fields, inner []byte, ok bool) {
	if len(p) < HeaderLen {
		return f, nil, false
	}
	w0 := binary.BigEndian.Uint32(p)
	f = Fields{MID: w0 & midMask, SID: binary.BigEndian.Uint32(p[4:]), Version: uint8(w0 >> versionShift)}
	return f, p[HeaderLen:], true
}

// Fingerprint constants, as JM_FP_* in bpf/include/consts.h.
const (
	fpWords = 8
	fpSeed  = 0xcbf29ce484222325
	fpPrime = 0x100000001b3
)

// Fingerprint hashes the head of the mirrored packet as the kernel does for
// a first fragment (FNV-1a over up to 8 little-endian 8-byte words that
// lie in the frame, the IP packet and the mirrored packet): what tells a
// copy of a first fragment from another datagram that reuses its IP id.
func (h *Header) Fingerprint(frame []byte) uint64 {
	off := h.InnerOffset()
	avail := min(h.Limit-off, h.InnerLen, len(frame)-off)
	fp := uint64(fpSeed)
	for i := 0; i < fpWords && (i+1)*8 <= avail; i++ {
		fp = (fp ^ binary.LittleEndian.Uint64(frame[off+i*8:])) * fpPrime
	}
	return fp
}

// ClassifyInner tells the kind of a mirrored packet of length n from the
// bytes of it at hand (in a first fragment, maybe fewer than n).
func ClassifyInner(b []byte, n int) vocab.Inner {
	switch {
	case n == 0:
		return vocab.InnerEmpty
	case len(b) < 1:
		return vocab.InnerUnknown
	case b[0]>>4 == 4:
		return vocab.InnerIPv4
	case b[0]>>4 == 6:
		return vocab.InnerIPv6
	case n >= 2 && len(b) >= 2 && b[0] == pppAddress && b[1] == pppControl:
		return vocab.InnerPPP
	}
	return vocab.InnerUnknown
}

// Decode reads one frame statelessly: no allowlist and no fragment table.
// It is what userspace applies to a frame it captured (or reassembled);
// decoded says whether the port is one to decode. The class is
// ClassJmirror when the header fields are valid. An outer IPv6 source that
// embeds an IPv4 address is ClassUntrusted, as in the kernel: it is never
// a router, allowlist or not.
func Decode(frame []byte, decoded func(port uint16) bool) (Header, Class) {
	h, ok := parseHeader(frame)
	if !ok || h.LaterFragment || !h.UDP || !decoded(h.Port) {
		return h, ClassNotJmirror
	}
	if vocab.IPv4Embedded(h.Router) {
		return h, ClassUntrusted
	}
	c := h.lengthClass(frame)
	if c == ClassJmirror {
		h.jmirrorFields(frame)
	}
	return h, c
}
