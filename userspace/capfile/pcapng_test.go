package capfile

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

// ngFile writes pcapng by hand, block by block, so tests can write what no
// well-behaved writer would: wrong lengths, options past their block, byte
// order changes.
type ngFile struct {
	bo order
	b  []byte
}

type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// raw appends a block with the given lengths as they are, and returns its
// offset.
func (f *ngFile) raw(typ, total uint32, body []byte, trailer uint32) int {
	off := len(f.b)
	f.b = f.bo.AppendUint32(f.b, typ)
	f.b = f.bo.AppendUint32(f.b, total)
	f.b = append(f.b, body...)
	f.b = f.bo.AppendUint32(f.b, trailer)
	return off
}

// block appends a well-formed block and returns its offset.
func (f *ngFile) block(typ uint32, body []byte) int {
	body = pad4(body)
	total := uint32(12 + len(body))
	return f.raw(typ, total, body, total)
}

func (f *ngFile) opt(code uint16, val []byte) []byte {
	b := f.bo.AppendUint16(nil, code)
	b = f.bo.AppendUint16(b, uint16(len(val)))
	return pad4(append(b, val...))
}

// shb starts a section in byte order bo.
func (f *ngFile) shb(bo order, opts ...[]byte) int {
	f.bo = bo
	body := bo.AppendUint32(nil, byteOrderMagic)
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint64(body, ^uint64(0)) // section length unknown
	for _, o := range opts {
		body = append(body, o...)
	}
	return f.block(blockSHB, body)
}

func (f *ngFile) idb(lt layers.LinkType, snap uint32, opts ...[]byte) int {
	body := f.bo.AppendUint16(nil, uint16(lt))
	body = f.bo.AppendUint16(body, 0)
	body = f.bo.AppendUint32(body, snap)
	for _, o := range opts {
		body = append(body, o...)
	}
	return f.block(blockIDB, body)
}

func (f *ngFile) epbBody(id uint32, ts uint64, capLen, origLen uint32, data []byte, opts ...[]byte) []byte {
	body := f.bo.AppendUint32(nil, id)
	body = f.bo.AppendUint32(body, uint32(ts>>32))
	body = f.bo.AppendUint32(body, uint32(ts))
	body = f.bo.AppendUint32(body, capLen)
	body = f.bo.AppendUint32(body, origLen)
	body = pad4(append(body, data...))
	for _, o := range opts {
		body = append(body, o...)
	}
	return body
}

func (f *ngFile) epb(id uint32, ts uint64, data []byte, opts ...[]byte) int {
	return f.block(blockEPB, f.epbBody(id, ts, uint32(len(data)), uint32(len(data)), data, opts...))
}

// validNg is a small well-formed file: one Ethernet interface, two frames.
func validNg() (*ngFile, []byte) {
	f := &ngFile{}
	f.shb(binary.LittleEndian)
	f.idb(layers.LinkTypeEthernet, 0)
	eth := ethFrame(etherTypeIPv4, ipv4Packet)
	f.epb(0, uint64(t0.UnixMicro()), eth)
	f.epb(0, uint64(t0.UnixMicro())+1, eth)
	return f, eth
}

// allocated is what the reader allocates (in bytes, cumulatively, so at least
// its peak heap) reading path to its end, and the error it ends with.
func allocated(t testing.TB, path string) (uint64, int, error) {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	n := 0
	for {
		if _, err = r.Next(); err != nil {
			break
		}
		n++
	}
	runtime.ReadMemStats(&after)
	if err == io.EOF {
		err = nil
	}
	return after.TotalAlloc - before.TotalAlloc, n, err
}

