package pcapng

import (
	"encoding/binary"
	"fmt"
)

// The pcapng blocks jmxdp writes, little-endian, in the layout pcapgo's
// NgWriter used to produce (the files are byte for byte what earlier
// versions wrote).

const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 0x00000001
	blockEPB = 0x00000006

	byteOrderMagic        = 0x1a2b3c4d
	byteOrderMagicSwapped = 0x4d3c2b1a

	optEndOfOpt    = 0
	optComment     = 1
	optShbUserAppl = 4
	optIfName      = 2
	optIfDesc      = 3
	optIfTsresol   = 9

	appName = "jmxdp"

	// Fixed parts: header (type, length) and trailing length.
	shbFixed = 24 + 4 // + options
	idbFixed = 16 + 4
	epbFixed = 28 + 4
)

// MaxPacketLen is the largest packet WritePacket takes. Wireshark refuses to
// read packets longer than 262144 bytes (its WTAP_MAX_PACKET_SIZE_STANDARD),
// and no Jmirror payload comes close.
const MaxPacketLen = 262144

func pad4(n int) int { return (4 - n&3) & 3 }

// optLen is the size of a string option with its header and padding.
func optLen(s string) int { return 4 + len(s) + pad4(len(s)) }

func appendU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }

var zeros [4]byte

func appendOpt(b []byte, code uint16, s string) []byte {
	b = appendU16(b, code)
	b = appendU16(b, uint16(len(s)))
	b = append(b, s...)
	return append(b, zeros[:pad4(len(s))]...)
}

func endOpts(b []byte) []byte { return appendU32(b, 0) }

func sectionComment(mid, sid uint32) string {
	return fmt.Sprintf("Jmirror mid=%d sid=%d", mid, sid)
}

func shbLen(mid, sid uint32) int {
	return shbFixed + optLen(appName) + optLen(sectionComment(mid, sid)) + 4
}

// appendSHB appends the section header of stream (mid, sid).
func appendSHB(b []byte, mid, sid uint32) []byte {
	comment := sectionComment(mid, sid)
	n := shbFixed + optLen(appName) + optLen(comment) + 4
	b = appendU32(b, blockSHB)
	b = appendU32(b, uint32(n))
	b = appendU32(b, byteOrderMagic)
	b = appendU16(b, 1)                                         // major
	b = appendU16(b, 0)                                         // minor
	b = binary.LittleEndian.AppendUint64(b, 0xffffffffffffffff) // section length unknown
	b = appendOpt(b, optShbUserAppl, appName)
	b = appendOpt(b, optComment, comment)
	b = endOpts(b)
	return appendU32(b, uint32(n))
}

func ifaceName(k ifaceKey) string { return fmt.Sprintf("jmirror-%s-%s", k.router, k.kind) }

func ifaceDescription(k ifaceKey) string {
	what := "raw IP"
	switch k.kind {
	case LinkPPPHDLC:
		what = "PPP in HDLC-like framing"
	case LinkUnknown:
		what = "payload neither IP nor PPP"
	}
	return fmt.Sprintf("Jmirror from router %s, %s", k.router, what)
}

// idbLen is the size of k's interface description block.
func idbLen(k ifaceKey) int {
	return idbFixed + optLen(ifaceName(k)) + optLen(ifaceDescription(k)) + 8 + 4
}

// appendIDB appends the interface description block of k: if_name,
// if_description and if_tsresol 9 (nanoseconds), snap length 0 (none).
func appendIDB(b []byte, k ifaceKey) []byte {
	lt, _ := k.kind.LinkType() // checked by the caller
	name, desc := ifaceName(k), ifaceDescription(k)
	n := idbFixed + optLen(name) + optLen(desc) + 8 + 4
	b = appendU32(b, blockIDB)
	b = appendU32(b, uint32(n))
	b = appendU16(b, uint16(lt))
	b = appendU16(b, 0) // reserved
	b = appendU32(b, 0) // snap length
	b = appendOpt(b, optIfName, name)
	b = appendOpt(b, optIfDesc, desc)
	b = appendU16(b, optIfTsresol)
	b = appendU16(b, 1)
	b = append(b, 9, 0, 0, 0)
	b = endOpts(b)
	return appendU32(b, uint32(n))
}

// epbLen is the size of an enhanced packet block; comment "" is none (and
// no options at all).
func epbLen(dataLen int, comment string) int {
	if comment == "" {
		return epbFixed + dataLen + pad4(dataLen)
	}
	return epbFixed + dataLen + pad4(dataLen) + optLen(comment) + 4
}

// appendEPB appends an enhanced packet block, with an opt_comment unless
// comment is "": the fixed part in one store, then the data in one copy.
func appendEPB(b []byte, ifid uint32, ns uint64, data []byte, comment string) []byte {
	n := epbLen(len(data), comment)
	var h [28]byte
	le := binary.LittleEndian
	le.PutUint32(h[0:], blockEPB)
	le.PutUint32(h[4:], uint32(n))
	le.PutUint32(h[8:], ifid)
	le.PutUint32(h[12:], uint32(ns>>32))
	le.PutUint32(h[16:], uint32(ns))
	le.PutUint32(h[20:], uint32(len(data)))
	le.PutUint32(h[24:], uint32(len(data)))
	b = append(b, h[:]...)
	b = append(b, data...)
	b = append(b, zeros[:pad4(len(data))]...)
	if comment != "" {
		b = appendOpt(b, optComment, comment)
		b = endOpts(b)
	}
	return appendU32(b, uint32(n))
}
