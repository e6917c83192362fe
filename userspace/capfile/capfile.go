// Package capfile reads pcap and pcapng capture files and delivers every
// frame as an Ethernet frame, so the Jmirror parser only has to understand
// one link layer whatever tool recorded the capture.
package capfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Frame is one captured frame.
type Frame struct {
	// Time is the capture timestamp, in UTC.
	Time time.Time
	// Data is an Ethernet frame, freshly allocated for each Frame so the
	// caller may keep it. It may be shorter than OrigLen when the capture was
	// taken with a snap length.
	Data []byte
	// OrigLen is the length of the frame on the wire, counted like Data: for
	// converted link types it is adjusted for the synthesized Ethernet header.
	OrigLen int
	// Index is the 1-based frame number in the file, as Wireshark numbers it.
	Index int
}

// Link types that pcapgo/layers does not name. DLT_RAW is 12 in files from
// most libpcap versions and 14 in files from OpenBSD; Wireshark reads both as
// raw IP, so do we.
const (
	linkTypeDLTRaw12 layers.LinkType = 12
	linkTypeDLTRaw14 layers.LinkType = 14
)

const (
	magicPcapMicroLE = 0xa1b2c3d4
	magicPcapNanoLE  = 0xa1b23c4d
	magicPcapngSHB   = 0x0a0d0d0a // the same in both byte orders
	magicGzip        = 0x1f8b

	ethHeaderLen  = 14
	sllHeaderLen  = 16
	sll2HeaderLen = 20

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
)

// Reader reads frames from a capture file. It is not safe for concurrent use.
type Reader struct {
	path string
	c    io.Closer
	// Exactly one of classic (pcapgo's reader) and ng (ours, pcapng.go) is set.
	classic *pcapgo.Reader
	ng      *ngReader
	// linkType is the file's link type for classic pcap; pcapng carries one
	// per interface instead.
	linkType layers.LinkType
	n        int   // frames returned so far
	err      error // sticky: once the file is bad, stay bad
}

// Open opens a pcap or pcapng file, recognized by its magic number.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *fs.PathError already reads "open PATH: ..."
	}
	r, err := newReader(path, f, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// newReader reads a capture from src; path only names it in errors.
func newReader(path string, src io.Reader, c io.Closer) (*Reader, error) {
	br := bufio.NewReaderSize(src, 256<<10)
	magic, err := br.Peek(4)
	switch {
	case len(magic) == 0 && err == io.EOF:
		return nil, fmt.Errorf("%s: empty file, not a pcap or pcapng capture", path)
	case len(magic) < 4 && err == io.EOF:
		return nil, fmt.Errorf("%s: not a pcap or pcapng file (only %d bytes)", path, len(magic))
	case err != nil:
		return nil, fmt.Errorf("%s: reading magic number: %w", path, err)
	}

	r := &Reader{path: path, c: c}
	le := binary.LittleEndian.Uint32(magic)
	be := binary.BigEndian.Uint32(magic)
	switch {
	case le == magicPcapngSHB:
		ng, err := newNgReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: %w: truncated or corrupt", path, err)
		}
		r.ng = ng
	case le == magicPcapMicroLE || be == magicPcapMicroLE || le == magicPcapNanoLE || be == magicPcapNanoLE:
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: pcap file header: %w: truncated or corrupt", path, err)
		}
		// A classic file has one link type: refuse it now rather than at
		// the first frame.
		if !supported(pr.LinkType()) {
			return nil, fmt.Errorf("%s: %w", path, unsupported(pr.LinkType()))
		}
		r.classic, r.linkType = pr, pr.LinkType()
	case be>>16 == magicGzip:
		return nil, fmt.Errorf("%s: gzip-compressed file, decompress it first (magic 0x%08x)", path, be)
	default:
		return nil, fmt.Errorf("%s: not a pcap or pcapng file (magic 0x%08x)", path, be)
	}
	return r, nil
}

// Next returns the next frame, or io.EOF after the last one. Any other error
// is final: later calls return it again, while frames already returned stay
// valid.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	fr, err := r.next()
	if err != nil {
		r.err = err
		return Frame{}, err
	}
	return fr, nil
}