// manyInterfaces is a pcapng file of one section holding n minimal interface
// blocks (20 bytes each), then a frame on the last interface.
func manyInterfaces(t testing.TB, n int) (string, int) {
	t.Helper()
	f := &ngFile{}
	f.shb(binary.LittleEndian)
	f.b = slices.Grow(f.b, n*20+200)
	first := len(f.b)
	for range n {
		f.idb(layers.LinkTypeEthernet, 0)
	}
	f.epb(uint32(n-1), 0, ethFrame(etherTypeIPv4, ipv4Packet))
	p := filepath.Join(t.TempDir(), "idbs.pcapng")
	if err := os.WriteFile(p, f.b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, first
}

// TestPcapngInterfaceLimit: 1M interface blocks in 20 MB made pcapgo's reader
// allocate about 900 MB. The reader refuses the 65537th, naming its offset,
// having allocated a few MiB.
func TestPcapngInterfaceLimit(t *testing.T) {
	const n = 1 << 20
	path, first := manyInterfaces(t, n)
	alloc, frames, err := allocated(t, path)
	t.Logf("%d interface blocks (%d MB): %d frames, %.1f MiB allocated, err %v", n, (first+n*20)/1e6, frames, float64(alloc)/(1<<20), err)
	want := fmt.Sprintf("%s: frame 1: pcapng interface description block at offset %d: more than 65536 interfaces in one section, the most this reader takes", path, first+MaxInterfacesPerSection*20)
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	// A table of 65536 interfaces (1.5 MiB; about 7.5 MiB allocated in all
	// as append grows it) and the 256 KiB read buffer: 16 MiB leaves room,
	// and is 50x less than before.
	if alloc > 16<<20 {
		t.Fatalf("allocated %d bytes reading %d interface blocks, want at most 16 MiB", alloc, n)
	}

	t.Run("at the limit", func(t *testing.T) {
		path, _ := manyInterfaces(t, MaxInterfacesPerSection)
		alloc, frames, err := allocated(t, path)
		if err != nil || frames != 1 {
			t.Fatalf("%d frames, err %v; want the frame on interface 65535", frames, err)
		}
		if alloc > 16<<20 {
			t.Fatalf("allocated %d bytes, want at most 16 MiB", alloc)
		}
	})

	t.Run("per section", func(t *testing.T) {
		// The limit is per section: a new section forgets the interfaces
		// of the last one, and its memory is reused.
		f := &ngFile{}
		eth := ethFrame(etherTypeIPv4, ipv4Packet)
		for s := range 3 {
			f.shb(binary.LittleEndian)
			for range MaxInterfacesPerSection {
				f.idb(layers.LinkTypeEthernet, 0)
			}
			f.epb(MaxInterfacesPerSection-1, uint64(s), eth)
		}
		p := writeFile(t, f.b)
		alloc, frames, err := allocated(t, p)
		if err != nil || frames != 3 {
			t.Fatalf("%d frames, err %v; want 3", frames, err)
		}
		if alloc > 16<<20 {
			t.Fatalf("allocated %d bytes, want at most 16 MiB", alloc)
		}
	})
}

// BenchmarkPcapngManyInterfaces reads the 1M-interface file; -benchmem's B/op
// is the figure in docs/decode-input.md.
func BenchmarkPcapngManyInterfaces(b *testing.B) {
	path, _ := manyInterfaces(b, 1<<20)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(path)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
		r.Close()
	}
}

// hostileCase is a file the reader must refuse with a clear error naming the
// offending block's offset.
type hostileCase struct {
	name   string
	file   []byte
	frames int    // frames read before the error
	want   string // the error after "PATH: "
}

