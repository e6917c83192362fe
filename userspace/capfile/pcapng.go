package capfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// A bounded pcapng reader. pcapgo's NgReader trusts the file: it keeps every
// interface block of a section (1M of them, 20 MB on disk, took 900 MB), never
// checks a block's trailing length, and subtracts lengths from the file without
// checking them against the block that holds them. This one checks every
// length against its block and every block against the limits below, so
// nothing it allocates is bigger than the file justifies, and each refusal
// names the block's offset in the file.
const (
	// MaxInterfacesPerSection is the most interface description blocks one
	// pcapng section may hold. Capture tools write one per interface they
	// listened on; 65536 is far above any real capture, and keeps the
	// per-section table at about 2 MiB.
	MaxInterfacesPerSection = 65536
	// MaxBlockLen is the longest pcapng block read, in bytes: blocks are
	// read whole, and a packet block holds one frame (256 KiB at most in
	// libpcap and Wireshark). Wireshark refuses blocks above its own limit
	// too.
	MaxBlockLen = 16 << 20

	blockSHB = 0x0a0d0d0a // the same in both byte orders
	blockIDB = 1
	blockPB  = 2 // the obsolete Packet Block
	blockSPB = 3
	blockEPB = 6

	byteOrderMagic = 0x1a2b3c4d

	optEndOfOpt = 0
	optTSResol  = 9
	optTSOffset = 14

	blockHeaderLen = 8 // type, total length
	minBlockLen    = blockHeaderLen + 4
	minSHBLen      = minBlockLen + 16 // byte-order magic, version, section length
	minIDBLen      = minBlockLen + 8  // link type, reserved, snap length
	minEPBLen      = minBlockLen + 20 // interface, timestamp, two lengths
	minSPBLen      = minBlockLen + 4  // original length

	// readChunk is how much of a block body is allocated ahead of the bytes
	// that arrive: a block claiming 16 MiB in a short file costs what the
	// file holds, not what it claims.
	readChunk = 1 << 20
)

// limitError is a file that is well-formed but beyond a limit of this reader.
type limitError struct{ error }

type ngIface struct {
	lt      layers.LinkType
	snapLen uint32
	perSec  uint64 // timestamp units per second (if_tsresol)
	offset  int64  // seconds added to every timestamp (if_tsoffset)
}

// ngRecord is one packet block's frame.
type ngRecord struct {
	data    []byte // fresh for every record
	ts      time.Time
	origLen int
	lt      layers.LinkType
}

type ngReader struct {
	br     *bufio.Reader
	off    int64 // file offset of the next unread byte
	bo     binary.ByteOrder
	ifaces []ngIface
	body   []byte // the current block's body, reused from block to block
	hdr    [12]byte
}

// newNgReader reads the first section header block.
func newNgReader(br *bufio.Reader) (*ngReader, error) {
	n := &ngReader{br: br, bo: binary.LittleEndian}
	typ, start, err := n.readBlock()
	if err == io.EOF {
		err = fmt.Errorf("pcapng section header block at offset 0: %w", io.ErrUnexpectedEOF)
	}
	if err != nil {
		return nil, err
	}
	if typ != blockSHB { // cannot happen: the caller checked the magic
		return nil, fmt.Errorf("pcapng file does not start with a section header block (block type 0x%08x)", typ)
	}
	if err := n.section(start); err != nil {
		return nil, err
	}
	return n, nil
}

// next returns the frame of the next packet block, or io.EOF at the end of
// the file after a whole block.
func (n *ngReader) next() (ngRecord, error) {
	for {
		typ, start, err := n.readBlock()
		if err != nil {
			return ngRecord{}, err
		}
		switch typ {
		case blockSHB:
			if err := n.section(start); err != nil {
				return ngRecord{}, err
			}
		case blockIDB:
			if err := n.iface(start); err != nil {
				return ngRecord{}, err
			}
		case blockEPB, blockPB, blockSPB:
			return n.packet(typ, start)
		}
	}
}