func (r *Reader) next() (Frame, error) {
	index := r.n + 1
	var (
		data    []byte
		ts      time.Time
		origLen int
		lt      = r.linkType
	)
	if r.ng != nil {
		rec, err := r.ng.next()
		var limit limitError
		switch {
		case err == io.EOF:
			// Only at a block boundary: a block cut short is ErrUnexpectedEOF.
			return Frame{}, io.EOF
		case errors.As(err, &limit):
			return Frame{}, fmt.Errorf("%s: frame %d: %w", r.path, index, err)
		case err != nil:
			return Frame{}, fmt.Errorf("%s: frame %d: %w: truncated or corrupt", r.path, index, err)
		}
		data, ts, origLen, lt = rec.data, rec.ts, rec.origLen, rec.lt
	} else {
		d, ci, err := r.readClassic()
		switch {
		case err == io.EOF && ci.CaptureLength == 0:
			return Frame{}, io.EOF
		case err == io.EOF:
			// io.EOF after a record header with a non-zero length means
			// the file ends where the packet bytes should be.
			err = io.ErrUnexpectedEOF
			fallthrough
		case err != nil:
			return Frame{}, fmt.Errorf("%s: frame %d: %w: truncated or corrupt", r.path, index, err)
		}
		data, ts, origLen = d, ci.Timestamp, ci.Length
	}

	eth, err := toEthernet(lt, data)
	if err != nil {
		return Frame{}, fmt.Errorf("%s: frame %d: %w", r.path, index, err)
	}
	r.n = index
	return Frame{
		Time:    ts,
		Data:    eth,
		OrigLen: origLen + len(eth) - len(data),
		Index:   index,
	}, nil
}

// readClassic reads one classic pcap record with pcapgo. pcapgo parses
// lengths straight from the file (bounding the allocation by the bytes that
// arrive); should a corrupt file ever hit a bug there, it becomes a read
// error for that frame instead of taking the caller down.
func (r *Reader) readClassic() (data []byte, ci gopacket.CaptureInfo, err error) {
	defer func() {
		if p := recover(); p != nil {
			data, ci, err = nil, gopacket.CaptureInfo{}, fmt.Errorf("pcapgo: %v", p)
		}
	}()
	return r.classic.ReadPacketData()
}

// Close closes the file.
func (r *Reader) Close() error {
	if err := r.c.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", r.path, err)
	}
	return nil
}

func supported(lt layers.LinkType) bool {
	switch lt {
	case layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeLinuxSLL2,
		layers.LinkTypeIPv4, layers.LinkTypeIPv6,
		layers.LinkTypeRaw, linkTypeDLTRaw12, linkTypeDLTRaw14:
		return true
	}
	return false
}

func unsupported(lt layers.LinkType) error {
	return fmt.Errorf("unsupported link type %d (%v): only Ethernet, Linux cooked (SLL, SLL2) and raw IP captures are supported", uint32(lt), lt)
}

// toEthernet turns one frame of link type lt into an Ethernet frame. data is
// fresh from the file reader, so Ethernet frames are returned without a copy;
// other link types get a new buffer with a synthesized header carrying zero
// MACs.
// Payloads that are not IP keep whatever EtherType the link layer gave them
// (or 0 for raw IP of an unknown version), so the frame count never changes
// and a parser that looks for IP simply skips them.
func toEthernet(lt layers.LinkType, data []byte) ([]byte, error) {
	switch lt {
	case layers.LinkTypeEthernet:
		return data, nil
	case layers.LinkTypeLinuxSLL:
		if len(data) < sllHeaderLen {
			return nil, fmt.Errorf("Linux cooked (SLL) header cut short: %d bytes, need %d: truncated or corrupt", len(data), sllHeaderLen)
		}
		return withEthernet(binary.BigEndian.Uint16(data[14:16]), data[sllHeaderLen:]), nil
	case layers.LinkTypeLinuxSLL2:
		if len(data) < sll2HeaderLen {
			return nil, fmt.Errorf("Linux cooked v2 (SLL2) header cut short: %d bytes, need %d: truncated or corrupt", len(data), sll2HeaderLen)
		}
		return withEthernet(binary.BigEndian.Uint16(data[0:2]), data[sll2HeaderLen:]), nil
	case layers.LinkTypeIPv4:
		return withEthernet(etherTypeIPv4, data), nil
	case layers.LinkTypeIPv6:
		return withEthernet(etherTypeIPv6, data), nil
	case layers.LinkTypeRaw, linkTypeDLTRaw12, linkTypeDLTRaw14:
		var et uint16
		if len(data) > 0 {
			switch data[0] >> 4 {
			case 4:
				et = etherTypeIPv4
			case 6:
				et = etherTypeIPv6
			}
		}
		return withEthernet(et, data), nil
	default:
		return nil, unsupported(lt)
	}
}

func withEthernet(etherType uint16, payload []byte) []byte {
	eth := make([]byte, ethHeaderLen+len(payload))
	binary.BigEndian.PutUint16(eth[12:14], etherType)
	copy(eth[ethHeaderLen:], payload)
	return eth
}