func hostileCases() []hostileCase {
	le := binary.LittleEndian
	eth := ethFrame(etherTypeIPv4, ipv4Packet)
	var cases []hostileCase
	add := func(name string, frames int, build func(f *ngFile) string) {
		f := &ngFile{}
		f.shb(le)
		want := build(f)
		cases = append(cases, hostileCase{name, f.b, frames, want})
	}

	add("trailer mismatch on a packet", 1, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		f.epb(0, 1, eth)
		body := f.epbBody(0, 2, uint32(len(eth)), uint32(len(eth)), eth)
		total := uint32(12 + len(body))
		off := f.raw(blockEPB, total, body, total+4)
		f.epb(0, 3, eth)
		return fmt.Sprintf("frame 2: pcapng enhanced packet block at offset %d: trailing block length %d differs from the leading %d: truncated or corrupt", off, total+4, total)
	})
	add("trailer mismatch on an interface", 0, func(f *ngFile) string {
		body := []byte{1, 0, 0, 0, 0, 0, 0, 0}
		off := f.raw(blockIDB, 20, body, 24)
		return fmt.Sprintf("frame 1: pcapng interface description block at offset %d: trailing block length 24 differs from the leading 20: truncated or corrupt", off)
	})
	add("trailer mismatch on a skipped block", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.raw(5, 16, make([]byte, 4), 12) // an interface statistics block
		f.epb(0, 1, eth)
		return fmt.Sprintf("frame 1: pcapng block of type 0x00000005 at offset %d: trailing block length 12 differs from the leading 16: truncated or corrupt", off)
	})
	add("block length 4 GB", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.raw(blockEPB, 0xfffffffc, f.epbBody(0, 1, uint32(len(eth)), uint32(len(eth)), eth), 0xfffffffc)
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: block length 4294967292 is over the limit of 16777216: truncated or corrupt", off)
	})
	add("unknown block of 4 GB", 0, func(f *ngFile) string {
		off := f.raw(0x0bad, 0xfffffffc, nil, 0)
		return fmt.Sprintf("frame 1: pcapng block of type 0x00000bad at offset %d: block length 4294967292 is over the limit of 16777216: truncated or corrupt", off)
	})
	add("block length 16 MiB in a short file", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.raw(blockEPB, MaxBlockLen, f.epbBody(0, 1, uint32(len(eth)), uint32(len(eth)), eth), MaxBlockLen)
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: 16777216-byte block: unexpected EOF: truncated or corrupt", off)
	})
	add("block length zero", 0, func(f *ngFile) string {
		off := f.raw(blockIDB, 0, nil, 0)
		return fmt.Sprintf("frame 1: pcapng interface description block at offset %d: block length 0 is shorter than the 20 bytes of its fixed fields: truncated or corrupt", off)
	})
	add("block length not a multiple of 4", 0, func(f *ngFile) string {
		off := f.raw(blockIDB, 22, make([]byte, 10), 22)
		return fmt.Sprintf("frame 1: pcapng interface description block at offset %d: block length 22 is not a multiple of 4: truncated or corrupt", off)
	})
	add("option past the block", 0, func(f *ngFile) string {
		opt := le.AppendUint16(nil, 2) // if_name
		opt = le.AppendUint16(opt, 200)
		opt = append(opt, "eth0"...)
		off := f.idb(layers.LinkTypeEthernet, 0, opt)
		return fmt.Sprintf("frame 1: pcapng interface description block at offset %d: option 2 of 200 bytes runs past the end of the block (4 bytes left): truncated or corrupt", off)
	})
	add("packet option past the block", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		opt := le.AppendUint16(nil, 1) // opt_comment
		opt = le.AppendUint16(opt, 0xffff)
		off := f.epb(0, 1, eth, opt)
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: option 1 of 65535 bytes runs past the end of the block (0 bytes left): truncated or corrupt", off)
	})
	add("captured length past the block", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.block(blockEPB, f.epbBody(0, 1, 1000, 1000, eth))
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: captured length 1000 exceeds the block's 44 bytes of packet data: truncated or corrupt", off)
	})
	add("captured length 4 GB", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.block(blockEPB, f.epbBody(0, 1, 0xffffffff, 0xffffffff, eth))
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: captured length 4294967295 exceeds the block's 44 bytes of packet data: truncated or corrupt", off)
	})
	add("simple packet past the block", 0, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		off := f.block(blockSPB, append(le.AppendUint32(nil, 1<<20), eth...))
		return fmt.Sprintf("frame 1: pcapng simple packet block at offset %d: captured length 1048576 exceeds the block's 44 bytes of packet data: truncated or corrupt", off)
	})
	add("packet before any interface", 0, func(f *ngFile) string {
		off := f.epb(0, 1, eth)
		return fmt.Sprintf("frame 1: pcapng enhanced packet block at offset %d: interface 0 is not described in this section (it has 0): truncated or corrupt", off)
	})
	add("interface of the last section", 1, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		f.epb(0, 1, eth)
		f.shb(le)
		off := f.epb(0, 2, eth)
		return fmt.Sprintf("frame 2: pcapng enhanced packet block at offset %d: interface 0 is not described in this section (it has 0): truncated or corrupt", off)
	})
	add("bad byte-order magic mid-file", 1, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		f.epb(0, 1, eth)
		body := le.AppendUint32(nil, 0x12345678)
		body = append(body, make([]byte, 12)...)
		off := f.block(blockSHB, body)
		return fmt.Sprintf("frame 2: pcapng section header block at offset %d: unknown byte-order magic 0x78563412: truncated or corrupt", off)
	})
	add("unsupported version", 0, func(f *ngFile) string {
		body := le.AppendUint32(nil, byteOrderMagic)
		body = le.AppendUint16(body, 2)
		body = le.AppendUint16(body, 0)
		body = append(body, make([]byte, 8)...)
		off := f.block(blockSHB, body)
		return fmt.Sprintf("frame 1: pcapng section header block at offset %d: unsupported pcapng version 2.0: truncated or corrupt", off)
	})
	add("timestamp resolution too fine", 0, func(f *ngFile) string {
		off := f.idb(layers.LinkTypeEthernet, 0, f.opt(optTSResol, []byte{20}))
		return fmt.Sprintf("frame 1: pcapng interface description block at offset %d: option 9: if_tsresol 10^-20 is finer than 64-bit timestamps hold: truncated or corrupt", off)
	})
	add("cut in a block header", 1, func(f *ngFile) string {
		f.idb(layers.LinkTypeEthernet, 0)
		f.epb(0, 1, eth)
		off := len(f.b)
		f.b = append(f.b, 6, 0, 0)
		return fmt.Sprintf("frame 2: pcapng block header at offset %d: unexpected EOF: truncated or corrupt", off)
	})
	return cases
}