func blockName(typ uint32) string {
	switch typ {
	case blockSHB:
		return "section header block"
	case blockIDB:
		return "interface description block"
	case blockPB:
		return "packet block"
	case blockSPB:
		return "simple packet block"
	case blockEPB:
		return "enhanced packet block"
	}
	return fmt.Sprintf("block of type 0x%08x", typ)
}

func blockErr(typ uint32, start int64, format string, a ...any) error {
	return fmt.Errorf("pcapng %s at offset %d: %w", blockName(typ), start, fmt.Errorf(format, a...))
}

// read fills b from the file; a file that ends part way is io.ErrUnexpectedEOF.
func (n *ngReader) read(b []byte) error {
	m, err := io.ReadFull(n.br, b)
	n.off += int64(m)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// readBlock reads one block whole and checks its framing. The body of the
// blocks this reader parses is left in n.body (for a section header, after
// the byte-order magic); other blocks are skipped without being kept. It
// returns io.EOF only when the file ends before a block's first byte.
func (n *ngReader) readBlock() (typ uint32, start int64, err error) {
	start = n.off
	if _, err := n.br.Peek(1); err == io.EOF {
		return 0, start, io.EOF
	}
	if err := n.read(n.hdr[:blockHeaderLen]); err != nil {
		return 0, start, fmt.Errorf("pcapng block header at offset %d: %w", start, err)
	}
	hdrLen := blockHeaderLen
	bo := n.bo
	if binary.LittleEndian.Uint32(n.hdr[0:4]) == blockSHB {
		// A section header sets the byte order of its section, its own
		// length included, so read the magic before the length.
		typ = blockSHB
		if err := n.read(n.hdr[8:12]); err != nil {
			return typ, start, blockErr(typ, start, "%w", err)
		}
		switch {
		case binary.LittleEndian.Uint32(n.hdr[8:12]) == byteOrderMagic:
			bo = binary.LittleEndian
		case binary.BigEndian.Uint32(n.hdr[8:12]) == byteOrderMagic:
			bo = binary.BigEndian
		default:
			return typ, start, blockErr(typ, start, "unknown byte-order magic 0x%08x", binary.BigEndian.Uint32(n.hdr[8:12]))
		}
		hdrLen += 4
	} else {
		typ = bo.Uint32(n.hdr[0:4])
	}
	total := bo.Uint32(n.hdr[4:8])
	minLen := uint32(minBlockLen)
	switch typ {
	case blockSHB:
		minLen = minSHBLen
	case blockIDB:
		minLen = minIDBLen
	case blockEPB, blockPB:
		minLen = minEPBLen
	case blockSPB:
		minLen = minSPBLen
	}
	switch {
	case total < minLen:
		return typ, start, blockErr(typ, start, "block length %d is shorter than the %d bytes of its fixed fields", total, minLen)
	case total%4 != 0:
		return typ, start, blockErr(typ, start, "block length %d is not a multiple of 4", total)
	case total > MaxBlockLen:
		return typ, start, blockErr(typ, start, "block length %d is over the limit of %d", total, MaxBlockLen)
	}
	bodyLen := int(total) - hdrLen - 4
	switch typ {
	case blockSHB, blockIDB, blockEPB, blockPB, blockSPB:
		if err := n.readBody(bodyLen); err != nil {
			return typ, start, blockErr(typ, start, "%d-byte block: %w", total, err)
		}
	default:
		// Statistics, name resolution, secrets, custom blocks: nothing a
		// frame needs, so they are skipped without being kept.
		m, err := n.br.Discard(bodyLen)
		n.off += int64(m)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return typ, start, blockErr(typ, start, "%d-byte block: %w", total, err)
		}
	}
	trailer := n.hdr[:4] // the header is parsed already
	if err := n.read(trailer); err != nil {
		return typ, start, blockErr(typ, start, "%d-byte block, reading its trailing length: %w", total, err)
	}
	if t := bo.Uint32(trailer); t != total {
		return typ, start, blockErr(typ, start, "trailing block length %d differs from the leading %d", t, total)
	}
	if typ == blockSHB {
		n.bo = bo
	}
	return typ, start, nil
}

