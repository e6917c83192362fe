package pcapng

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"syscall"
)

// Errors of Append, matched with errors.Is; the returned errors say more.
var (
	// ErrNotPcapng: the file is not a pcapng file.
	ErrNotPcapng = errors.New("not a pcapng file")
	// ErrNotOurs: a pcapng file jmxdp did not write (other application,
	// interfaces not named by jmxdp, ...), which Append does not extend.
	ErrNotOurs = errors.New("pcapng file not written by jmxdp")
	// ErrUnsupported: pcapng jmxdp never writes: big-endian, several
	// sections, another version.
	ErrUnsupported = errors.New("unsupported pcapng file")
	// ErrCorrupt: a block in the middle of the file is invalid. Only a
	// torn block at the end is repaired.
	ErrCorrupt = errors.New("corrupt pcapng file")
	// ErrIncomplete: the file is empty or ends inside its section header,
	// as when a crash hit before the first write completed. It holds no
	// packets.
	ErrIncomplete = errors.New("pcapng file without a complete section header")
)

const (
	maxSHBLen = 4 << 10  // ours are under 100 bytes
	maxIDBLen = 64 << 10 // ours are under 200 bytes
)

var shbMagic = []byte{0x0a, 0x0d, 0x0d, 0x0a}

// Append reopens a pcapng file this package wrote, to add packets. It walks
// the file's blocks, checking each one's lengths, and recovers its
// interfaces and packet counts: packets of an existing (router, kind) get its
// interface, new ones the next id. A torn block at the end (a crash or a
// failed write cut it short) is truncated off; Recovered says how many bytes
// that was. A file that is not pcapng, not written by jmxdp, big-endian, has
// several sections or is corrupt before its last block is refused (errors
// match ErrNotPcapng, ErrNotOurs, ErrUnsupported, ErrCorrupt), as is one
// without a complete section header (ErrIncomplete).
func Append(path string) (*Writer, error) { return AppendWith(path, Options{}) }

// AppendWith is Append with options (Exclusive is ignored).
func AppendWith(path string, o Options) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err // *fs.PathError: "open PATH: ..."
	}
	w, err := appendFile(f, path, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Resume reopens a file whose State was taken from its Writer (after Close)
// without reading it: if the file has the size recorded in st, the Writer
// continues from st; if it is longer (a failed write could not be truncated
// off), the excess is cut off and counted in Recovered. If it is shorter, or
// st is the zero State, Resume falls back to Append's full check.
func Resume(path string, st State, o Options) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.valid || fi.Size() < st.size {
		w, err := appendFile(f, path, o)
		if err != nil {
			f.Close()
			return nil, err
		}
		return w, nil
	}
	w := newWriter(f, path, st.mid, st.sid, o)
	if fi.Size() > st.size {
		if err := f.Truncate(st.size); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate %s to %d bytes: %w", path, st.size, err)
		}
		w.recovered = fi.Size() - st.size
	}
	w.restore(st.size, append([]ifaceKey(nil), st.ifaces...), st.packets, st.bytes)
	return w, nil
}