func TestPcapngHostile(t *testing.T) {
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.file)
			alloc, frames, err := allocated(t, p)
			if err == nil || err.Error() != p+": "+tc.want {
				t.Fatalf("err = %v\nwant %s", err, p+": "+tc.want)
			}
			if frames != tc.frames {
				t.Errorf("%d frames before the error, want %d", frames, tc.frames)
			}
			// None of these files justifies more than the read buffer
			// and a block's worth of what it holds.
			if alloc > 2<<20 {
				t.Errorf("allocated %d bytes for a %d-byte file, want at most 2 MiB", alloc, len(tc.file))
			}
		})
	}
	t.Run("first section header", func(t *testing.T) {
		f := &ngFile{bo: binary.LittleEndian}
		body := binary.LittleEndian.AppendUint32(nil, byteOrderMagic)
		body = append(body, make([]byte, 12)...)
		f.raw(blockSHB, 28, body, 32)
		p := writeFile(t, f.b)
		_, err := Open(p)
		want := p + ": pcapng section header block at offset 0: trailing block length 32 differs from the leading 28: truncated or corrupt"
		if err == nil || err.Error() != want {
			t.Fatalf("Open = %v, want %s", err, want)
		}
	})
}

// TestPcapngSections: each section has its own byte order, interfaces and
// timestamp resolution; the obsolete and simple packet blocks, options and
// skipped blocks all read.
func TestPcapngSections(t *testing.T) {
	f := &ngFile{bo: binary.LittleEndian}
	eth := ethFrame(etherTypeIPv4, ipv4Packet)
	eth6 := ethFrame(etherTypeIPv6, ipv6Packet)
	var want []rec
	var wantData [][]byte

	// Little-endian section, default microseconds, with options on every
	// block and a statistics block to skip.
	f.shb(binary.LittleEndian, f.opt(4, []byte("jmxdp test")), f.opt(0, nil))
	f.idb(layers.LinkTypeEthernet, 0, f.opt(2, []byte("eth0")), f.opt(0, nil))
	f.epb(0, uint64(t0.UnixMicro()), eth, f.opt(1, []byte("a comment")))
	want, wantData = append(want, rec{ts: t0.Truncate(time.Microsecond), data: eth}), append(wantData, eth)
	f.block(5, make([]byte, 12))

	// Big-endian section: nanoseconds and an offset on the first
	// interface, 2^-20 s on a raw IP one, and the obsolete packet block.
	f.shb(binary.BigEndian)
	f.idb(layers.LinkTypeEthernet, 0, f.opt(optTSResol, []byte{9}), f.opt(optTSOffset, binary.BigEndian.AppendUint64(nil, 1000)))
	f.idb(layers.LinkTypeRaw, 0, f.opt(optTSResol, []byte{0x80 | 20}))
	ns := uint64(t0.UnixNano())
	f.epb(0, ns, eth6)
	want, wantData = append(want, rec{ts: t0.Add(1000 * time.Second), data: eth6}), append(wantData, eth6)
	// 2.5 s plus one unit, in units of 2^-20 s.
	f.epb(1, 5<<19+1, ipv4Packet)
	want = append(want, rec{ts: time.Unix(2, 500000953).UTC(), data: ipv4Packet})
	wantData = append(wantData, synthEth(etherTypeIPv4, ipv4Packet))
	pb := binary.BigEndian.AppendUint16(nil, 0)
	pb = binary.BigEndian.AppendUint16(pb, 0) // drops
	pb = append(pb, f.epbBody(0, ns+5, uint32(len(eth)), uint32(len(eth)), eth)[4:]...)
	f.block(blockPB, pb)
	want, wantData = append(want, rec{ts: t0.Add(1000*time.Second + 5), data: eth}), append(wantData, eth)

	// Back to little-endian: a simple packet block, cut to the snap length.
	f.shb(binary.LittleEndian)
	f.idb(layers.LinkTypeEthernet, 20)
	f.block(blockSPB, append(binary.LittleEndian.AppendUint32(nil, uint32(len(eth))), eth[:20]...))
	// No timestamp: the epoch, as tshark shows it.
	want = append(want, rec{ts: time.Unix(0, 0).UTC(), data: eth[:20], origLen: len(eth)})
	wantData = append(wantData, eth[:20])

	p := writeFile(t, f.b)
	got, err := readAll(t, p)
	if err != nil {
		t.Fatal(err)
	}
	checkFrames(t, got, want, wantData, time.Nanosecond)

	// tshark, the reference reader, sees the same frames at the same times.
	tshark := testenv.Tool(t, "tshark")
	out, err := exec.Command(tshark, "-r", p, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.len").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(got) {
		t.Fatalf("tshark reads %d frames, we read %d:\n%s", len(lines), len(got), out)
	}
	for i, l := range lines {
		fields := strings.Split(l, "\t")
		if len(fields) != 3 {
			t.Fatalf("tshark line %q", l)
		}
		if fields[0] == "" {
			fields[0] = "0" // a simple packet block has no timestamp
		}
		sec, frac, _ := strings.Cut(fields[0], ".")
		s, _ := strconv.ParseInt(sec, 10, 64)
		fr, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		tt := time.Unix(s, fr).UTC()
		if !tt.Equal(got[i].Time) {
			t.Errorf("frame %d: tshark time %v, ours %v", i+1, tt, got[i].Time)
		}
		if c := fmt.Sprint(len(want[i].data)); fields[1] != c {
			t.Errorf("frame %d: tshark captured length %s, want %s", i+1, fields[1], c)
		}
	}
}