// readBody reads l bytes into n.body, growing it only as the bytes arrive.
func (n *ngReader) readBody(l int) error {
	if l <= cap(n.body) {
		n.body = n.body[:l]
		return n.read(n.body)
	}
	b := n.body[:0]
	for len(b) < l {
		c := min(l-len(b), readChunk)
		b = slices.Grow(b, c)
		err := n.read(b[len(b) : len(b)+c])
		b = b[:len(b)+c]
		if err != nil {
			n.body = b[:0]
			return err
		}
	}
	n.body = b
	return nil
}

// options walks the options of a block, checking each against the block.
// It is an iterator rather than a callback so that parsing an interface block
// allocates nothing but its table entry.
type options struct {
	b     []byte
	bo    binary.ByteOrder
	typ   uint32
	start int64
}

// next returns the next option but the end-of-options marker; ok is false
// after the last one.
func (o *options) next() (code uint16, val []byte, ok bool, err error) {
	if len(o.b) == 0 {
		return 0, nil, false, nil
	}
	if len(o.b) < 4 {
		return 0, nil, false, blockErr(o.typ, o.start, "%d bytes after the last option, too few for an option header", len(o.b))
	}
	code, l := o.bo.Uint16(o.b[0:2]), int(o.bo.Uint16(o.b[2:4]))
	if code == optEndOfOpt {
		return 0, nil, false, nil
	}
	if 4+l > len(o.b) {
		return 0, nil, false, blockErr(o.typ, o.start, "option %d of %d bytes runs past the end of the block (%d bytes left)", code, l, len(o.b)-4)
	}
	val = o.b[4 : 4+l]
	// Options are padded to 4 bytes, and so is the rest of the block.
	o.b = o.b[min(len(o.b), 4+(l+3)&^3):]
	return code, val, true, nil
}

// checkOptions checks the options of a block whose options are not used.
func (n *ngReader) checkOptions(typ uint32, start int64, b []byte) error {
	o := options{b: b, bo: n.bo, typ: typ, start: start}
	for {
		_, _, ok, err := o.next()
		if !ok {
			return err
		}
	}
}

// section starts a new section: its own byte order (readBlock set it) and no
// interfaces yet.
func (n *ngReader) section(start int64) error {
	b := n.body
	major, minor := n.bo.Uint16(b[0:2]), n.bo.Uint16(b[2:4])
	// 1.0 is the version everyone writes; 1.2 was written for a while by
	// tools that added block types, which are skipped here anyway.
	if major != 1 || (minor != 0 && minor != 2) {
		return blockErr(blockSHB, start, "unsupported pcapng version %d.%d", major, minor)
	}
	// b[4:12] is the section length: only a hint for skipping a section,
	// often -1, so it is never used.
	if err := n.checkOptions(blockSHB, start, b[12:]); err != nil {
		return err
	}
	n.ifaces = n.ifaces[:0]
	return nil
}

func (n *ngReader) iface(start int64) error {
	if len(n.ifaces) >= MaxInterfacesPerSection {
		return limitError{blockErr(blockIDB, start, "more than %d interfaces in one section, the most this reader takes", MaxInterfacesPerSection)}
	}
	b := n.body
	i := ngIface{
		lt:      layers.LinkType(n.bo.Uint16(b[0:2])),
		snapLen: n.bo.Uint32(b[4:8]),
		perSec:  1e6, // the default resolution: microseconds
	}
	o := options{b: b[8:], bo: n.bo, typ: blockIDB, start: start}
	for {
		code, v, ok, err := o.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := i.option(code, v, n.bo); err != nil {
			return blockErr(blockIDB, start, "option %d: %w", code, err)
		}
	}
	n.ifaces = append(n.ifaces, i)
	return nil
}