func appendFile(f *os.File, path string, o Options) (*Writer, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	res, err := scan(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	w := newWriter(f, path, res.mid, res.sid, o)
	if res.end < size {
		if err := f.Truncate(res.end); err != nil {
			return nil, fmt.Errorf("truncate torn tail of %s at %d: %w", path, res.end, err)
		}
		w.recovered = size - res.end
	}
	w.restore(res.end, res.ifaces, res.packets, res.bytes)
	return w, nil
}

type scanResult struct {
	mid, sid uint32
	ifaces   []ifaceKey
	packets  uint64
	bytes    uint64
	end      int64 // where the valid blocks end
}

// scan checks the blocks of a file of size bytes.
func scan(r io.ReaderAt, size int64) (scanResult, error) {
	var res scanResult
	if size == 0 {
		return res, fmt.Errorf("%w: empty file", ErrIncomplete)
	}
	var hdr [12]byte
	n := int(min(size, 12))
	if _, err := r.ReadAt(hdr[:n], 0); err != nil && err != io.EOF {
		return res, err
	}
	if !bytes.HasPrefix(shbMagic, hdr[:min(n, 4)]) {
		return res, fmt.Errorf("%w (starts %x)", ErrNotPcapng, hdr[:min(n, 4)])
	}
	if n < 12 {
		return res, fmt.Errorf("%w: %d bytes", ErrIncomplete, size)
	}
	switch binary.LittleEndian.Uint32(hdr[8:]) {
	case byteOrderMagic:
	case byteOrderMagicSwapped:
		return res, fmt.Errorf("%w: big-endian (jmxdp writes little-endian)", ErrUnsupported)
	default:
		return res, fmt.Errorf("%w (bad byte-order magic %x)", ErrNotPcapng, hdr[8:12])
	}
	shbLen := int64(binary.LittleEndian.Uint32(hdr[4:]))
	switch {
	case shbLen < shbFixed || shbLen%4 != 0:
		return res, fmt.Errorf("%w: section header length %d", ErrCorrupt, shbLen)
	case shbLen > maxSHBLen:
		return res, fmt.Errorf("%w: section header of %d bytes", ErrNotOurs, shbLen)
	case shbLen > size:
		return res, fmt.Errorf("%w: section header of %d bytes cut at %d", ErrIncomplete, shbLen, size)
	}
	shb := make([]byte, shbLen)
	if _, err := r.ReadAt(shb, 0); err != nil && err != io.EOF {
		return res, err
	}
	if binary.LittleEndian.Uint32(shb[shbLen-4:]) != uint32(shbLen) {
		return res, fmt.Errorf("%w: section header lengths differ", ErrCorrupt)
	}
	if major := binary.LittleEndian.Uint16(shb[12:]); major != 1 {
		return res, fmt.Errorf("%w: version %d", ErrUnsupported, major)
	}
	var app, comment string
	if err := walkOptions(shb[24:shbLen-4], func(code uint16, v []byte) {
		switch code {
		case optShbUserAppl:
			app = string(v)
		case optComment:
			comment = string(v)
		}
	}); err != nil {
		return res, fmt.Errorf("%w: section header: %v", ErrCorrupt, err)
	}
	if app != appName {
		return res, fmt.Errorf("%w: application %q", ErrNotOurs, app)
	}
	if _, err := fmt.Sscanf(comment, "Jmirror mid=%d sid=%d", &res.mid, &res.sid); err != nil || comment != sectionComment(res.mid, res.sid) {
		return res, fmt.Errorf("%w: section comment %q", ErrNotOurs, comment)
	}

	pos := shbLen
	br := bufio.NewReaderSize(io.NewSectionReader(r, pos, size-pos), int(min(size-pos, 256<<10)))
	var b [28]byte
	for pos < size {
		rem := size - pos
		if rem < 12 {
			break // torn
		}
		if _, err := io.ReadFull(br, b[:8]); err != nil {
			return res, err
		}
		typ := binary.LittleEndian.Uint32(b[:4])
		blen := int64(binary.LittleEndian.Uint32(b[4:8]))
		if blen < 12 || blen%4 != 0 {
			if z, err := zeroFrom(r, pos, size); err != nil {
				return res, err
			} else if z {
				break // a zero-filled tail, as a crash can leave
			}
			return res, fmt.Errorf("%w: block at offset %d: length %d", ErrCorrupt, pos, blen)
		}
		if blen > rem {
			break // torn
		}
		var body []byte
		var epb [20]byte
		switch typ {
		case blockSHB:
			return res, fmt.Errorf("%w: second section at offset %d", ErrUnsupported, pos)
		case blockIDB:
			if blen > maxIDBLen {
				return res, fmt.Errorf("%w: interface block of %d bytes at offset %d", ErrNotOurs, blen, pos)
			}
			body = make([]byte, blen-12)
			if _, err := io.ReadFull(br, body); err != nil {
				return res, err
			}
		case blockEPB:
			if blen < epbFixed {
				return res, fmt.Errorf("%w: packet block at offset %d: length %d", ErrCorrupt, pos, blen)
			}
			if _, err := io.ReadFull(br, epb[:]); err != nil {
				return res, err
			}
			if _, err := br.Discard(int(blen - 12 - 20)); err != nil {
				return res, err
			}
		default:
			if _, err := br.Discard(int(blen - 12)); err != nil {
				return res, err
			}
		}
		if _, err := io.ReadFull(br, b[:4]); err != nil {
			return res, err
		}
		if int64(binary.LittleEndian.Uint32(b[:4])) != blen {
			if pos+blen == size {
				break // the last block: torn
			}
			if z, err := zeroFrom(r, pos+blen-4, size); err != nil {
				return res, err
			} else if z {
				break
			}
			return res, fmt.Errorf("%w: block at offset %d: trailing length %d, leading %d", ErrCorrupt, pos, binary.LittleEndian.Uint32(b[:4]), blen)
		}
		switch typ {
		case blockIDB:
			k, err := parseIDB(body)
			if err != nil {
				return res, fmt.Errorf("interface %d at offset %d: %w", len(res.ifaces), pos, err)
			}
			res.ifaces = append(res.ifaces, k)
		case blockEPB:
			ifid := binary.LittleEndian.Uint32(epb[0:])
			caplen := int64(binary.LittleEndian.Uint32(epb[12:]))
			if int(ifid) >= len(res.ifaces) || ifid >= 1<<31 {
				return res, fmt.Errorf("%w: packet at offset %d on interface %d of %d", ErrCorrupt, pos, ifid, len(res.ifaces))
			}
			if caplen > blen-epbFixed {
				return res, fmt.Errorf("%w: packet at offset %d: %d captured bytes in a %d-byte block", ErrCorrupt, pos, caplen, blen)
			}
			res.packets++
			res.bytes += uint64(caplen)
		}
		pos += blen
	}
	res.end = pos
	return res, nil
}

// zeroFrom reports whether bytes [off, size) are all zero.
func zeroFrom(r io.ReaderAt, off, size int64) (bool, error) {
	buf := make([]byte, 64<<10)
	for off < size {
		n := int(min(int64(len(buf)), size-off))
		if _, err := r.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			return false, err
		}
		for _, c := range buf[:n] {
			if c != 0 {
				return false, nil
			}
		}
		off += int64(n)
	}
	return true, nil
}