// TestPcapngHostileTshark checks the refusals against the reference reader's:
// tshark refuses the same files, but for one.
func TestPcapngHostileTshark(t *testing.T) {
	tshark := testenv.Tool(t, "tshark")
	for _, tc := range hostileCases() {
		switch tc.name {
		case "timestamp resolution too fine":
			// tshark takes a resolution finer than 64-bit units hold; we
			// refuse it rather than compute wrong times.
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.file)
			out, err := exec.Command(tshark, "-r", p).CombinedOutput()
			if err == nil {
				t.Fatalf("tshark read the file without an error:\n%s", out)
			}
		})
	}
}

func TestPcapngFrameDataIsFresh(t *testing.T) {
	f, eth := validNg()
	got, err := readAll(t, writeFile(t, f.b))
	if err != nil || len(got) != 2 {
		t.Fatalf("%d frames, err %v", len(got), err)
	}
	got[1].Data[0] ^= 0xff
	if !bytes.Equal(got[0].Data, eth) {
		t.Fatal("frames share memory")
	}
}

// TestClassicHugeRecord: a classic record may claim up to 4 GB under a 4 GB
// snap length; pcapgo allocates as the bytes arrive, so a short file costs
// what it holds.
func TestClassicHugeRecord(t *testing.T) {
	hdr := pcapBytes(t, true, layers.LinkTypeEthernet, nil)
	binary.LittleEndian.PutUint32(hdr[16:20], 0xffffffff) // snap length
	rec := binary.LittleEndian.AppendUint32(nil, 1)
	rec = binary.LittleEndian.AppendUint32(rec, 0)
	rec = binary.LittleEndian.AppendUint32(rec, 0xfffffff0)
	rec = binary.LittleEndian.AppendUint32(rec, 0xfffffff0)
	p := writeFile(t, append(append(hdr, rec...), make([]byte, 1000)...))
	alloc, frames, err := allocated(t, p)
	if want := p + ": frame 1: unexpected EOF: truncated or corrupt"; err == nil || err.Error() != want || frames != 0 {
		t.Fatalf("%d frames, err %v; want %s", frames, err, want)
	}
	if alloc > 2<<20 {
		t.Fatalf("allocated %d bytes for a %d-byte file, want at most 2 MiB", alloc, len(hdr)+len(rec)+1000)
	}
}
