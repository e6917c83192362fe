package pcapng

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/jmxdp/jmxdp/userspace/capfile"
	"github.com/jmxdp/jmxdp/userspace/testenv"
)

const testComment = "Jmirror mid=32768 sid=1"

func samePackets(t *testing.T, got, want []pkt) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("read %d packets, want %d", len(got), len(want))
	}
	for i, p := range want {
		g := got[i]
		if !g.ts.Equal(p.ts) || g.router != p.router || g.kind != p.kind || !bytes.Equal(g.data, p.data) {
			t.Fatalf("packet %d: got %v %v %v %x\nwant %v %v %v %x", i+1, g.ts, g.router, g.kind, g.data, p.ts, p.router, p.kind, p.data)
		}
	}
}

func sumBytes(pkts []pkt) uint64 {
	var n uint64
	for _, p := range pkts {
		n += uint64(len(p.data))
	}
	return n
}

func writeAll(t *testing.T, w *Writer, pkts []pkt) {
	t.Helper()
	for _, p := range pkts {
		if err := w.WritePacket(p.ts, p.router, p.kind, p.data); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendRoundTrip(t *testing.T) {
	pkts := testPackets(t)
	dir := t.TempDir()
	for split := 0; split <= len(pkts); split++ {
		path := filepath.Join(dir, fmt.Sprintf("split%d.pcapng", split))
		writeTestFile(t, path, pkts[:split])
		w, err := Append(path)
		if err != nil {
			t.Fatalf("split %d: %v", split, err)
		}
		if w.Packets() != uint64(split) || w.Bytes() != sumBytes(pkts[:split]) || w.Recovered() != 0 {
			t.Errorf("split %d: Append: %d packets, %d bytes, %d recovered", split, w.Packets(), w.Bytes(), w.Recovered())
		}
		writeAll(t, w, pkts[split:])
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if w.Packets() != uint64(len(pkts)) || w.Bytes() != sumBytes(pkts) {
			t.Errorf("split %d: counters %d, %d after appending", split, w.Packets(), w.Bytes())
		}
		got, nifs := readBack(t, path, testComment)
		samePackets(t, got, pkts)
		if nifs != 6 {
			t.Errorf("split %d: %d interfaces, want 6 (existing ones reused)", split, nifs)
		}
		if split == 4 {
			checkTshark(t, path, pkts)
		}
	}

	// One Append (and Close) per packet.
	path := filepath.Join(dir, "each.pcapng")
	writeTestFile(t, path, nil)
	for i, p := range pkts {
		w, err := Append(path)
		if err != nil {
			t.Fatal(err)
		}
		if w.Packets() != uint64(i) {
			t.Fatalf("packet %d: Append counts %d", i, w.Packets())
		}
		writeAll(t, w, []pkt{p})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	got, nifs := readBack(t, path, testComment)
	samePackets(t, got, pkts)
	if nifs != 6 {
		t.Errorf("%d interfaces, want 6", nifs)
	}
	checkTshark(t, path, pkts)
}

func TestResume(t *testing.T) {
	pkts := testPackets(t)
	path := filepath.Join(t.TempDir(), "r.pcapng")
	w := writeTestFile(t, path, pkts[:5])
	st := w.State()
	if st.Packets() != 5 || st.Bytes() != sumBytes(pkts[:5]) {
		t.Fatalf("State: %d packets, %d bytes", st.Packets(), st.Bytes())
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != st.Size() {
		t.Fatalf("State size %d, file %v %v", st.Size(), fi.Size(), err)
	}
	// Garbage past the recorded size (a write that could not be rolled
	// back) is cut off.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("garbage!"))
	f.Close()
	w, err = Resume(path, st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Recovered() != 8 || w.Packets() != 5 {
		t.Errorf("Resume: recovered %d, packets %d", w.Recovered(), w.Packets())
	}
	writeAll(t, w, pkts[5:7])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The zero State falls back to reading the file.
	w, err = Resume(path, State{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w.Packets() != 7 {
		t.Errorf("Resume(State{}) counts %d packets, want 7", w.Packets())
	}
	writeAll(t, w, pkts[7:])
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := readBack(t, path, testComment)
	samePackets(t, got, pkts)
}

type block struct {
	typ        uint32
	start, end int
}

// blocks splits a valid file into its blocks.
func blocks(t *testing.T, b []byte) []block {
	t.Helper()
	var bs []block
	for pos := 0; pos < len(b); {
		n := int(binary.LittleEndian.Uint32(b[pos+4:]))
		if n < 12 || pos+n > len(b) {
			t.Fatalf("bad block at %d", pos)
		}
		bs = append(bs, block{binary.LittleEndian.Uint32(b[pos:]), pos, pos + n})
		pos += n
	}
	return bs
}

// TestAppendTornTail cuts a file at every byte and appends to what is left:
// the torn block is cut off, the counts are those of the complete blocks,
// and writing the missing packets again gives the whole file.
func TestAppendTornTail(t *testing.T) {
	pkts := testPackets(t)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.pcapng")
	writeTestFile(t, ref, pkts)
	full, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	bs := blocks(t, full)
	last := bs[len(bs)-1]
	if last.typ != blockEPB {
		t.Fatalf("last block type %#x", last.typ)
	}
	path := filepath.Join(dir, "cut.pcapng")
	tsharked := false
	for c := 0; c <= len(full); c++ {
		if err := os.WriteFile(path, full[:c], 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := Append(path)
		if c < bs[0].end {
			if !errors.Is(err, ErrIncomplete) {
				t.Fatalf("cut at %d (in the section header): %v, want ErrIncomplete", c, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("cut at %d: %v", c, err)
		}
		complete, npkts, nifs := 0, 0, 0
		for _, b := range bs {
			if b.end <= c {
				complete = b.end
				switch b.typ {
				case blockEPB:
					npkts++
				case blockIDB:
					nifs++
				}
			}
		}
		if w.Recovered() != int64(c-complete) || w.Packets() != uint64(npkts) || w.Bytes() != sumBytes(pkts[:npkts]) || len(w.ifList) != nifs {
			t.Fatalf("cut at %d: recovered %d, %d packets, %d bytes, %d interfaces; want %d, %d, %d, %d",
				c, w.Recovered(), w.Packets(), w.Bytes(), len(w.ifList), c-complete, npkts, sumBytes(pkts[:npkts]), nifs)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != int64(complete) {
			t.Fatalf("cut at %d: file not truncated to %d: %v", c, complete, err)
		}
		// Every cut in the last block and some others: finish the file.
		if c > last.start || c%37 == 0 {
			writeAll(t, w, pkts[npkts:])
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, n := readBack(t, path, testComment)
			samePackets(t, got, pkts)
			if n != 6 {
				t.Fatalf("cut at %d: %d interfaces", c, n)
			}
			if c > last.start && !tsharked {
				checkTshark(t, path, pkts)
				tsharked = true
			}
			continue
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAppendZeroTail(t *testing.T) {
	pkts := testPackets(t)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref.pcapng")
	writeTestFile(t, ref, pkts)
	full, _ := os.ReadFile(ref)
	bs := blocks(t, full)
	last := bs[len(bs)-1]

	for name, c := range map[string]struct {
		data      []byte
		recovered int64
		packets   int
	}{
		// A crash can leave the file longer, the new part zero-filled.
		"zeros after": {append(bytes.Clone(full), make([]byte, 4096)...), 4096, len(pkts)},
		// ...or the last block's header written but not the rest.
		"zeroed last block":          {append(bytes.Clone(full[:last.start+8]), make([]byte, last.end-last.start-8)...), int64(last.end - last.start), len(pkts) - 1},
		"zeroed last block and more": {append(bytes.Clone(full[:last.start+8]), make([]byte, last.end-last.start-8+100)...), int64(last.end - last.start + 100), len(pkts) - 1},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(path, c.data, 0o600)
		w, err := Append(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if w.Recovered() != c.recovered || w.Packets() != uint64(c.packets) {
			t.Errorf("%s: recovered %d, %d packets; want %d, %d", name, w.Recovered(), w.Packets(), c.recovered, c.packets)
		}
		writeAll(t, w, pkts[c.packets:])
		w.Close()
		got, _ := readBack(t, path, testComment)
		samePackets(t, got, pkts)
	}

	// Damage before the last block is not a torn tail: refused, untouched.
	for name, damage := range map[string]func(b []byte){
		"trailing length":    func(b []byte) { b[bs[3].end-4]++ },
		"leading length":     func(b []byte) { b[bs[3].start+4] += 4 },
		"zero length":        func(b []byte) { binary.LittleEndian.PutUint32(b[bs[3].start+4:], 0) },
		"interface id":       func(b []byte) { b[bs[3].start+8] = 77 },
		"unaligned length":   func(b []byte) { b[bs[3].start+4]++ },
		"second section":     func(b []byte) { copy(b[bs[3].start:], full[:12]) },
		"interface not ours": func(b []byte) { copy(b[bs[1].start+20:], "xx") },
	} {
		if bs[3].typ != blockEPB || bs[1].typ != blockIDB {
			t.Fatalf("unexpected layout %v", bs[:4])
		}
		b := bytes.Clone(full)
		damage(b)
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		os.WriteFile(path, b, 0o600)
		if _, err := Append(path); err == nil {
			t.Errorf("%s: Append succeeded", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
			t.Errorf("%s: refused file was modified", name)
		}
	}
}

func TestAppendRefuses(t *testing.T) {
	dir := t.TempDir()
	pkts := testPackets(t)
	ours := filepath.Join(dir, "ours.pcapng")
	writeTestFile(t, ours, pkts[:2])
	oursBytes, _ := os.ReadFile(ours)

	var classic bytes.Buffer
	pw := pcapgo.NewWriter(&classic)
	pw.WriteFileHeader(65535, layers.LinkTypeRaw)
	pw.WritePacket(gopacket.CaptureInfo{Timestamp: time.Now(), CaptureLength: 4, Length: 4}, []byte{0x45, 0, 0, 4})

	pcapngBy := func(app, comment, ifname string) []byte {
		var b bytes.Buffer
		ng, err := pcapgo.NewNgWriterInterface(&b, pcapgo.NgInterface{Name: ifname, LinkType: layers.LinkTypeRaw},
			pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{Application: app, Comment: comment}})
		if err != nil {
			t.Fatal(err)
		}
		ng.Flush()
		return b.Bytes()
	}
	bigEndian := []byte{0x0a, 0x0d, 0x0d, 0x0a, 0, 0, 0, 28, 0x1a, 0x2b, 0x3c, 0x4d, 0, 1, 0, 0,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 28}

	for name, c := range map[string]struct {
		data []byte
		want error
	}{
		"empty":             {[]byte{}, ErrIncomplete},
		"text":              {[]byte("hello, this is not a capture\n"), ErrNotPcapng},
		"short text":        {[]byte("hi"), ErrNotPcapng},
		"classic pcap":      {classic.Bytes(), ErrNotPcapng},
		"other application": {pcapngBy("gopacket", "", "eth0"), ErrNotOurs},
		"other interface":   {pcapngBy("jmxdp", "Jmirror mid=1 sid=2", "eth0"), ErrNotOurs},
		"other comment":     {pcapngBy("jmxdp", "hello", "jmirror-192.0.2.1-ip"), ErrNotOurs},
		"big-endian":        {bigEndian, ErrUnsupported},
		"two sections":      {append(bytes.Clone(oursBytes), oursBytes...), ErrUnsupported},
		"torn header":       {oursBytes[:20], ErrIncomplete},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(path, c.data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Append(path)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want %v naming the file", name, err, c.want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, c.data) {
			t.Errorf("%s: refused file was modified", name)
		}
	}
	if _, err := Append(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// faultyFile lets budget bytes through, then writes part of the next write
// and fails it with ENOSPC, as a full disk does.
type faultyFile struct {
	*os.File
	budget        int64
	failTruncate  bool
	failedWrites  int
	truncateCalls int
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if int64(len(p)) <= f.budget {
		f.budget -= int64(len(p))
		return f.File.WriteAt(p, off)
	}
	n := int(f.budget)
	f.budget = 0
	f.failedWrites++
	if n > 0 {
		f.File.WriteAt(p[:n], off)
	}
	return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *faultyFile) Truncate(size int64) error {
	f.truncateCalls++
	if f.failTruncate {
		return &fs.PathError{Op: "truncate", Path: f.Name(), Err: syscall.EIO}
	}
	return f.File.Truncate(size)
}

// seqPacket is an IPv4/UDP packet of size bytes from router-specific
// addresses carrying seq.
func seqPacket(seq, size int) []byte {
	b := make([]byte, size)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(size))
	b[9] = 17
	copy(b[12:], []byte{10, 0, 0, 1, 192, 0, 2, 99})
	binary.BigEndian.PutUint32(b[28:], uint32(seq))
	return b
}

func seqOf(data []byte) int { return int(binary.BigEndian.Uint32(data[28:])) }

// routerOf gives a new router every 5 packets, so lost buffers hold new
// interfaces too.
func routerOf(seq int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + seq/5%250)}) }

var seqT0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// seqs reads a file of seqPackets, checking each packet's interface names its
// router, and returns the sequence numbers.
func seqs(t *testing.T, path string) []int {
	t.Helper()
	got, _ := readBack(t, path, "Jmirror mid=7 sid=9")
	var s []int
	for _, p := range got {
		q := seqOf(p.data)
		if p.router != routerOf(q) || !p.ts.Equal(seqT0.Add(time.Duration(q))) {
			t.Fatalf("packet seq %d: router %v time %v", q, p.router, p.ts)
		}
		s = append(s, q)
	}
	return s
}

func TestWriteErrorRollback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.pcapng")
	w, err := CreateWith(path, 7, 9, Options{BufferSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ff := &faultyFile{File: w.f.(*os.File), budget: 3000}
	w.f = ff
	write := func(seq int) error {
		return w.WritePacket(seqT0.Add(time.Duration(seq)), routerOf(seq), LinkRawIP, seqPacket(seq, 150))
	}
	var want []int
	var werr *WriteError
	seq := 0
	for ; seq < 1000; seq++ {
		err := write(seq)
		if err == nil {
			want = append(want, seq)
			continue
		}
		if !errors.As(err, &werr) || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("seq %d: %v, want a WriteError for ENOSPC", seq, err)
		}
		break
	}
	if werr == nil {
		t.Fatal("no write failed")
	}
	committed, _ := w.Committed()
	if accepted := len(want) + 1; committed+uint64(werr.Lost) != uint64(accepted) || w.Packets() != committed || w.Buffered() != 0 {
		t.Fatalf("accepted %d, committed %d, lost %d, Packets %d, buffered %d", accepted, committed, werr.Lost, w.Packets(), w.Buffered())
	}
	if werr.Lost < 2 {
		t.Errorf("lost %d: the test wants a buffer of several packets", werr.Lost)
	}
	t.Logf("%v", werr)
	want = want[:committed]
	if got := seqs(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the fault the file holds %v, want %v", got, want)
	}

	// Still full: fails again without corrupting anything.
	if err := write(seq + 1); !errors.As(err, &werr) {
		// The buffer may take it; the flush fails later.
		for i := 0; i < 100 && err == nil; i++ {
			err = w.Flush()
		}
		if !errors.As(err, &werr) {
			t.Fatalf("still full: %v", err)
		}
	}
	if got := seqs(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the second fault the file holds %v, want %v", got, want)
	}

	// A rollback that cannot truncate: retried before the next write.
	ff.budget = 100
	ff.failTruncate = true
	var err2 error
	for i := 0; i < 100 && err2 == nil; i++ {
		err2 = write(seq + 2)
	}
	if !errors.As(err2, &werr) || !w.torn {
		t.Fatalf("fault with failing truncate: %v, torn %v", err2, w.torn)
	}
	if err := write(seq + 3); !errors.As(err, &werr) || werr.Lost != 1 {
		t.Fatalf("write while torn: %v", err)
	}

	// Space again: writing resumes in the same file.
	ff.budget = 1 << 40
	ff.failTruncate = false
	for s := seq + 10; s < seq+60; s++ {
		if err := write(s); err != nil {
			t.Fatal(err)
		}
		want = append(want, s)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := seqs(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("file holds %v, want %v", got, want)
	}
	if w.Packets() != uint64(len(want)) {
		t.Errorf("Packets %d, want %d", w.Packets(), len(want))
	}
}

func TestCloseFailureRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	w, err := CreateWith(path, 7, 9, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ff := &faultyFile{File: w.f.(*os.File), budget: 1 << 40}
	w.f = ff
	for s := 0; s < 10; s++ {
		w.WritePacket(seqT0.Add(time.Duration(s)), routerOf(s), LinkRawIP, seqPacket(s, 100))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for s := 10; s < 17; s++ {
		w.WritePacket(seqT0.Add(time.Duration(s)), routerOf(s), LinkRawIP, seqPacket(s, 100))
	}
	ff.budget = 50
	err = w.Close()
	var werr *WriteError
	if !errors.As(err, &werr) || werr.Lost != 7 {
		t.Fatalf("Close: %v, want a WriteError losing 7", err)
	}
	if got := seqs(t, path); fmt.Sprint(got) != fmt.Sprint([]int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("file holds %v", got)
	}
	if w.Close() != nil || w.WritePacket(seqT0, routerOf(0), LinkRawIP, nil) == nil {
		t.Error("closed Writer misbehaves")
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory, unmounted
// when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		testenv.SkipOrFail(t, "mount tmpfs: "+err.Error())
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// capfileSeqs reads a file of raw IP seqPackets with capfile.
func capfileSeqs(t *testing.T, path string) []int {
	t.Helper()
	r, err := capfile.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var s []int
	for i := 0; i < 1<<20; i++ {
		fr, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		s = append(s, seqOf(fr.Data[14:]))
	}
	return s
}

func tsharkCount(t *testing.T, path string) int {
	t.Helper()
	cmd := exec.Command(testenv.Tool(t, "tshark"), "-n", "-r", path, "-T", "fields", "-e", "frame.number")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.Bytes())
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return 0
	}
	return len(strings.Split(s, "\n"))
}

// TestDiskFull fills a real (tmpfs) file system: the file stays valid with
// every packet counted as written, and writing resumes in the same file
// once there is space again.
func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "256k")
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s.pcapng")
	w, err := Create(path, 7, 9)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() }) // before unmounting
	write := func(seq int) error {
		return w.WritePacket(seqT0.Add(time.Duration(seq)), routerOf(seq), LinkRawIP, seqPacket(seq, 1000))
	}
	var accepted []int
	var werr *WriteError
	seq := 0
	for ; seq < 2000; seq++ {
		if err := write(seq); err != nil {
			if !errors.As(err, &werr) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("seq %d: %v", seq, err)
			}
			break
		}
		accepted = append(accepted, seq)
	}
	if werr == nil {
		t.Fatal("the file system never filled")
	}
	committed, _ := w.Committed()
	if committed+uint64(werr.Lost) != uint64(len(accepted)+1) {
		t.Fatalf("committed %d + lost %d != accepted %d + 1", committed, werr.Lost, len(accepted))
	}
	t.Logf("disk full after %d packets: %v; %d packets in the file", len(accepted), werr, committed)
	want := accepted[:committed]
	if got := capfileSeqs(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("capfile reads %v, want %v", got, want)
	}
	if n := tsharkCount(t, path); n != int(committed) {
		t.Fatalf("tshark reads %d packets, want %d", n, committed)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for s := seq + 1; s < seq+31; s++ {
		if err := write(s); err != nil {
			t.Fatalf("after freeing space: %v", err)
		}
		want = append(want, s)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := capfileSeqs(t, path); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("capfile reads %v, want %v", got, want)
	}
	if n := tsharkCount(t, path); n != len(want) {
		t.Fatalf("tshark reads %d packets, want %d", n, len(want))
	}
	if got := seqs(t, path); len(got) != len(want) {
		t.Fatalf("pcapgo reads %d packets", len(got))
	}
}