// walkOptions calls fn for each option of a block up to opt_endofopt.
func walkOptions(b []byte, fn func(code uint16, v []byte)) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("option header cut short")
		}
		code := binary.LittleEndian.Uint16(b)
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if code == optEndOfOpt {
			return nil
		}
		if 4+n > len(b) {
			return fmt.Errorf("option %d of %d bytes overruns the block", code, n)
		}
		fn(code, b[4:4+n])
		b = b[min(len(b), 4+n+pad4(n)):]
	}
	return nil
}

// parseIDB recovers the (router, kind) of an interface from its body (the
// block without the leading type and length and the trailing length).
func parseIDB(body []byte) (ifaceKey, error) {
	if len(body) < 8 {
		return ifaceKey{}, fmt.Errorf("%w: interface block too short", ErrCorrupt)
	}
	lt := binary.LittleEndian.Uint16(body)
	var name string
	tsresol := -1
	if err := walkOptions(body[8:], func(code uint16, v []byte) {
		switch code {
		case optIfName:
			name = string(v)
		case optIfTsresol:
			if len(v) == 1 {
				tsresol = int(v[0])
			}
		}
	}); err != nil {
		return ifaceKey{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	rest, ok := strings.CutPrefix(name, "jmirror-")
	i := strings.LastIndexByte(rest, '-')
	if !ok || i < 0 {
		return ifaceKey{}, fmt.Errorf("%w: interface name %q", ErrNotOurs, name)
	}
	router, err := netip.ParseAddr(rest[:i])
	if err != nil {
		return ifaceKey{}, fmt.Errorf("%w: interface name %q", ErrNotOurs, name)
	}
	var kind LinkKind
	switch rest[i+1:] {
	case LinkRawIP.String():
		kind = LinkRawIP
	case LinkPPPHDLC.String():
		kind = LinkPPPHDLC
	case LinkUnknown.String():
		kind = LinkUnknown
	default:
		return ifaceKey{}, fmt.Errorf("%w: interface name %q", ErrNotOurs, name)
	}
	if want, _ := kind.LinkType(); uint16(want) != lt {
		return ifaceKey{}, fmt.Errorf("%w: interface %q has link type %d", ErrNotOurs, name, lt)
	}
	if tsresol != 9 {
		return ifaceKey{}, fmt.Errorf("%w: interface %q: timestamp resolution %d, want 9 (ns)", ErrNotOurs, name, tsresol)
	}
	return ifaceKey{router: router, kind: kind}, nil
}