// option applies one interface option.
func (i *ngIface) option(code uint16, v []byte, bo binary.ByteOrder) error {
	switch code {
	case optTSResol:
		if len(v) < 1 {
			return errors.New("if_tsresol is empty")
		}
		exp := uint(v[0] & 0x7f)
		if v[0]&0x80 != 0 {
			if exp > 63 {
				return fmt.Errorf("if_tsresol 2^-%d is finer than 64-bit timestamps hold", exp)
			}
			i.perSec = 1 << exp
			return nil
		}
		if exp > 19 {
			return fmt.Errorf("if_tsresol 10^-%d is finer than 64-bit timestamps hold", exp)
		}
		i.perSec = 1
		for range exp {
			i.perSec *= 10
		}
	case optTSOffset:
		if len(v) < 8 {
			return fmt.Errorf("if_tsoffset has %d bytes, want 8", len(v))
		}
		i.offset = int64(bo.Uint64(v))
	}
	return nil
}

func (n *ngReader) packet(typ uint32, start int64) (ngRecord, error) {
	b := n.body
	var (
		id            uint32
		ts            uint64
		capLen, wire  uint32
		hdrLen        int
		haveTimestamp = true
	)
	switch typ {
	case blockEPB:
		id = n.bo.Uint32(b[0:4])
		ts = uint64(n.bo.Uint32(b[4:8]))<<32 | uint64(n.bo.Uint32(b[8:12]))
		capLen, wire = n.bo.Uint32(b[12:16]), n.bo.Uint32(b[16:20])
		hdrLen = 20
	case blockPB:
		id = uint32(n.bo.Uint16(b[0:2])) // b[2:4] is a drop count
		ts = uint64(n.bo.Uint32(b[4:8]))<<32 | uint64(n.bo.Uint32(b[8:12]))
		capLen, wire = n.bo.Uint32(b[12:16]), n.bo.Uint32(b[16:20])
		hdrLen = 20
	case blockSPB:
		// No interface field: always the section's first; no timestamp;
		// the captured length is the original one cut to the snap length.
		wire = n.bo.Uint32(b[0:4])
		capLen = wire
		hdrLen = 4
		haveTimestamp = false
	}
	if int(id) >= len(n.ifaces) {
		return ngRecord{}, blockErr(typ, start, "interface %d is not described in this section (it has %d)", id, len(n.ifaces))
	}
	ifc := n.ifaces[id]
	if typ == blockSPB && ifc.snapLen != 0 && capLen > ifc.snapLen {
		capLen = ifc.snapLen
	}
	room := len(b) - hdrLen
	if uint64(capLen) > uint64(room) {
		return ngRecord{}, blockErr(typ, start, "captured length %d exceeds the block's %d bytes of packet data", capLen, room)
	}
	if typ != blockSPB {
		if err := n.checkOptions(typ, start, b[hdrLen+(int(capLen)+3)&^3:]); err != nil {
			return ngRecord{}, err
		}
	}
	rec := ngRecord{
		data:    slices.Clone(b[hdrLen : hdrLen+int(capLen)]),
		origLen: int(wire),
		lt:      ifc.lt,
	}
	if rec.data == nil {
		rec.data = []byte{}
	}
	if haveTimestamp {
		rec.ts = ifc.time(ts)
	} else {
		// The epoch, as Wireshark shows it, rather than Go's year 1, which
		// no capture file can hold.
		rec.ts = time.Unix(0, 0).UTC()
	}
	return rec, nil
}

// time converts a timestamp in the interface's units, exactly: the fraction
// is scaled in 128 bits, so a binary resolution loses nothing to rounding.
func (i ngIface) time(ts uint64) time.Time {
	sec, frac := ts/i.perSec, ts%i.perSec
	ns := frac
	if i.perSec != 1e9 {
		hi, lo := bits.Mul64(frac, 1e9)
		ns, _ = bits.Div64(hi, lo, i.perSec) // hi < perSec, as frac < perSec
	}
	return time.Unix(int64(sec)+i.offset, int64(ns)).UTC()
}
