package daemon_test

import (
	"bytes"
	"net/netip"
	"strconv"
	"testing"

	"github.com/jmxdp/jmxdp/userspace/tools/gen"
	"github.com/jmxdp/jmxdp/userspace/vocab"
)

// Issue 19 item 9, live: datagrams whose fragments arrive last-first, and
// with their first fragment twice, land in the stream file intact and
// once each; what cannot be held (the first datagram of a pair never seen)
// is lost under its named reasons, exactly.
func TestFragmentsLastFirstAndDuplicated(t *testing.T) {
	e := newEnv(t)
	d := e.start(t, e.config())
	router := e.lab.RouterAddr.Addr()
	stranger := netip.MustParseAddr("203.0.113.77") // a router never seen before
	var inners [][]byte
	datagram := func(src netip.Addr, sid uint32, id uint16) [][]byte {
		payload := make([]byte, 3000)
		for i := range payload {
			payload[i] = byte(id) + byte(i)
		}
		m := gen.Mirror{
			SrcMAC: e.lab.RouterMAC, DstMAC: e.lab.HostMAC,
			Router: src, Collector: e.lab.HostAddr.Addr(),
			MID: 40, SID: sid, MTU: 1500, IPID: id,
			Inner: gen.InnerIPv4UDP(netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 1000, id, payload),
		}
		f, err := m.Frames()
		if err != nil || len(f) != 3 {
			t.Fatalf("%d fragments, %v", len(f), err)
		}
		if sid == 1 {
			inners = append(inners, m.Inner)
		}
		return f
	}
	var frames [][]byte
	// In order: the pair is now one whose captured fragments are held.
	a := datagram(router, 1, 0x100)
	frames = append(frames, a...)
	for i := range 4 {
		f := datagram(router, 1, uint16(0x101+i))
		frames = append(frames, f[2], f[1], f[0])
	}
	f := datagram(router, 1, 0x200)
	frames = append(frames, f[0], f[0], f[1], f[2]) // first fragment twice, in order
	f = datagram(router, 1, 0x201)
	frames = append(frames, f[2], f[1], f[0], f[0]) // last-first, first twice
	// A pair never seen: its later fragments go to the host (counted
	// unmatched), its first is captured and times out in reassembly.
	f = datagram(stranger, 2, 0x300)
	frames = append(frames, f[2], f[1], f[0])

	e.send(t, frames)
	settle(t, d, len(frames))
	c, err := d.Counters()
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[vocab.Stat]uint64{
		vocab.StatJmirror: 8, vocab.StatFragFirst: 8, vocab.StatFragHeld: 10, vocab.StatFragDuplicate: 2,
		vocab.StatFragTracked: 4, vocab.StatFragUnmatched: 2, vocab.StatCaptureFailed: 0,
		vocab.StatActionCapture: uint64(len(frames)) - 2,
	} {
		if c[s] != want {
			t.Errorf("kernel %s = %d, want %d", s, c[s], want)
		}
	}
	if err := d.Stop(); err != nil {
		t.Fatal(err)
	}
	cs := d.Capture().Stats()
	if h := cs.Held; h.Held != 10 || h.Released != 10 || h.Expired != 0 || h.Evicted != 0 || h.Pending != 0 {
		t.Errorf("held fragments %+v: want 10 held and released", h)
	}
	r := cs.Reassembly
	if r.Reassembled != 7 || r.Duplicates != 2 || r.Timeouts != 1 || r.Overlaps != 0 || r.Evicted != 0 || r.Pending != 0 {
		t.Errorf("reassembly %+v: want 7 datagrams, 2 duplicates, 1 timeout (the stranger's)", r)
	}
	files := streamFiles(t, e.out)
	if len(files) != 1 || len(files["mid-40/sid-1"]) == 0 {
		t.Fatalf("stream files %v: want mid-40/sid-1 only", files)
	}
	got := filePackets(t, files["mid-40/sid-1"]...)
	if len(got) != len(inners) {
		t.Fatalf("%d packets in the file, want %d", len(got), len(inners))
	}
	for i := range got {
		if !bytes.Equal(got[i], inners[i]) {
			t.Errorf("packet %d differs from the datagram sent", i)
		}
	}
	// And tshark reads them, whole.
	var read int
	for _, p := range files["mid-40/sid-1"] {
		for _, pk := range tsharkPackets(t, p) {
			if pk.Data != strconv.Itoa(len(inners[0])) {
				t.Errorf("tshark: a packet of %s bytes, want %d", pk.Data, len(inners[0]))
			}
			read++
		}
	}
	if read != len(inners) {
		t.Errorf("tshark read %d packets, want %d", read, len(inners))
	}
}
